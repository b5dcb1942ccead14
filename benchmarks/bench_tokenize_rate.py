"""Tokenizer rate per CPU core, against the GPU's encode rate: how many cores one GPU needs to stay fed.

The fast (Rust) tokenizer of me5-small (XLM-R's 250k SentencePiece vocabulary) tokenises, one core at a
time (``TOKENIZERS_PARALLELISM=false``, ``process_time``, so other jobs on a shared machine do not bend
the figure), two text sets: XQuAD-R's paragraphs in its seven languages, and synthetic passages of ~100
words drawn from those paragraphs' words (a web-corpus passage's length). Two ways per text set:

  hf_call      ``xdr.models.tokenize.token_ids``: the tokenizer call as ``Encoder`` makes it, ids as lists
  worker       what one ``TokenizerPool`` worker does per piece: the same call, then packing into arrays

and, in the same run, the peer: the same texts through a ``TokenizerPool`` of ``--workers`` processes
against ``token_ids`` in this process (wall clock, so only meaningful on an idle machine).

The GPU side comes from ``benchmarks/results/encode_speed_cuda_h200_bert_base.json`` (BERT-base, bf16, an
H200, passages cut at 128 tokens): its measured xdr rate, sentence-transformers' rate, the 3x target, and
the rate at 40% MFU. Cores needed = GPU tokens/s / tokens per core-second (tokens, not passages, since
the two runs' passages differ in length), with the hf_call figure of untruncated texts (max_length 512):
a tokenizer reads the whole text before it truncates, so a rate per kept token of cut paragraphs would
understate it (the GPU run's texts, mostly sentences, were rarely cut: 62 tokens on average).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from common import read_xquad

os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core: the per-core rate (set before tokenizers loads)

REPO = Path(__file__).resolve().parents[1]
GPU_RESULT = REPO / "benchmarks" / "results" / "encode_speed_cuda_h200_bert_base.json"
LANGS = ["en", "de", "el", "es", "hi", "tr", "vi"]
MFU_TARGET = 0.40


def synthetic(paragraphs: list[str], count: int, words: int = 100) -> list[str]:
    """``count`` passages of ``words`` +- 20 words, each from one paragraph's language (seeded)."""
    rng = random.Random(0)
    pools = [p.split() for p in paragraphs]
    return [" ".join(rng.choices(rng.choice(pools), k=rng.randint(words - 20, words + 20))) for _ in range(count)]


def cpu_rate(fn: Any, texts: list[str], repeats: int) -> dict[str, float]:
    """Texts and tokens per CPU-second of this process (best of ``repeats``: the least disturbed)."""
    best, tokens = float("inf"), 0
    for _ in range(repeats):
        start = time.process_time()
        tokens = fn(texts)
        best = min(best, time.process_time() - start)
    return {
        "cpu_seconds": round(best, 4),
        "texts_per_core_s": round(len(texts) / best, 1),
        "tokens_per_core_s": round(tokens / best, 1),
        "mean_tokens": round(tokens / len(texts), 1),
    }


