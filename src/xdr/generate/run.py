"""Run a generator over a passage stream into a resumable generated-queries artifact (see ``artifact``).

Shards run through :mod:`xdr.engine`: in this process, or on Ray workers that each build the generator
once. Queries are seeded per (docid, language, k), so a shard's rows do not depend on where it ran.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import dataclass
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

from xdr.artifacts import is_done, shard_name, start_artifact
from xdr.data.schema import Passage
from xdr.engine import Advance, EngineSettings, ShardTask, given, shard_count, worker_pool
from xdr.errors import XdrError
from xdr.generate.artifact import (
    STAGE,
    SUFFIX,
    QueryGroup,
    ShardDone,
    finished_shard,
    shard_params,
    shard_paths,
    write_shard,
)
from xdr.generate.base import Generator, passage_seed
from xdr.generate.filters import FilterSettings
from xdr.generate.stats import finish
from xdr.langs import normalize_lang

DEFAULT_FILTERS = FilterSettings()


@dataclass(frozen=True, slots=True)
class _ShardJob:
    """What every shard of one run shares; sent to the workers with each shard's passages."""

    out: Path
    langs: list[str]
    n: int
    seed: int
    filters: FilterSettings | None


def _generate_shard(job: _ShardJob, generator: Generator, shard: tuple[int, list[Passage]],
                    advance: Advance) -> ShardDone:
    """All languages of one shard's passages, written as one Parquet shard; runs where the generator is."""
    i, chunk = shard
    per_lang = {}
    for lang in job.langs:  # the bar moves per language: a shard can take minutes
        per_lang[lang] = generator.generate(chunk, lang, job.n, job.seed)
        advance(len(chunk) / len(job.langs))
    for lang, outputs in per_lang.items():
        if len(outputs) != len(chunk) or any(len(o) > job.n for o in outputs):
            raise RuntimeError(f"{generator.name} broke the Generator contract for {lang}")

    def groups() -> Iterator[QueryGroup]:
        for k, p in enumerate(chunk):
            for lang in job.langs:
                got: list[str | None] = list(per_lang[lang][k])
                yield QueryGroup(p, lang, passage_seed(job.seed, p.id, lang), got + [None] * (job.n - len(got)))

    return write_shard(job.out / shard_name(i, SUFFIX), len(chunk), groups(), generator.name, job.filters)


def _describe(generator: Generator) -> tuple[str, dict[str, Any]]:
    return generator.name, generator.config


def run_generation(
    passages: Iterable[Passage],
    generator: Generator | Callable[[], Generator],
    out_dir: str | Path,
    *,
    langs: Iterable[str],
    n: int = 5,
    seed: int = 42,
    shard_size: int = 2000,
    filters: FilterSettings | None = DEFAULT_FILTERS,
    total: int | None = None,
    progress: bool = True,
    engine: EngineSettings | None = None,
) -> Path:
    """Generate ``n`` questions per passage and language into ``out_dir``; resume it if it was killed.

    ``generator`` is a generator or a picklable function that builds one (``partial(make_generator,
    kind, **options)``), which each worker of ``engine`` (default: this process) calls once; a built
    generator is pickled to each Ray worker. Each shard covers ``shard_size`` passages in all languages.
    Batching is the generator's business (it gets one shard's passages per language and call).
    Rerunning with the same settings skips finished shards; different settings are refused.
    ``filters=None`` keeps every parsed output. ``total`` is the number of passages, for the progress
    bar's time left (default: ``len(passages)`` when it has one). A run that fails before its first shard
    removes the directory it created.
    """
    codes = list(dict.fromkeys(normalize_lang(c) for c in langs))
    if not codes:
        raise XdrError("no target languages given")
    if n < 1:
        raise XdrError(f"n must be positive, not {n}")
    out = Path(out_dir)
    setup = partial(given, generator) if isinstance(generator, Generator) else generator
    with worker_pool(engine, setup) as pool:
        name, config = pool.ask(_describe)
        params = {"generator": name, "generator_config": config, "langs": codes, "n": n, "seed": seed,
                  **shard_params(shard_size, filters)}
        created = not out.exists()
        start_artifact(out, STAGE, params)
        if is_done(out):
            return out
        if total is None and isinstance(passages, Sized):
            total = len(passages)
        done = ShardDone(0, 0, 0)

        def tasks() -> Iterator[ShardTask[tuple[int, list[Passage]]]]:
            nonlocal done
            it = iter(passages)
            for i, chunk in enumerate(iter(lambda: list(islice(it, shard_size)), [])):
                kept = finished_shard(out / shard_name(i, SUFFIX), [p.id for p in chunk])
                if kept is not None:
                    done = done + kept
                yield ShardTask(i, len(chunk), None if kept is not None else (i, chunk))

        def shard_done(_: ShardTask[Any], shard: ShardDone) -> str:
            nonlocal done
            done = done + shard
            return f"kept {done.kept / max(done.rows, 1):.1%}"

        try:
            pool.run(tasks(), partial(_generate_shard, _ShardJob(out, codes, n, seed, filters)), label="generate",
                     on_done=shard_done, total_rows=total, total_shards=shard_count(total, shard_size),
                     unit="queries", scale=n * len(codes), progress=progress, out_dir=out)
        except BaseException:
            if created and not shard_paths(out):  # only meta.json: nothing to resume, so nothing to leave
                shutil.rmtree(out, ignore_errors=True)
            raise
    finish(out)
    return out
