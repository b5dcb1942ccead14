"""Start a generate artifact with fewer samples per (passage, language) from the finished shards of a larger run.

    python experiments/artifacts/derive_prefix.py --source experiments/artifacts/xqg-real-gen \\
        --corpus runs/xquad-r/data/corpus.parquet --n 4 --shard-size 8 --out experiments/artifacts/xqg-real-gen-n4

The seed of sample k depends only on (run seed, docid, language, k) (``xdr.generate.base``), so samples
0..n-1 of an n = 8 run are the n = 4 run's, provided the server answers a seed the same way. One catch
makes it not quite a slice: ``LLMGenerator.generate`` drops answers that do not parse and the runner pads
the shortfall with empty rows at the end, so where a group has an ``unparsed`` row its stored order no
longer tells which seed failed. Those groups are asked again from the live server (``--base-url``), seeds
0..n-1; every other group's first n rows are copied. The rows go through ``run_generation`` with the same
generator name and config as ``xdr generate run --generator openai --model qwen`` and today's filters, so
the result is exactly an interrupted run of those settings: it stops at the first shard the source does
not fully cover, and ``xdr generate run ... --n 4 --shard-size 8 --out <out>`` resumes it from there.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xdr.data import read_passages
from xdr.data.schema import Passage
from xdr.generate import make_generator, run_generation
from xdr.generate.artifact import read_generated, shard_paths
from xdr.generate.llm import LLMGenerator
from xdr.langs import parse_langs

log = logging.getLogger("derive_prefix")


class NotCovered(Exception):
    """A shard holds a passage the source run has not generated for: the derived part ends before it."""


class PrefixReplay:
    """The live generator's identity, answering from a larger run's stored rows where they are exact."""

    def __init__(self, live: LLMGenerator, source: Path) -> None:
        self.live = live
        self.stored: dict[tuple[str, str], list[str | None]] = defaultdict(list)
        for row in read_generated(source, kept_only=False, partial=True):
            self.stored[(row.docid, row.lang)].append(row.query)
        self.copied = self.asked = 0

    @property
    def name(self) -> str:
        return self.live.name

    @property
    def config(self) -> dict[str, Any]:
        return self.live.config

    def generate(self, passages: Sequence[Passage], lang: str, n: int, seed: int) -> list[list[str]]:
        missing = [p.id for p in passages if (p.id, lang) not in self.stored]
        if missing:
            raise NotCovered(missing[0])
        out: list[list[str]] = []
        for p in passages:
            rows = self.stored[(p.id, lang)]
            if len(rows) < n:
                raise NotCovered(p.id)
            if None in rows:  # an unparsed answer: which seed failed is lost, so ask for seeds 0..n-1 again
                out.append(self.live.generate([p], lang, n, seed)[0])
                self.asked += 1
            else:
                out.append([q for q in rows[:n] if q is not None])
                self.copied += 1
        return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, required=True, help="the larger run's generate artifact")
    ap.add_argument("--corpus", type=Path, required=True, help="the corpus the source run read")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--shard-size", type=int, required=True)
    ap.add_argument("--model", default="qwen")
    ap.add_argument("--base-url", default="http://127.0.0.1:8080/v1")
    ap.add_argument("--concurrency", type=int, default=4)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    params = json.loads((args.source / "meta.json").read_text())["params"]
    if args.n > params["n"]:
        sys.exit(f"--n {args.n} is more than the source's n = {params['n']}")
    live = make_generator("openai", model=args.model, base_url=args.base_url, concurrency=args.concurrency)
    if live.config != params["generator_config"]:
        sys.exit("the source was generated with another generator config; a prefix of it is not this run's")
    replay = PrefixReplay(live, args.source)
    try:
        run_generation(read_passages(args.corpus), replay, args.out, langs=parse_langs(",".join(params["langs"])),
                       n=args.n, seed=params["seed"], shard_size=args.shard_size, progress=False)
    except NotCovered as e:
        log.info("stopped before passage %s, which %s does not cover", e, args.source)
    log.info("%s: %d shards; groups copied %d, asked again %d", args.out, len(shard_paths(args.out)),
             replay.copied, replay.asked)
    return 0


if __name__ == "__main__":
    sys.exit(main())
