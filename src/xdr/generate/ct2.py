"""The xQG generator on CTranslate2: Seq2SeqGenerator's prompts and sampling settings, a C++ decoding loop.

HF ``generate`` spends much of a step outside the model (Python per step, full-vocabulary logits processing
in fp32); CTranslate2 runs the whole decoding loop natively, which is why the generation benchmark
(``benchmarks/bench_generate_speed.py``) measures it. The checkpoint is converted once into
``$XDR_CACHE/ct2`` and loaded from there afterwards.

Determinism is weaker than Seq2SeqGenerator's, which draws every query from its own seed. CTranslate2 keeps
one random generator per worker thread and seeds it (from ``ctranslate2.set_random_seed``) the first time
that thread samples; later calls to ``set_random_seed`` do not reach it. So this class seeds and starts a
fresh translator, with a single worker thread, whenever the run seed changes, and the queries of a run are
reproducible only for the same sequence of ``generate`` calls (same passages in the same order and
batches, same languages, batch size, device, compute type and CTranslate2 version). A passage's queries
depend on its batch neighbours, and a resumed run (a fresh translator) samples its remaining shards
differently from an uninterrupted one: both are valid samples of the same distribution, not the same
samples. The artifact's per-query ``seed`` column therefore does not reproduce a query made by this class.
Whether CTranslate2 samples deterministically on GPU is not documented; the above was observed on CPU.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from xdr.artifacts import atomic_dir
from xdr.data.schema import Passage
from xdr.errors import XdrError
from xdr.generate.hf import Sampling, loading
from xdr.generate.seq2seq import FP16_PROBLEM, PROMPT, XQG_CHECKPOINT, XQG_SAMPLING, load_tokenizer, seq2seq_prompt
from xdr.runtime import cache_root

try:
    import ctranslate2
except ImportError as error:  # an optional backend: the HF generator needs none of this
    raise XdrError("the CTranslate2 generator needs `pip install ctranslate2`") from error

# CTranslate2 compute types whose activations are float16: mT5 overflows there (see FP16_PROBLEM).
_FP16_TYPES = {"float16", "int8_float16"}
_SEED_MASK = 2**32 - 1  # set_random_seed takes an unsigned 32-bit seed


def converted_dir(model: str, revision: str | None, cache_dir: Path | None = None) -> Path:
    """Where the converted checkpoint lives: per model, revision and CTranslate2 version (formats change).

    A local directory is also keyed by its files' names, sizes and modification times, so that new weights
    written to the same path are converted again rather than served stale.
    """
    slug = re.sub(r"[^A-Za-z0-9._-]+", "--", model.strip("/"))
    if Path(model).is_dir():
        stats = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in Path(model).iterdir() if f.is_file())
        slug += "-" + hashlib.blake2b(repr(stats).encode(), digest_size=6).hexdigest()
    return (cache_dir or cache_root() / "ct2") / f"{slug}@{revision or 'default'}-ct2-{ctranslate2.__version__}"


def scales_decoder_output(model: PreTrainedModel) -> bool:
    """Whether the HF model multiplies the decoder output by ``d_model**-0.5`` before its LM head.

    CTranslate2's T5 converter scales exactly when ``config.tie_word_embeddings`` is true, the transformers 4
    rule. transformers 5 reports every (m)T5 as tied and decides the scaling elsewhere (T5: the checkpoint's
    original flag; mT5: never), so a converted mT5 would sample from logits shrunk ~28 times, far flatter
    than the HF model's. Asking the model on one token is right under either version.
    """
    config = model.config
    with torch.no_grad():
        ids = torch.tensor([[config.eos_token_id]], device=model.device)
        start = torch.tensor([[config.decoder_start_token_id]], device=model.device)
        encoded = model.encoder(input_ids=ids).last_hidden_state
        hidden = model.decoder(input_ids=start, encoder_hidden_states=encoded).last_hidden_state
        logits = model(input_ids=ids, decoder_input_ids=start).logits.float()
        errors = {}  # relative, so that tiny random weights are judged like trained ones
        for scale in (False, True):
            expected = model.lm_head(hidden * config.d_model**-0.5 if scale else hidden).float()
            errors[scale] = ((logits - expected).abs().max() / logits.abs().max()).item()
    best = min(errors, key=errors.__getitem__)
    if errors[best] > 1e-2:
        raise XdrError(f"cannot tell how {type(model).__name__} scales its decoder output; not converting it")
    return best


def convert(model: str, revision: str | None, dest: Path) -> Path:
    """Convert an HF seq2seq checkpoint into ``dest`` unless it is there; a killed conversion leaves no ``dest``.

    Weights keep their stored precision; the compute type is chosen when the model is loaded.
    """
    if (dest / "model.bin").exists():
        return dest
    from ctranslate2.converters import TransformersConverter

    class Converter(TransformersConverter):
        def load_model(self, model_class: Any, model_name_or_path: str, **kwargs: Any) -> PreTrainedModel:
            loaded = super().load_model(model_class, model_name_or_path, **kwargs)
            loaded.config.tie_word_embeddings = scales_decoder_output(loaded)  # what the T5 converter reads
            return loaded

    with atomic_dir(dest, replace=True) as tmp:  # replaces a copy without model.bin (damaged)
        Converter(model, revision=revision).convert(str(tmp), force=True)  # force: tmp exists already
    return dest


class CT2Seq2SeqGenerator:
    """Top-k sampling from an mT5-family checkpoint through CTranslate2, ``n`` hypotheses per passage.

    Construction loads the tokenizer and converts the checkpoint (once), so a model that cannot be had
    fails before a run writes anything.
    """

    def __init__(
        self,
        model: str = XQG_CHECKPOINT,
        *,
        revision: str | None = None,
        device: str | None = None,
        compute_type: str = "auto",
        batch_size: int = 64,
        max_input_length: int = 512,
        sampling: Sampling | None = None,
        cache_dir: str | Path | None = None,
        threads: int = 0,
    ) -> None:
        if compute_type in _FP16_TYPES:
            raise XdrError(f"compute type {compute_type} is not supported: {FP16_PROBLEM}; use bfloat16 or float32")
        self.model_id, self.revision = model, revision
        self.device = device or ("cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu")
        if compute_type == "auto":  # CTranslate2's own "auto" may pick float16 on a GPU
            compute_type = "bfloat16" if self.device == "cuda" else "float32"
        self.compute_type = compute_type
        self.batch_size, self.max_input_length = batch_size, max_input_length
        self.sampling = sampling or XQG_SAMPLING
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.threads = threads  # intra-op threads on CPU; 0 lets CTranslate2 choose
        self._translator: Any = None
        self._seed: int | None = None
        self.tokenizer: PreTrainedTokenizerBase = load_tokenizer(model, revision)
        dest = converted_dir(model, revision, self.cache_dir)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with loading(model):
            self.model_dir = convert(model, revision, dest)

    @property
    def name(self) -> str:
        return self.model_id

    @property
    def config(self) -> dict[str, Any]:
        # As with Seq2SeqGenerator, batch size and device may change on resume; the compute type may not.
        return {
            "kind": "seq2seq-ct2",
            "model": self.model_id,
            "revision": self.revision,
            "compute_type": self.compute_type,
            "prompt": PROMPT,
            "max_input_length": self.max_input_length,
            "sampling": asdict(self.sampling),
            "ctranslate2": ctranslate2.__version__,
        }

    def translator(self, seed: int) -> Any:
        """The translator for run seed ``seed``: a fresh one whenever the seed changes (see the module doc)."""
        if self._translator is None or self._seed != seed:
            ctranslate2.set_random_seed(seed & _SEED_MASK)
            self._translator = ctranslate2.Translator(
                str(self.model_dir), device=self.device, compute_type=self.compute_type,
                inter_threads=1, intra_threads=self.threads,
            )
            self._seed = seed
        return self._translator

    def generate(self, passages: Sequence[Passage], lang: str, n: int, seed: int) -> list[list[str]]:
        if not passages:
            return []
        tok, s = self.tokenizer, self.sampling
        encoded = tok([seq2seq_prompt(p, lang) for p in passages], truncation=True,
                      max_length=self.max_input_length)["input_ids"]
        results = self.translator(seed).translate_batch(
            [tok.convert_ids_to_tokens(ids) for ids in encoded],
            max_batch_size=self.batch_size,
            beam_size=1,
            num_hypotheses=n,
            sampling_topk=s.top_k or 0,  # 0: the whole vocabulary
            sampling_topp=s.top_p,
            sampling_temperature=s.temperature,
            max_decoding_length=s.max_new_tokens,
            max_input_length=0,  # the tokenizer already truncated
        )
        return [
            [tok.decode(tok.convert_tokens_to_ids(h), skip_special_tokens=True).strip() for h in r.hypotheses]
            for r in results
        ]
