"""``Encoder.with_spec``: another spec on the loaded weights encodes like a fresh load, and only in one space."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xdr.config import ModelSpec
from xdr.errors import MismatchError, XdrError
from xdr.models import Encoder

TEXTS = ["cross lingual retrieval finds english passages for questions in other languages", "the lazy fox"]


def test_with_spec_encodes_like_a_fresh_load(tiny_bert_dir: Path) -> None:
    spec = ModelSpec(name="tiny", path=str(tiny_bert_dir), query_prefix="query: ", query_max_length=64)
    enc = Encoder.load(spec, device="cpu")
    other = spec.model_copy(update={"query_max_length": 6, "query_prefix": "passage: "})
    reused = enc.with_spec(other)
    assert reused.spec == other and reused.model is enc.model and reused.tokenizer is enc.tokenizer
    assert enc.spec == spec  # the original is unchanged
    fresh = Encoder.load(other, device="cpu")
    np.testing.assert_array_equal(reused.encode(TEXTS, "query"), fresh.encode(TEXTS, "query"))
    assert not np.allclose(reused.encode(TEXTS, "query"), enc.encode(TEXTS, "query"), atol=1e-3)


def test_with_spec_refuses_another_space_or_dtype(tiny_bert_dir: Path) -> None:
    spec = ModelSpec(name="tiny", path=str(tiny_bert_dir))
    enc = Encoder.load(spec, device="cpu")
    for change in ({"pooling": "cls"}, {"normalize": False}, {"fingerprint": "other"}, {"name": "other"}):
        with pytest.raises(MismatchError, match="another model"):
            enc.with_spec(spec.model_copy(update=change))
    with pytest.raises(XdrError, match="dtype bfloat16"):
        enc.with_spec(spec.model_copy(update={"dtype": "bfloat16"}))
    assert enc.with_spec(spec.model_copy(update={"dtype": "float32"})).spec.dtype == "float32"  # auto on CPU
