"""Query-generation throughput of the xQG mT5 generator: HF ``generate`` against faster set-ups.

The xQG augmentation samples 5 questions for each of 18M passages in 7 languages: 630M generations. The
reference figures (``REFERENCE_H100``): on an H100, HF ``generate`` reached about 7.6 queries/s one passage
at a time and about 1,165 queries/s with 256 passages a batch (~150 h); the target is >= 7,300 queries/s on
one H100. This script measures, in one run and on the same inputs, every candidate against the batched HF
baseline (``hf_b256``):

  loop        HF ``generate`` one passage at a time (a few passages; the rate is extrapolated)
  hf          HF ``generate``, 256 passages a batch (the baseline), then 512, 1024, 2048 (stops on OOM)
  hf_static   HF ``generate`` with ``cache_implementation="static"``: transformers 5.x builds an
              EncoderDecoderCache of two StaticCaches for mT5 and compiles the forward pass itself
              (torch.compile, mode "reduce-overhead" = CUDA graphs) once the cache is static. On CPU that
              auto-compile is off, so the smoke run forces it (CompileConfig mode "default") to prove the path
  xdr_seeded  HF ``generate`` plus xdr's per-row SeededSampler, i.e. what ``Seq2SeqGenerator`` runs today
              (skipped where xdr.generate cannot be imported)
  ct2         CTranslate2 (skipped where it is not installed): the model converted from a saved HF directory,
              ``translate_batch(sampling_topk=10, num_hypotheses=5, min/max_decoding_length=32)``
  xdr_static  xdr's own ``StaticDecoder`` (``Seq2SeqGenerator``'s default for mT5): encoder and
              cross-attention K/V once per passage (shared by its 5 samples instead of copied 5 times), a
              static self-attention cache, one uniform per row and step from each row's seed (SeededSampler's
              scheme: queries independent of batching); the step is torch.compile'd (CUDA graphs on GPU).
              Its time includes turning the row seeds into uniforms (numpy's per-row generators, the default);
              ``seeding`` records what that costs per row against the counter-based ``philox`` scheme. It is
              checked against xdr_seeded on the same seeds (``agreement_with_xdr_seeded``, the share of
              identical sequences: 1 in float32, which tests/test_generate_models.py asserts on a tiny model;
              lower in bf16, where other kernels round differently)

Workload (the same for every system): a random-weight mT5 built from its config (no download, nothing
saved in the repo), inputs of exactly 128 random token ids (127 + EOS, no padding), top-k 10 sampling,
5 samples per passage, and exactly 32 new tokens per sample: EOS is masked until 32 tokens exist (HF
``min_new_tokens=max_new_tokens=32``, CTranslate2 ``min_decoding_length=max_decoding_length=32``; xdr's
static loop masks nothing, but a random mT5-base never has EOS among its top 10), so a random model never
stops early and every system does the same work; each result records the token count it checked (for
xdr_static the shortest row's, so an early stop shows). bf16 on GPU (mT5 overflows in fp16), float32 on CPU.
queries/s = passages x 5 / seconds, timed after one warm-up batch (which also pays for any compile), with
``torch.cuda.synchronize()`` around every timing.

FLOPs per passage (useful work, no padding; L = 128 input tokens, T = 32 new tokens, n = 5 samples,
d = d_model, i = heads x d_kv, f = d_ff, V = vocabulary, weights only, norms and sampling not counted):
    encoder      2 * N_enc * L + 4 * layers_enc * i * L^2,    N_enc = layers_enc * (4*d*i + 3*d*f)
    cross K/V    2 * layers_dec * 2*d*i * L                   (once per passage: it depends on the input only)
    decoder      n * sum_{t=1..T} [2 * N_tok + 4 * layers_dec * i * (t + L)],
                 N_tok = layers_dec * (4*d*i + 2*d*i + 3*d*f) + d*V   (self-attention, cross q/o, gated FFN,
                 LM head); the second term is the self- (t keys) and cross-attention (L keys) products.
MFU = FLOPs per passage x passages/s / peak, with the GPU's dense bf16 peak from ``common.PEAK_BF16_TFLOPS``
(--peak-tflops for other hardware). For mT5-base that is about 120 GFLOP per passage (24 per query): 100%
MFU on an H100 (989 TFLOP/s) would be ~41,000 queries/s. The JSON is rewritten after every system, so a run
cut short keeps what it measured.

CTranslate2's T5 converter scales the decoder output when ``config.tie_word_embeddings`` is set, which
transformers 5 always sets for mT5: the converted model's logits are then ~28 times flatter than HF's.
That changes no cost, so the speed figures stand; xdr.generate.ct2 converts with the right scaling.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import transformers
from common import MT5_EOS, MT5_PAD, MT5_SIZES, MT5_UNK, peak_tflops, random_mt5, sync
from transformers import CompileConfig, MT5Config, PreTrainedTokenizerFast

from xdr.runtime import machine_info

REPO = Path(__file__).resolve().parents[1]
CPU_STATUS = (
    "CPU smoke run of a tiny model: it proves every system runs and checks its token counts; its rates are"
    " not a speed comparison (tiny matrices, Python overhead, other jobs on the machine: see the load"
    " averages). The speed figures come from --device cuda"
)
# The order they run in: the likeliest fastest early, the slowest to compile (two compiles) last.
SYSTEMS = ("loop", "hf", "xdr_static", "xdr_seeded", "ct2", "hf_static")
INPUT_TOKENS, NEW_TOKENS, SAMPLES, TOP_K = 128, 32, 5, 10
GENERATIONS = 18_000_000 * 7 * 5  # passages x languages x samples: xQG's augmentation of the XOR-TyDi corpus
AGREEMENT_PASSAGES = 64
SEEDING_ROWS = 5120  # 1024 passages x 5: the seeding cost per row is measured on this many
REFERENCE_H100 = {"loop_queries_per_s": 7.6, "hf_b256_queries_per_s": 1165.0, "target_queries_per_s": 7300.0}


def random_inputs(passages: int, vocab: int) -> torch.Tensor:
    """``passages`` x 128 token ids: 127 random non-special tokens, then EOS as the tokenizer ends them."""
    ids = torch.randint(3, vocab, (passages, INPUT_TOKENS), generator=torch.Generator().manual_seed(1))
    ids[:, -1] = MT5_EOS
    return ids


def flops_per_passage(config: MT5Config) -> dict[str, float]:
    """The useful FLOPs of one passage, by the formula in the module docstring."""
    d, i, f, v = config.d_model, config.num_heads * config.d_kv, config.d_ff, config.vocab_size
    le, ld, length = config.num_layers, config.num_decoder_layers, INPUT_TOKENS
    encoder = 2 * le * (4 * d * i + 3 * d * f) * length + 4 * le * i * length**2
    cross_kv = 2 * ld * 2 * d * i * length
    n_tok = ld * (6 * d * i + 3 * d * f) + d * v
    decoder = SAMPLES * sum(2 * n_tok + 4 * ld * i * (t + length) for t in range(1, NEW_TOKENS + 1))
    return {
        "encoder": encoder,
        "cross_kv": cross_kv,
        "decoder": decoder,
        "total": encoder + cross_kv + decoder,
    }


def is_oom(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def hf_kwargs() -> dict[str, Any]:
    """Top-k 10, 5 samples, exactly 32 new tokens: EOS stays masked until ``min_new_tokens`` is reached."""
    return dict(
        do_sample=True,
        top_k=TOP_K,
        top_p=1.0,
        temperature=1.0,
        num_return_sequences=SAMPLES,
        max_new_tokens=NEW_TOKENS,
        min_new_tokens=NEW_TOKENS,
        pad_token_id=MT5_PAD,
        eos_token_id=MT5_EOS,
    )


class Bench:
    """Runs the systems on one model and one input set and keeps their results for the JSON record."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = torch.device(args.device)
        self.dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.model = random_mt5(args.size, self.device, self.dtype)
        self.inputs = random_inputs(max(args.passages, max(self.all_batches())), self.model.config.vocab_size)
        self.results: dict[str, dict[str, Any]] = {}
        self.tmp = tempfile.TemporaryDirectory(prefix="xdr-genbench-")

    def all_batches(self) -> list[int]:
        a = self.args
        return [*a.hf_batches, *a.static_batches, *a.ct2_batches, *a.xdr_batches]

    def batches(self, batch: int) -> list[torch.Tensor]:
        """The timed inputs: ``passages // batch`` full batches (at least one), so shapes never change."""
        count = max(1, self.args.passages // batch)
        return [self.inputs[j * batch : (j + 1) * batch] for j in range(count)]

    def measure(
        self,
        name: str,
        batch: int,
        run: Callable[[Any], int],
        *,
        note: str = "",
        batches: list[torch.Tensor] | None = None,
        prepare: Callable[[torch.Tensor], Any] | None = None,
    ) -> bool:
        """Warm up on one batch, then time all ``batches`` ``--repeats`` times; False once memory runs out.

        ``prepare`` turns a batch of ids into the system's input outside the timing (default: moves it to the
        device); ``run`` generates for one prepared batch and returns the new-token count per sample it saw.
        """
        batches = batches if batches is not None else self.batches(batch)
        prepare = prepare or (lambda ids: ids.to(self.device))
        record: dict[str, Any] = {"batch_passages": batch, "note": note}
        self.results[name] = record
        try:
            inputs = [prepare(b) for b in batches]
            sync(self.device)
            start = time.perf_counter()
            run(inputs[0])
            sync(self.device)
            record["warmup_s"] = round(time.perf_counter() - start, 3)
            seconds, tokens = [], set()
            for _ in range(self.args.repeats):
                sync(self.device)
                start = time.perf_counter()
                tokens |= {run(x) for x in inputs}
                sync(self.device)
                seconds.append(time.perf_counter() - start)
        except Exception as error:  # one system failing must not cost the other measurements
            record.update(status="oom" if is_oom(error) else "error", error=f"{type(error).__name__}: {error}"[:500])
            print(f"{name:18s} {record['status']}: {record['error']}", flush=True)
            free_memory(self.device)
            return record["status"] != "oom"
        passages = sum(len(b) for b in batches)
        median = statistics.median(seconds)
        record.update(
            status="ok",
            passages=passages,
            queries=passages * SAMPLES,
            new_tokens_per_sample=sorted(tokens),
            seconds=[round(s, 4) for s in seconds],
            queries_per_s=round(passages * SAMPLES / median, 2),
        )
        if self.device.type == "cuda":
            record["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            torch.cuda.reset_peak_memory_stats()
        print(
            f"{name:18s} {record['queries_per_s']:10.1f} queries/s  (warm-up {record['warmup_s']} s)",
            flush=True,
        )
        free_memory(self.device)
        return True

    def hf_generate(self, ids: torch.Tensor, **extra: Any) -> int:
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **hf_kwargs(), **extra)
        assert out.shape[0] == ids.shape[0] * SAMPLES, out.shape
        return out.shape[1] - 1  # the decoder-start token is not generated

    def run_loop(self) -> None:
        n = self.args.loop_passages
        self.measure(
            "loop",
            1,
            self.hf_generate,
            batches=list(self.inputs[:n].split(1)),
            note=f"{n} passages, one generate call each; the rate is extrapolated",
        )

    def run_hf(self) -> None:
        for batch in self.args.hf_batches:
            if not self.measure(f"hf_b{batch}", batch, self.hf_generate):
                break

    def run_hf_static(self) -> None:
        config = CompileConfig()  # transformers' default: mode "reduce-overhead", i.e. CUDA graphs
        if self.device.type != "cuda":
            config = CompileConfig(mode="default")
            config._compile_all_devices = True  # transformers' own switch for compiling off-GPU (tests)
        note = f"cache_implementation=static, forward compiled by generate (mode {config.mode})"
        for batch in self.args.static_batches:
            ok = self.measure(
                f"hf_static_b{batch}",
                batch,
                lambda ids: self.hf_generate(ids, cache_implementation="static", compile_config=config),
                note=note,
            )
            # transformers keeps the compiled forward on the model; its presence shows the compile happened.
            self.results[f"hf_static_b{batch}"]["compiled"] = hasattr(self.model, "_compiled_call")
            if not ok:
                break
        torch._dynamo.reset()
        self.model.__dict__.pop("_compiled_call", None)

    def run_xdr_seeded(self) -> None:
        try:
            from xdr.generate.hf import Sampling, SeededSampler
        except Exception as error:  # ImportError, or an installed dependency that does not fit the machine
            self.results["xdr_seeded"] = {"status": "skipped", "error": f"import xdr failed: {error!r}"}
            return
        sampling = Sampling(top_k=TOP_K, max_new_tokens=NEW_TOKENS)
        batch = self.args.hf_batches[0]

        def seeded(ids: torch.Tensor) -> int:
            sampler = SeededSampler(range(ids.shape[0] * SAMPLES), sampling)
            return self.hf_generate(ids, logits_processor=[sampler])

        self.measure(f"xdr_seeded_b{batch}", batch, seeded, note="HF generate + xdr SeededSampler (per-row seeds)")

    def ct2_translator(self) -> tuple[Any, list[str]]:
        """Save the model and a 3-token tokenizer, convert them, and load the translator and its vocabulary.

        The T5 converter names ids past the tokenizer's ``<extra_id_k>``, so a tokenizer of the special tokens
        alone yields the model's full vocabulary.
        """
        import ctranslate2
        from ctranslate2.converters import TransformersConverter
        from tokenizers import Tokenizer, models

        hf_dir, ct2_dir = Path(self.tmp.name) / "hf", Path(self.tmp.name) / "ct2"
        self.model.save_pretrained(hf_dir)
        vocab = {"<pad>": MT5_PAD, "</s>": MT5_EOS, "<unk>": MT5_UNK}
        tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
        PreTrainedTokenizerFast(
            tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
        ).save_pretrained(hf_dir)
        compute_type = self.args.ct2_compute_type
        TransformersConverter(str(hf_dir)).convert(str(ct2_dir), quantization=compute_type, force=True)
        translator = ctranslate2.Translator(
            str(ct2_dir),
            device=self.device.type,
            compute_type=compute_type,
            intra_threads=self.args.threads if self.device.type == "cpu" else 0,
        )
        tokens = json.loads((ct2_dir / "shared_vocabulary.json").read_text())
        return translator, tokens

    def run_ct2(self) -> None:
        try:
            import ctranslate2
        except ImportError as error:
            self.results["ct2"] = {"status": "skipped", "error": f"pip install ctranslate2 ({error})"}
            return
        start = time.perf_counter()
        try:
            translator, vocab = self.ct2_translator()
        except Exception as error:  # e.g. a converter that does not know this transformers version
            self.results["ct2"] = {"status": "error", "error": f"{type(error).__name__}: {error}"[:500]}
            return
        setup = {
            "ld_library_path": os.environ.get("LD_LIBRARY_PATH"),
            "version": ctranslate2.__version__,
            "compute_type": self.args.ct2_compute_type,
            "conversion_s": round(time.perf_counter() - start, 1),
        }

        def to_strings(ids: torch.Tensor) -> list[list[str]]:
            return [[vocab[t] for t in row] for row in ids.tolist()]

        def translate(source: list[list[str]]) -> int:
            results = translator.translate_batch(
                source,
                max_batch_size=len(source),
                beam_size=1,
                sampling_topk=TOP_K,
                num_hypotheses=SAMPLES,
                min_decoding_length=NEW_TOKENS,
                max_decoding_length=NEW_TOKENS,
            )
            lengths = {len(h) for r in results for h in r.hypotheses}
            assert sum(len(r.hypotheses) for r in results) == len(source) * SAMPLES and len(lengths) == 1, lengths
            return lengths.pop()

        for batch in self.args.ct2_batches:
            ok = self.measure(f"ct2_b{batch}", batch, translate, note="CTranslate2 translate_batch", prepare=to_strings)
            self.results[f"ct2_b{batch}"].update(setup)
            if not ok:
                break

    def run_xdr_static(self) -> None:
        from xdr.generate.decode import StaticDecoder
        from xdr.generate.hf import Sampling, row_uniforms

        sampling = Sampling(top_k=TOP_K, max_new_tokens=NEW_TOKENS)
        compile_step = self.args.compile
        note = f"xdr StaticDecoder, step compiled: {compile_step} (CUDA graphs on GPU); numpy per-row seeding"
        self.results["seeding"] = seeding_cost(SEEDING_ROWS)
        for batch in self.args.xdr_batches:
            decoder = StaticDecoder(self.model, sampling, compile=compile_step)

            def generate(ids: torch.Tensor, decoder: StaticDecoder = decoder) -> int:
                uniforms = row_uniforms(range(ids.shape[0] * SAMPLES), NEW_TOKENS)  # seeding is timed too
                out = decoder.generate(ids, torch.ones_like(ids), SAMPLES, uniforms, MT5_PAD)
                return int((out != MT5_PAD).sum(dim=1).min())

            name = f"xdr_static_b{batch}"
            ok = self.measure(name, batch, generate, note=note)
            if ok and self.results[name]["status"] == "ok":
                self.results[name]["agreement_with_xdr_seeded"] = self.agreement(decoder)
                share = self.results["seeding"]["numpy_us_per_row"] * 1e-6 * self.results[name]["queries_per_s"]
                self.results[name]["seeding_share_of_time"] = round(share, 4)
            del decoder
            torch._dynamo.reset()
            free_memory(self.device)
            if not ok:
                break

    def agreement(self, decoder: Any) -> float | None:
        """Share of sequences the static loop and HF + SeededSampler draw alike from the same row seeds."""
        from xdr.generate.hf import Sampling, SeededSampler, row_uniforms

        checked = AGREEMENT_PASSAGES  # HF's float32 logits of a large batch could run out of memory
        ids = self.inputs[:checked].to(self.device)
        ours = decoder.generate(ids, torch.ones_like(ids), SAMPLES, row_uniforms(range(checked * SAMPLES), NEW_TOKENS),
                                MT5_PAD)
        sampler = SeededSampler(range(checked * SAMPLES), Sampling(top_k=TOP_K, max_new_tokens=NEW_TOKENS))
        free = {k: v for k, v in hf_kwargs().items() if k != "min_new_tokens"}  # EOS allowed, as in the static loop
        with torch.inference_mode():
            hf = self.model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), **free, logits_processor=[sampler]
            )[:, 1:]
        same = (hf == ours[:, : hf.shape[1]]).all(dim=1) & (ours[:, hf.shape[1] :] == MT5_PAD).all(dim=1)
        return round(same.float().mean().item(), 4)


