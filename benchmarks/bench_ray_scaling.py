"""Ray engine scaling on one machine: the same encode (me5-small) or generate (a small random mT5) job on the
local engine (1 and 2 threads) and on Ray (1 worker x 1 thread, 2 workers x 1 thread); Ray's fixed start-up
cost (starting Ray, starting the workers, loading the model in each) is timed separately.

Targets: Ray with 1 worker within 10% of local with 1 thread; 2 workers >= 1.7x one worker. Each job is the
whole stage call (`encode_passages` / `run_generation` into a fresh directory); a Ray run's "steady" time is
its wall time minus the start-up of its workers, measured in the same run by opening the same worker pool
once more. The outputs of every run must equal the local 1-thread run's, byte for byte.

Ray must stay on loopback: ``--isolate`` re-runs this script inside ``unshare --net --pid`` with only ``lo``
up (root or user namespaces), where ``ray.init`` starts a local Ray on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def read_sentences(data: Path) -> list[str]:
    path = data / "xquad-r" / "en.json"
    if not path.exists():
        sys.exit(f"{path} not found; pass --data DIR (the folder holding xquad-r/)")
    return [s for a in json.loads(path.read_text(encoding="utf-8"))["data"] for p in a["paragraphs"]
            for s in p["sentences"]]


def save_small_mt5(out: Path, texts: list[str]) -> None:
    """A small random mT5 (d_model 64, 2+2 layers) with a Unigram tokenizer trained on ``texts``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import MT5Config, MT5ForConditionalGeneration, PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    special = {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}
    tok.train_from_iterator(texts, trainers.UnigramTrainer(vocab_size=2000, special_tokens=[*special.values()],
                                                           unk_token="<unk>"))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **special)
    config = MT5Config(vocab_size=len(fast), d_model=64, d_ff=128, d_kv=16, num_layers=2, num_decoder_layers=2,
                       num_heads=4, pad_token_id=fast.pad_token_id, eos_token_id=fast.eos_token_id,
                       decoder_start_token_id=fast.pad_token_id)
    torch.manual_seed(0)
    MT5ForConditionalGeneration(config).save_pretrained(out)
    fast.save_pretrained(out)


def shard_bytes(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.glob("part-*"))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", choices=["encode", "generate"], default="encode")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="the folder holding xquad-r/")
    ap.add_argument("--limit", type=int, default=20_000, help="passages (XQuAD-R en sentences, repeated)")
    ap.add_argument("--shard-size", type=int, default=None, help="default: limit / 16")
    ap.add_argument("--isolate", action="store_true", help="run inside a private network+PID namespace")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.isolate:
        argv = [sys.executable, *[a for a in sys.argv if a != "--isolate"]]
        inner = f"ip link set lo up && exec {shlex.join(argv)}"
        sys.exit(subprocess.run(["unshare", "--net", "--pid", "--fork", "--mount-proc", "--kill-child",
                                 "bash", "-c", inner]).returncode)
    os.environ.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", OMP_NUM_THREADS="1")

    import ray
    import torch

    from xdr.data.schema import Passage
    from xdr.encode import EncoderLoader, encode_passages
    from xdr.engine import EngineSettings, given, worker_pool
    from xdr.generate import make_generator, run_generation
    from xdr.models.registry import resolve_spec
    from xdr.runtime import machine_info

    pool_texts = read_sentences(args.data)
    texts = (pool_texts * (args.limit // len(pool_texts) + 1))[:args.limit]
    passages = [Passage(f"p{i}", t) for i, t in enumerate(texts)]
    shard = args.shard_size or max(1, args.limit // 16)
    tmp = Path(tempfile.mkdtemp(prefix="xdr-bench-ray-"))
    if args.task == "encode":
        spec = resolve_spec("me5-small")
        setup: Any = EncoderLoader(spec, "cpu")
        model = "me5-small"

        def job(out: Path, engine: EngineSettings) -> None:
            encode_passages(passages, setup, out, shard_size=shard, engine=engine, progress=False)
    else:
        save_small_mt5(tmp / "mt5", pool_texts)
        setup = partial(make_generator, "seq2seq", model=str(tmp / "mt5"), device="cpu", batch_size=16)
        model = "random mT5 (d_model 64, 2+2 layers, 2k vocab)"

        def job(out: Path, engine: EngineSettings) -> None:
            run_generation(passages, setup, out, langs=["de"], n=5, shard_size=shard, filters=None, engine=engine,
                           progress=False)

    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False,
             _node_ip_address="127.0.0.1")
    ray_start = time.perf_counter() - t0

    runs: dict[str, dict[str, Any]] = {}
    configs = [("local_1thread", EngineSettings(threads=1)), ("local_2threads", EngineSettings(threads=2)),
               ("ray_1worker_1thread", EngineSettings(kind="ray", workers=1, threads=1)),
               ("ray_2workers_1thread", EngineSettings(kind="ray", workers=2, threads=1))]
    reference = None
    for name, engine in configs:
        torch.set_num_threads(2)
        out = tmp / name
        t0 = time.perf_counter()
        job(out, engine)
        wall = time.perf_counter() - t0
        row: dict[str, Any] = {"seconds": round(wall, 3)}
        if engine.kind == "ray":  # the same pool again: its start-up (workers up, model loaded)
            t0 = time.perf_counter()
            with worker_pool(engine, setup if callable(setup) else partial(given, setup)):
                pass
            row["worker_startup_seconds"] = round(time.perf_counter() - t0, 3)
            row["steady_seconds"] = round(wall - row["worker_startup_seconds"], 3)
        row["passages_per_second"] = round(args.limit / row.get("steady_seconds", wall), 2)
        got = shard_bytes(out)
        reference = reference or got
        row["identical_to_local_1thread"] = got == reference
        runs[name] = row
        shutil.rmtree(out)
        print(name, row, flush=True)
    ray.shutdown()

    def ratio(a: str, b: str) -> float:
        return round(runs[a]["passages_per_second"] / runs[b]["passages_per_second"], 3)

    result = {
        "benchmark": "ray_scaling", "task": args.task, "model": model, "passages": args.limit, "shard_size": shard,
        "command": "python " + shlex.join(sys.argv), "machine": machine_info(),
        "note": "local runs in the driver; anything else running on the machine shows in "
                "machine.load_average_1m_at_start",
        "ray_start_seconds": round(ray_start, 3), "runs": runs,
        "ratios": {
            "ray_1worker_vs_local_1thread": ratio("ray_1worker_1thread", "local_1thread"),
            "ray_2workers_vs_1worker": ratio("ray_2workers_1thread", "ray_1worker_1thread"),
            "ray_2workers_vs_local_2threads": ratio("ray_2workers_1thread", "local_2threads"),
        },
        "targets": {"ray_1worker_vs_local_1thread": ">= 0.90", "ray_2workers_vs_1worker": ">= 1.70"},
    }
    out = args.out or REPO / "benchmarks" / "results" / f"ray_scaling_{args.task}_cpu.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["ratios"]), "->", out)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
