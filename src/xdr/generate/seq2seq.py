"""The xQG generator: an mT5 docTquery model that writes questions in a requested language.

The released checkpoint ``ielabgroup/xor-tydi-docTquery-mt5-base`` was trained on inputs of the form
``Generate a {Language} question for this passage: {title} {passage}``; other seq2seq checkpoints trained
the same way load through the same class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, Literal

from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from xdr.config import DType
from xdr.data.schema import Passage
from xdr.errors import XdrError
from xdr.generate.base import passage_seed, row_seed
from xdr.generate.decode import StaticDecoder, unsupported_reason
from xdr.generate.hf import Sampling, Seeding, loading, seeded_generate
from xdr.langs import language_name
from xdr.runtime import resolve_device, resolve_dtype

XQG_CHECKPOINT = "ielabgroup/xor-tydi-docTquery-mt5-base"
PROMPT = "Generate a {language} question for this passage: {title} {text}"
# T5 activations exceed fp16's range; the model then emits NaNs or empty strings rather than failing.
FP16_PROBLEM = "mT5 activations overflow in float16 and the model silently generates garbage"
XQG_SAMPLING = Sampling(top_k=10, max_new_tokens=32)  # the xQG paper's top-k sampling


def load_tokenizer(model: str, revision: str | None = None) -> PreTrainedTokenizerBase:
    """The checkpoint's tokenizer: prompts are encoded with it for generation (HF or CTranslate2) and training."""
    with loading(model):
        return AutoTokenizer.from_pretrained(model, revision=revision)


def seq2seq_prompt(passage: Passage, lang: str) -> str:
    """The exact input text the xQG checkpoint was trained on; an untitled passage leaves the title empty."""
    return PROMPT.format(language=language_name(lang), title=passage.title, text=passage.text)


class Seq2SeqGenerator:
    """Top-k sampling from an mT5-family checkpoint, ``n`` return sequences per passage and language.

    The checkpoint loads on construction, so a model that cannot be had fails before a run writes anything.
    ``decode`` picks the loop: ``"static"`` is :class:`~xdr.generate.decode.StaticDecoder` (encoder and
    cross-attention shared by a passage's samples, static cache, a step compiled into CUDA graphs when
    ``compile``, by default on CUDA), ``"hf"`` is HF ``generate``; both draw the same queries from the same
    seeds (exactly in float32; in bfloat16 other kernels round differently, as another batch size does on
    either path), so the choice is not part of :attr:`config`. ``"auto"`` takes the static loop where the model
    allows it (T5-family, no extra logits processors in its generation config). ``seeding="philox"`` turns
    each query's seed into uniforms with a counter-based generator (:func:`~xdr.generate.hf.row_uniforms`):
    cheaper per query, still independent of batching, but other queries than the default ``"numpy"``.
    """

    def __init__(
        self,
        model: str = XQG_CHECKPOINT,
        *,
        revision: str | None = None,
        device: str | None = None,
        dtype: DType = "auto",
        batch_size: int = 32,
        max_input_length: int = 512,
        sampling: Sampling | None = None,
        decode: Literal["auto", "static", "hf"] = "auto",
        compile: bool | None = None,
        seeding: Seeding = "numpy",
    ) -> None:
        self.model_id, self.revision = model, revision
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device, fp16_problem=FP16_PROBLEM)
        self.batch_size, self.max_input_length = batch_size, max_input_length
        self.sampling, self.seeding = sampling or XQG_SAMPLING, seeding
        self.tokenizer: PreTrainedTokenizerBase = load_tokenizer(model, revision)
        with loading(model):
            loaded = AutoModelForSeq2SeqLM.from_pretrained(model, revision=revision, dtype=self.dtype)
        self.model: PreTrainedModel = loaded.to(self.device).eval()
        reason = unsupported_reason(self.model)
        if decode == "static" and reason:
            raise XdrError(f"--decode static cannot run {model}: {reason}; use --decode hf")
        compile = self.device.type == "cuda" if compile is None else compile
        self.decoder = None if decode == "hf" or reason else StaticDecoder(self.model, self.sampling, compile=compile)

    @property
    def name(self) -> str:
        return self.model_id

    @property
    def config(self) -> dict[str, Any]:
        # The batch size and device may change on resume (queries do not depend on them); the dtype may not.
        return {
            "kind": "seq2seq",
            "model": self.model_id,
            "revision": self.revision,
            "dtype": str(self.dtype).removeprefix("torch."),
            "prompt": PROMPT,
            "max_input_length": self.max_input_length,
            "sampling": asdict(self.sampling),
            # named only when it is not the default, so artifacts written before it existed still resume
            **({"seeding": self.seeding} if self.seeding != "numpy" else {}),
        }

    def generate(self, passages: Sequence[Passage], lang: str, n: int, seed: int) -> list[list[str]]:
        seeds = [[row_seed(passage_seed(seed, p.id, lang), k) for k in range(n)] for p in passages]
        return seeded_generate(
            self.model,
            self.tokenizer,
            [seq2seq_prompt(p, lang) for p in passages],
            seeds,
            self.sampling,
            batch_size=self.batch_size,
            max_input_length=self.max_input_length,
            decoder=self.decoder,
            seeding=self.seeding,
        )
