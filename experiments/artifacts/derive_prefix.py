"""Start a generate artifact with fewer samples per (passage, language) from the finished shards of a larger run.

    python experiments/artifacts/derive_prefix.py --source experiments/artifacts/xqg-real-gen \\
        --corpus runs/xquad-r/data/corpus.parquet --n 4 --shard-size 4 --out experiments/artifacts/xqg-real-gen-n4

The seed of sample k depends only on (run seed, docid, language, k) (``xdr.generate.base``), so samples
0..n-1 of an n = 8 run are the n = 4 run's, provided the server answers a seed the same way. One catch
makes it not quite a slice: ``LLMGenerator.generate`` drops answers that do not parse and the runner pads
the shortfall with empty rows at the end, so where a group has an ``unparsed`` row its stored order no
longer tells which seed failed. Those groups are asked again from the live server (``--base-url``), seeds
0..n-1; every other group's first n rows are copied. The rows go through ``run_generation`` with the same
generator name and config as ``xdr generate run --generator openai --model qwen`` and today's filters, so
the result is exactly an interrupted run of those settings: it stops at the first shard the source does
not fully cover, and ``xdr generate run ... --n 4 --shard-size 4 --out <out>`` resumes it from there.
``--extend`` goes on with the live server instead, with a per-request timeout of its own (``--timeout``;
the CLI's client waits 120 s, which a niced server on busy cores can exceed); rerunning the same command
resumes it, as the CLI would.
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

from xdr.data import count_rows, read_passages
from xdr.data.schema import Passage
from xdr.generate import run_generation
from xdr.generate.artifact import read_generated, shard_paths
from xdr.generate.llm import LLMGenerator, OpenAIChatBackend
from xdr.langs import parse_langs

log = logging.getLogger("derive_prefix")


class NotCovered(Exception):
    """A shard holds a passage the source run has not generated for: the derived part ends before it."""


class PrefixReplay:
    """The live generator's identity, answering from a larger run's stored rows where they are exact."""

    def __init__(self, live: LLMGenerator, source: Path, extend: bool = False) -> None:
        self.live, self.extend = live, extend
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
        copied: dict[str, list[str]] = {}
        for p in passages:
            rows = self.stored.get((p.id, lang), [])
            if len(rows) >= n and None not in rows:
                copied[p.id] = [q for q in rows[:n] if q is not None]
            elif not self.extend and len(rows) < n:
                raise NotCovered(p.id)
        # the rest: groups whose unparsed answer hid which seed failed (ask seeds 0..n-1 again), and with
        # extend, passages the source has not reached; one call, so their requests run concurrently
        ask = [p for p in passages if p.id not in copied]
        asked = dict(zip([p.id for p in ask], self.live.generate(ask, lang, n, seed) if ask else [], strict=True))
        self.copied += len(copied)
        self.asked += len(ask)
        return [copied[p.id] if p.id in copied else asked[p.id] for p in passages]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, required=True, help="the larger run's generate artifact")
    ap.add_argument("--corpus", type=Path, required=True, help="the corpus the source run read")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--shard-size", type=int, required=True)
    ap.add_argument("--model", default="qwen")
    ap.add_argument("--base-url", default="http://127.0.0.1:8080/v1")
    ap.add_argument("--concurrency", type=int, default=4, help="requests in flight (the server's slots)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per request (a niced server is slow)")
    ap.add_argument("--extend", action="store_true",
                    help="go on past the source's coverage with the live server, to the end of the corpus")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    params = json.loads((args.source / "meta.json").read_text())["params"]
    if args.n > params["n"]:
        sys.exit(f"--n {args.n} is more than the source's n = {params['n']}")
    # the generator `xdr generate run --generator openai --model qwen` builds; the timeout is not in its config
    live = LLMGenerator(OpenAIChatBackend(args.model, args.base_url, concurrency=args.concurrency,
                                          timeout=args.timeout))
    if live.config != params["generator_config"]:
        sys.exit("the source was generated with another generator config; a prefix of it is not this run's")
    replay = PrefixReplay(live, args.source, extend=args.extend)
    try:
        run_generation(read_passages(args.corpus), replay, args.out, langs=parse_langs(",".join(params["langs"])),
                       n=args.n, seed=params["seed"], shard_size=args.shard_size, total=count_rows(args.corpus))
    except NotCovered as e:
        log.info("stopped before passage %s, which %s does not cover", e, args.source)
    log.info("%s: %d shards; groups copied %d, asked from the server %d", args.out, len(shard_paths(args.out)),
             replay.copied, replay.asked)
    return 0


if __name__ == "__main__":
    sys.exit(main())
