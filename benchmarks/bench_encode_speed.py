"""Encoding throughput: xdr's Encoder against sentence-transformers ``encode`` on the same model and inputs.

CPU mode (default): me5-small on real XQuAD-R passages, both run in this process with the same thread
count, interleaved repeats, medians; the outputs must agree. GPU mode (``--random-bert-base``, default on
CUDA): a random-weight BERT-base with mBERT's vocabulary size (119,547), passages truncated to 128 tokens,
bf16; it also reports MFU (``--tiny`` shrinks the model to check that recipe on a CPU).

With ``--tokenizer-workers N`` (default on CUDA: all cores but two, at most 8) a third system,
``xdr_workers``, runs the same Encoder with tokenisation in N worker processes ahead of the model
(``Encoder(tokenizer_workers=N)``); ``xdr`` tokenises in its own process (``tokenizer_workers=0``). The
two must give identical vectors, which the run asserts.

MFU counts the useful work only (real tokens, no padding):
    FLOPs = 2 · P · Σ L_i  +  4 · layers · hidden · Σ L_i²
where P is the number of non-embedding parameters in the encoder layers (each weight does one multiply
and one add per token), L_i the token count of text i, and the second term the two attention matmuls
(QKᵀ and AV, 2·L²·hidden each per layer). MFU = FLOPs / seconds / peak, with the GPU's dense bf16 peak
from ``common.PEAK_BF16_TFLOPS`` (``--peak-tflops`` for other hardware; none for a CPU run).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import peak_tflops, read_xquad, save_random_bert

from xdr.runtime import machine_info

REPO = Path(__file__).resolve().parents[1]


def model_flops(model: torch.nn.Module, lengths: np.ndarray) -> float:
    cfg = model.config
    p_layers = sum(p.numel() for p in model.encoder.parameters())
    attention = 4 * cfg.num_hidden_layers * cfg.hidden_size * (lengths**2).sum()
    return float(2 * p_layers * lengths.sum() + attention)


def timed(fn) -> tuple[float, float, np.ndarray]:
    """Wall seconds, this process's CPU seconds, and the result.

    CPU seconds are the contention-robust figure on a shared machine when torch runs one thread: other
    processes stretch the wall clock but not the work done.
    """
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", "--shared", type=Path, default=REPO.parent / "shared" / "data",
                    help="the folder holding xquad-r/")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--texts", default="sentences", choices=["sentences", "paragraphs"])
    ap.add_argument("--batch-size", type=int, default=None, help="default: 32 on CPU, 256 on CUDA")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads, shared by both")
    ap.add_argument("--limit", type=int, default=None, help="texts to encode (the pool repeats to fill)")
    ap.add_argument("--random-bert-base", action="store_true", help="GPU recipe (default with --device cuda)")
    ap.add_argument("--tiny", action="store_true", help="tiny random BERT, to smoke-test the GPU recipe")
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--tokenizer-workers", type=int, default=None,
                    help="xdr_workers' processes (default: all cores but two, at most 8, on CUDA; 0 = no such system)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from sentence_transformers import SentenceTransformer

    from xdr.config import ModelSpec
    from xdr.models import Encoder, resolve_spec
    from xdr.models.base import stage_budget

    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    random_bert = args.random_bert_base or device.type == "cuda"
    batch_size = args.batch_size or (256 if device.type == "cuda" else 32)
    info = machine_info()

    tmp = tempfile.TemporaryDirectory(prefix="xdr-bench-")
    if random_bert:
        langs = ["en", "de", "el", "es", "hi", "tr", "vi"]
        pool = read_xquad(args.data, langs, "paragraphs") + read_xquad(args.data, langs, "sentences")
        random.Random(0).shuffle(pool)  # any --limit gets the same mix of long and short passages
        save_random_bert(Path(tmp.name), "tiny" if args.tiny else "base", pool)
        spec = ModelSpec(name="random-bert-base" + ("-tiny" if args.tiny else ""), path=tmp.name,
                         pooling="mean", normalize=False, passage_max_length=128)
        limit = args.limit or (50_000 if device.type == "cuda" else 2_000)
    else:
        langs = ["en"]
        pool = read_xquad(args.data, langs, args.texts)
        spec = resolve_spec("me5-small")
        limit = args.limit or len(pool)
    texts = (pool * (limit // len(pool) + 1))[:limit]

    enc = Encoder.load(spec, device, tokenizer_workers=0)
    workers = args.tokenizer_workers
    if workers is None:
        workers = max(0, min(8, (os.cpu_count() or 1) - 2)) if device.type == "cuda" else 0
    enc_workers = Encoder(spec, enc.model, enc.tokenizer, enc.device, tokenizer_workers=workers) if workers else None
    st_kwargs = {"dtype": enc.model.dtype} if device.type == "cuda" else {}
    st = SentenceTransformer(spec.path, device=str(device), model_kwargs=st_kwargs)
    st.max_seq_length = spec.passage_max_length
    prompt = spec.passage_prefix or None

    def run_xdr(encoder: Encoder = enc) -> np.ndarray:  # as `xdr encode --batch-size` packs a forward pass
        return encoder.encode(texts, "passage", **stage_budget(spec, "passage", batch_size))

    def run_st() -> np.ndarray:
        return st.encode(texts, batch_size=batch_size, prompt=prompt, normalize_embeddings=spec.normalize,
                         convert_to_numpy=True)

    warm = texts[: 4 * batch_size]
    enc.encode(warm, "passage", batch_size=batch_size)
    st.encode(warm, batch_size=batch_size, prompt=prompt)
    systems = [("xdr", run_xdr), ("sentence_transformers", run_st)]
    if enc_workers is not None:
        enc_workers.encode(warm, "passage", batch_size=batch_size)  # the worker processes start here
        systems.insert(1, ("xdr_workers", lambda: run_xdr(enc_workers)))
    times: dict[str, list[float]] = {name: [] for name, _ in systems}
    cpu_times: dict[str, list[float]] = {name: [] for name, _ in systems}
    outs: dict[str, np.ndarray] = {}
    for r in range(args.repeats):  # interleaved, alternating order, so load drift hits all alike
        runs = systems
        for name, fn in runs if r % 2 == 0 else runs[::-1]:
            seconds, cpu_seconds, outs[name] = timed(fn)
            times[name].append(seconds)
            cpu_times[name].append(cpu_seconds)
            print(f"repeat {r} {name:22s} {len(texts) / seconds:9.1f} passages/s "
                  f"(wall {seconds:.2f}s, cpu {cpu_seconds:.2f}s)", flush=True)

    if enc_workers is not None:
        enc_workers.close()
        assert np.array_equal(outs["xdr_workers"], outs["xdr"]), "worker tokenising changed the vectors"
    a, b = outs["xdr"], outs["sentence_transformers"]
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    min_cos = float(cos.min())
    floor = 0.9999 if enc.model.dtype == torch.float32 else 0.999
    assert min_cos >= floor, f"outputs differ: min cosine {min_cos:.6f} < {floor}"

    lengths = np.array([len(x) for x in enc.tokenize(texts, "passage")], dtype=np.int64)
    med = {k: statistics.median(v) for k, v in times.items()}
    results: dict[str, Any] = {
        k: {"seconds": [round(s, 4) for s in v], "median_seconds": round(med[k], 4),
            "passages_per_s": round(len(texts) / med[k], 2), "tokens_per_s": round(lengths.sum() / med[k], 1),
            "cpu_seconds": [round(s, 4) for s in cpu_times[k]]}
        for k, v in times.items()
    }
    results["ratio_xdr_over_st"] = round(med["sentence_transformers"] / med["xdr"], 4)
    cpu_med = {k: statistics.median(v) for k, v in cpu_times.items()}
    results["ratio_xdr_over_st_cpu_time"] = round(cpu_med["sentence_transformers"] / cpu_med["xdr"], 4)
    if "xdr_workers" in med:  # cpu_seconds of xdr_workers count this process only, not its workers
        results["ratio_xdr_workers_over_st"] = round(med["sentence_transformers"] / med["xdr_workers"], 4)
        results["ratio_xdr_workers_over_xdr"] = round(med["xdr"] / med["xdr_workers"], 4)
        results["xdr_workers"]["tokenizer_workers"] = workers
    pairs = zip(times["xdr"], times["sentence_transformers"], strict=True)
    results["ratio_per_repeat"] = [round(s / x, 4) for x, s in pairs]
    # Adjacent runs share the machine's load at that moment, so the paired median resists drift.
    results["ratio_paired_median"] = round(statistics.median(results["ratio_per_repeat"]), 4)
    results["min_cosine_xdr_vs_st"] = round(min_cos, 6)
    peak = peak_tflops(info["gpu"] if device.type == "cuda" else None, args.peak_tflops)
    if random_bert:
        flops = model_flops(enc.model, lengths)
        results["model_flops_per_pass"] = flops
        results["peak_tflops"] = peak
        for k in times:
            achieved = flops / med[k] / 1e12
            results[k]["achieved_tflops"] = round(achieved, 3)
            results[k]["mfu"] = round(achieved / peak, 4) if peak else None
    info["load_average_1m_at_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None

    unit = "paragraphs+sentences" if random_bert else args.texts
    report = {
        "benchmark": "encode_speed",
        "model": spec.name,
        "model_spec": spec.model_dump(),
        "dtype": str(enc.model.dtype).removeprefix("torch."),
        "texts": {"source": f"xquad-r {','.join(langs)} {unit}",
                  "count": len(texts), "tokens": int(lengths.sum()), "max_tokens": int(lengths.max()),
                  "mean_tokens": round(float(lengths.mean()), 1)},
        "settings": {"device": str(device), "batch_size": batch_size, "repeats": args.repeats,
                     "threads": torch.get_num_threads(), "max_length": spec.passage_max_length,
                     "prompt": prompt, "tokenizer_workers": workers},
        "results": results,
        "flops_formula": "2*P_layers*sum(L) + 4*layers*hidden*sum(L^2), real tokens only",
        "machine": info,
        "command": " ".join(shlex.quote(x) for x in [sys.executable, *sys.argv]),
    }
    suffix = ("_random_bert" + ("_tiny" if args.tiny else "")) if random_bert else ""
    out = args.out or REPO / "benchmarks" / "results" / f"encode_speed_{device.type}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=2))
    print(f"wrote {out}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
