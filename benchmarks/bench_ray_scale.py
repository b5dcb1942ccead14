"""Scale simulation of the Ray engine: the driver's peak memory stays flat and the time grows linearly with
the corpus.

For each size, a synthetic corpus (random words, JSONL in a temp dir, never committed) is encoded by
`xdr encode`'s library call with a tiny random BERT on a local Ray (2 workers x 1 thread). Each size runs
in a fresh driver process that reports its own peak RSS (``ru_maxrss``), so the figure is the driver's
alone: the workers hold the model and each shard's texts and vectors. Target: under 1 GB at the largest
size. Writes ``ray_scale_cpu.json`` and a plot of both against corpus size (``ray_scale_cpu.png``).

Ray must stay on loopback: ``--isolate`` re-runs this script inside ``unshare --net --pid`` with only
``lo`` up; the cluster is started there with ``ray start --head`` and torn down with the namespace.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
WORDS = [f"w{i:03d}" for i in range(400)]


def write_corpus(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"d{i}", "title": "", "text": " ".join(rng.choices(WORDS, k=12))}) + "\n")


def save_tiny_bert(out: Path) -> None:
    """A 1-layer BERT of width 32 with a word-level WordPiece vocabulary: cheap, so the driver is what's timed."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.train_from_iterator([" ".join(WORDS)] * 3, trainers.WordPieceTrainer(vocab_size=600, special_tokens=specials))
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2),
                                                                                                ("[SEP]", 3)])
    BertTokenizerFast(tokenizer_object=tok, model_max_length=32, unk_token="[UNK]", pad_token="[PAD]",
                      cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]").save_pretrained(out)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(out)


def drive(corpus: Path, model: Path, out: Path, shard_size: int) -> None:
    """One driver run (its own process): encode on the running Ray, print seconds and peak RSS as JSON."""
    from xdr.config import ModelSpec
    from xdr.data import read_passages
    from xdr.encode import EncoderLoader, encode_passages
    from xdr.engine import EngineSettings

    spec = ModelSpec(name="tiny-random-bert", path=str(model), passage_max_length=32, passage_prefix="")
    t0 = time.perf_counter()
    encode_passages(read_passages(corpus), EncoderLoader(spec, "cpu"), out, shard_size=shard_size,
                    engine=EngineSettings(kind="ray", workers=2, threads=1), progress=False, source=corpus)
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": round(seconds, 2), "driver_peak_rss_mb": round(peak_mb, 1)}))


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["passages"] / 1e6 for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.plot(sizes, [r["seconds"] for r in rows], "o-")
    a.set(xlabel="corpus (M passages)", ylabel="wall seconds", title="time", xlim=(0, None), ylim=(0, None))
    b.plot(sizes, [r["driver_peak_rss_mb"] for r in rows], "o-")
    b.axhline(1024, color="grey", ls="--", lw=1)
    b.set(xlabel="corpus (M passages)", ylabel="MB", title="driver peak RSS (target < 1 GB)", xlim=(0, None),
          ylim=(0, 1100))
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="500000,1000000,2000000")
    ap.add_argument("--shard-size", type=int, default=50_000)
    ap.add_argument("--isolate", action="store_true", help="run inside a private network+PID namespace")
    ap.add_argument("--drive", nargs=3, type=Path, help=argparse.SUPPRESS)  # corpus model out: one driver run
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "ray_scale_cpu.json")
    args = ap.parse_args()
    if args.drive:
        drive(*args.drive, args.shard_size)
        return
    if args.isolate:
        argv = [sys.executable, *[a for a in sys.argv if a != "--isolate"]]
        inner = f"ip link set lo up && exec {shlex.join(argv)}"
        sys.exit(subprocess.run(["unshare", "--net", "--pid", "--fork", "--mount-proc", "--kill-child",
                                 "bash", "-c", inner]).returncode)
    from xdr.runtime import machine_info

    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ADDRESS": "127.0.0.1:6399", "RAY_AUTH_MODE": "disabled"}
    ray = str(Path(sys.executable).parent / "ray")
    subprocess.run([ray, "start", "--head", "--port", "6399", "--node-ip-address", "127.0.0.1", "--num-cpus", "2",
                    "--num-gpus", "0", "--include-dashboard", "false", "--disable-usage-stats"], env=env, check=True,
                   capture_output=True)
    tmp = Path(tempfile.mkdtemp(prefix="xdr-bench-scale-"))
    save_tiny_bert(tmp / "model")
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        corpus = tmp / f"corpus-{n}.jsonl"
        write_corpus(corpus, n)
        got = subprocess.run([sys.executable, __file__, "--shard-size", str(args.shard_size), "--drive",
                              str(corpus), str(tmp / "model"), str(tmp / f"emb-{n}")], env=env,
                             capture_output=True, text=True)
        if got.returncode:
            sys.exit(f"the driver for {n} passages failed:\n{got.stderr[-3000:]}")
        row = {"passages": n, **json.loads(got.stdout.strip().splitlines()[-1])}
        row["passages_per_second"] = round(n / row["seconds"], 1)
        rows.append(row)
        print(row, flush=True)
        subprocess.run(["rm", "-rf", str(corpus), str(tmp / f"emb-{n}")], check=True)
    subprocess.run([ray, "stop", "--force"], env=env, capture_output=True)
    result = {
        "benchmark": "ray_scale", "model": "random BERT (1 layer, width 32), 32 tokens",
        "engine": "ray, 2 workers x 1 thread",
        "shard_size": args.shard_size, "command": "python " + shlex.join(sys.argv), "machine": machine_info(),
        "note": "the driver and both workers share this machine's cores; anything else running shows in "
                "machine.load_average_1m_at_start",
        "rows": rows, "target": "driver peak RSS < 1024 MB at the largest size; time linear in size",
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    plot(rows, args.out.with_suffix(".png"))
    print("->", args.out)
    subprocess.run(["rm", "-rf", str(tmp)], check=True)


if __name__ == "__main__":
    main()