def seeding_cost(rows: int) -> dict[str, Any]:
    """Microseconds per query to hash its seed and turn it into 32 uniforms, per seeding scheme (host CPU)."""
    from xdr.generate.base import passage_seed, row_seed
    from xdr.generate.hf import row_uniforms

    start = time.perf_counter()
    seeds = [row_seed(passage_seed(0, f"doc{i // SAMPLES}", "ja"), i % SAMPLES) for i in range(rows)]
    record: dict[str, Any] = {"rows": rows, "hash_us_per_row": round((time.perf_counter() - start) / rows * 1e6, 2)}
    for scheme in ("numpy", "philox"):
        start = time.perf_counter()
        row_uniforms(seeds, NEW_TOKENS, scheme)
        record[f"{scheme}_us_per_row"] = round((time.perf_counter() - start) / rows * 1e6, 2)
    return record


def summary(
    results: dict[str, dict[str, Any]],
    baseline: str,
    config: MT5Config,
    args: argparse.Namespace,
    on_gpu: bool,
) -> dict[str, Any]:
    """Ratios to the baseline, the best system's MFU and the hours the 630M generations would take."""
    base = results.get(baseline, {}).get("queries_per_s")
    ok = {k: r for k, r in results.items() if r.get("status") == "ok"}
    for r in ok.values():
        r["ratio_to_baseline"] = round(r["queries_per_s"] / base, 3) if base else None
    flops = flops_per_passage(config)
    out: dict[str, Any] = {"baseline": baseline, "flops_per_passage": flops}
    if not ok:
        return out
    best = max(ok, key=lambda k: ok[k]["queries_per_s"])
    qps = ok[best]["queries_per_s"]
    tflops = flops["total"] * qps / SAMPLES / 1e12
    peak = peak_tflops(torch.cuda.get_device_name(0) if on_gpu else None, args.peak_tflops)
    hours = GENERATIONS / qps / 3600
    out.update(
        best=best,
        best_queries_per_s=qps,
        best_achieved_tflops=round(tflops, 3),
        best_mfu=round(tflops / peak, 4) if peak else None,
        peak_tflops=peak,
        generations=GENERATIONS,
        hours_for_generations={str(n): round(hours / n, 1) for n in args.gpus},
        hours_note="ideal linear scaling over N GPUs, each running the best system",
        baseline_hours_1_gpu=round(GENERATIONS / base / 3600, 1) if base else None,
        # The target is an H100 figure: a CPU smoke run neither meets nor misses it.
        target_met=qps >= REFERENCE_H100["target_queries_per_s"] if on_gpu else None,
    )
    return out


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--size", choices=list(MT5_SIZES), default=None, help="default: base on cuda, tiny on cpu")
    ap.add_argument("--passages", type=int, default=None, help="timed per system (default 4096 cuda, 64 cpu)")
    ap.add_argument("--loop-passages", type=int, default=None, help="for the loop (default 8 cuda, 4 cpu)")
    ap.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma list of {', '.join(SYSTEMS)}")
    ap.add_argument("--hf-batches", type=int_list, help="the first is the baseline (256,512,1024,2048 | 16,32,64)")
    ap.add_argument("--static-batches", type=int_list, help="default 256,1024 on cuda | 16 on cpu")
    ap.add_argument("--ct2-batches", type=int_list, help="default 256,1024 | 16,64")
    ap.add_argument("--xdr-batches", type=int_list, help="xdr_static's (default 256,1024 | 16,64)")
    ap.add_argument("--ct2-compute-type", default=None, help="default bfloat16 on cuda, float32 on cpu (or int8)")
    ap.add_argument("--no-compile", dest="compile", action="store_false", help="run xdr_static's step eagerly")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2, help="torch and CTranslate2 threads on CPU")
    ap.add_argument("--peak-tflops", type=float, default=None, help="default: the GPU's dense bf16 peak")
    ap.add_argument("--gpus", type=int_list, default="1,8,16,32", help="GPU counts for the hours estimate")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    on_gpu = args.device == "cuda"
    args.size = args.size or ("base" if on_gpu else "tiny")
    # The CPU smoke run shrinks the batches (and keeps the ratios between them) to finish in minutes.
    args.passages = args.passages or (4096 if on_gpu else 64)
    args.loop_passages = args.loop_passages or (8 if on_gpu else 4)
    args.hf_batches = args.hf_batches or ([256, 512, 1024, 2048] if on_gpu else [16, 32, 64])
    args.static_batches = args.static_batches or ([256, 1024] if on_gpu else [16])
    args.ct2_batches = args.ct2_batches or ([256, 1024] if on_gpu else [16, 64])
    args.xdr_batches = args.xdr_batches or ([256, 1024] if on_gpu else [16, 64])
    args.ct2_compute_type = args.ct2_compute_type or ("bfloat16" if on_gpu else "float32")
    systems = [s for s in args.systems.split(",") if s]
    if unknown := set(systems) - set(SYSTEMS):
        ap.error(f"unknown systems {sorted(unknown)}")
    if not on_gpu:
        torch.set_num_threads(args.threads)
    out = args.out or REPO / "benchmarks" / "results" / f"generate_speed_{args.device}_{args.size}.json"

    bench = Bench(args)
    config = bench.model.config
    record: dict[str, Any] = {
        "benchmark": "generate_speed",
        "status": "measured on GPU" if on_gpu else CPU_STATUS,
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            **machine_info(),
            "transformers": transformers.__version__,
            "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        },
        "model": {
            "size": args.size,
            "random_weights": True,
            **MT5_SIZES[args.size],
            "parameters": sum(p.numel() for p in bench.model.parameters()),
            "dtype": str(bench.dtype).removeprefix("torch."),
        },
        "workload": {
            "input_tokens": INPUT_TOKENS,
            "new_tokens": NEW_TOKENS,
            "samples_per_passage": SAMPLES,
            "top_k": TOP_K,
            "passages": args.passages,
            "loop_passages": args.loop_passages,
            "repeats": args.repeats,
            "forced_length": "EOS masked until 32 new tokens (HF min_new_tokens, CT2 min_decoding_length, "
            "xdr_static: a random mT5-base never samples it): every system generates 32 per sample",
        },
        "reference_h100": REFERENCE_H100,
        "results": bench.results,
    }
    if on_gpu:
        record["machine"]["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    runners = {
        "loop": bench.run_loop,
        "hf": bench.run_hf,
        "hf_static": bench.run_hf_static,
        "xdr_seeded": bench.run_xdr_seeded,
        "ct2": bench.run_ct2,
        "xdr_static": bench.run_xdr_static,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    for system in systems:
        runners[system]()
        record["summary"] = summary(bench.results, f"hf_b{args.hf_batches[0]}", config, args, on_gpu)
        record["machine"]["load_average_1m_now"] = round(os.getloadavg()[0], 2)
        out.write_text(json.dumps(record, indent=2) + "\n")  # after every system: a timeout keeps what ran
    print(json.dumps(record["summary"], indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