def gpu_rates() -> dict[str, Any]:
    """The GPU encode rates the cores must feed, from the recorded H200 run."""
    record = json.loads(GPU_RESULT.read_text())
    r, texts = record["results"], record["texts"]
    mean_tokens = texts["tokens"] / texts["count"]
    flops_per_text = r["model_flops_per_pass"] / texts["count"]
    st = r["sentence_transformers"]["passages_per_s"]
    rates = {
        "xdr_measured": r["xdr"]["passages_per_s"],
        "sentence_transformers": st,
        "target_3x_sentence_transformers": 3 * st,
        f"at_{int(MFU_TARGET * 100)}pct_mfu": MFU_TARGET * r["peak_tflops"] * 1e12 / flops_per_text,
    }
    return {
        "source": str(GPU_RESULT.relative_to(REPO)),
        "gpu": record["machine"].get("gpu"),
        "mean_tokens": round(mean_tokens, 1),
        "max_tokens": texts["max_tokens"],
        "passages_per_s": {k: round(v, 1) for k, v in rates.items()},
        "tokens_per_s": {k: round(v * mean_tokens, 1) for k, v in rates.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="the folder holding xquad-r/")
    ap.add_argument("--model", default="me5-small", help="a registry name, hub id or local directory")
    ap.add_argument("--synthetic", type=int, default=3000, help="synthetic ~100-word passages")
    ap.add_argument("--limit", type=int, default=None, help="XQuAD-R paragraphs to use (default all)")
    ap.add_argument("--workers", type=int, default=2, help="TokenizerPool processes for the wall-clock peer run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "tokenize_rate_cpu.json")
    args = ap.parse_args()

    import torch
    from transformers import AutoTokenizer

    from xdr.models import resolve_spec
    from xdr.models.tokenize import TokenizerPool, _start_worker, _tokenize_piece, token_ids
    from xdr.runtime import machine_info

    torch.set_num_threads(1)
    spec = resolve_spec(args.model)
    tokenizer = AutoTokenizer.from_pretrained(spec.path)
    _start_worker(tokenizer)  # this process plays one worker for the "worker" figure
    paragraphs = read_xquad(args.data, LANGS, "paragraphs")[: args.limit]
    sets = {"xquad_r_paragraphs": paragraphs, "synthetic_100_words": synthetic(paragraphs, args.synthetic)}
    lengths = {"max_length_512": 512, "max_length_128": 128}
    results: dict[str, Any] = {}
    for set_name, texts in sets.items():
        texts = [spec.passage_prefix + t for t in texts]
        for length_name, length in lengths.items():
            results[f"{set_name}/{length_name}"] = {
                "texts": len(texts),
                "hf_call": cpu_rate(lambda t, n=length: sum(map(len, token_ids(tokenizer, t, n))), texts, args.repeats),
                "worker": cpu_rate(lambda t, n=length: int(_tokenize_piece(t, n)[1].sum()), texts, args.repeats),
            }
        # the peer, in the same run: a pool of worker processes against this one process, wall clock
        pool = TokenizerPool(tokenizer, args.workers)
        try:
            pool.tokenize(texts[:64], 128)  # workers started and warm
            start = time.perf_counter()
            pool.tokenize(texts, 128)
            pooled = time.perf_counter() - start
        finally:
            pool.close()
        start = time.perf_counter()
        token_ids(tokenizer, texts, 128)
        single = time.perf_counter() - start
        results[f"{set_name}/pool_wall_clock"] = {
            "workers": args.workers,
            "pool_seconds": round(pooled, 3),
            "in_process_seconds": round(single, 3),
            "speedup": round(single / pooled, 2),
        }

    gpu = gpu_rates()
    per_core = {k: results[f"{k}/max_length_512"]["hf_call"]["tokens_per_core_s"] for k in sets}
    cores = {
        text_set: {rate: round(tps / core, 1) for rate, tps in gpu["tokens_per_s"].items()}
        for text_set, core in per_core.items()
    }
    record = {
        "benchmark": "tokenize_rate",
        "status": "measured on CPU; the GPU rates are read from the H200 encode run named in gpu.source",
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "machine": {**machine_info(), "load_average_1m_at_end": os.getloadavg()[0]},
        "tokenizer": {"model": spec.name, "path_kind": "fast", "class": type(tokenizer).__name__,
                      "vocab_size": len(tokenizer)},
        "results": results,
        "gpu": gpu,
        "tokens_per_core_s": per_core,
        "cores_per_gpu": cores,
        "cores_note": "GPU tokens/s over one core's tokens/s (hf_call, untruncated); the encoding process "
        "itself needs one more core for batching and the forward pass's host side",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({"tokens_per_core_s": per_core, "cores_per_gpu": cores}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
