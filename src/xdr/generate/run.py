"""Run a generator over a passage stream into a resumable generated-queries artifact (see ``artifact``)."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator, Sized
from pathlib import Path

from xdr.artifacts import is_done, start_artifact
from xdr.data.schema import Passage
from xdr.errors import XdrError
from xdr.generate.artifact import STAGE, QueryGroup, ShardDone, shard_params, shard_paths, write_shards
from xdr.generate.base import Generator, passage_seed
from xdr.generate.filters import FilterSettings
from xdr.generate.stats import finish
from xdr.langs import normalize_lang
from xdr.progress import row_progress

DEFAULT_FILTERS = FilterSettings()


def run_generation(
    passages: Iterable[Passage],
    generator: Generator,
    out_dir: str | Path,
    *,
    langs: Iterable[str],
    n: int = 5,
    seed: int = 42,
    shard_size: int = 2000,
    filters: FilterSettings | None = DEFAULT_FILTERS,
    total: int | None = None,
    progress: bool = True,
) -> Path:
    """Generate ``n`` questions per passage and language into ``out_dir``; resume it if it was killed.

    Each shard covers ``shard_size`` passages in all languages. Batching is the generator's business
    (it gets one shard's passages per language and call). Rerunning with the same settings skips
    finished shards; different settings are refused. ``filters=None`` keeps every parsed output.
    ``total`` is the number of passages, for the progress bar's time left (default: ``len(passages)``
    when it has one). A run that fails before its first shard removes the directory it created.
    """
    codes = list(dict.fromkeys(normalize_lang(c) for c in langs))
    if not codes:
        raise XdrError("no target languages given")
    if n < 1:
        raise XdrError(f"n must be positive, not {n}")
    out = Path(out_dir)
    params = {
        "generator": generator.name,
        "generator_config": generator.config,
        "langs": codes,
        "n": n,
        "seed": seed,
        **shard_params(shard_size, filters),
    }
    created = not out.exists()
    start_artifact(out, STAGE, params)
    if is_done(out):
        return out
    if total is None and isinstance(passages, Sized):
        total = len(passages)
    try:
        with row_progress(progress) as bar:
            task = bar.add_task("generate", total=total, unit="queries", scale=n * len(codes), note="")
            done = ShardDone(0, 0, 0)

            def groups(chunk: list[Passage]) -> Iterator[QueryGroup]:
                per_lang = {}
                for lang in codes:  # the bar moves per language: a shard can take minutes
                    per_lang[lang] = generator.generate(chunk, lang, n, seed)
                    bar.advance(task, len(chunk) / len(codes))
                for lang, outputs in per_lang.items():
                    if len(outputs) != len(chunk) or any(len(o) > n for o in outputs):
                        raise RuntimeError(f"{generator.name} broke the Generator contract for {lang}")
                for i, p in enumerate(chunk):
                    for lang in codes:
                        got: list[str | None] = list(per_lang[lang][i])
                        yield QueryGroup(p, lang, passage_seed(seed, p.id, lang), got + [None] * (n - len(got)))

            def shard_done(shard: ShardDone) -> None:
                nonlocal done
                done = done + shard
                bar.update(task, completed=done.records, note=f"kept {done.kept / max(done.rows, 1):.1%}")

            write_shards(
                out, passages, docid=lambda p: p.id, groups=groups, generator=generator.name,
                shard_size=shard_size, filters=filters, on_shard=shard_done,
            )
    except BaseException:
        if created and not shard_paths(out):  # only meta.json: nothing to resume, so nothing to leave
            shutil.rmtree(out, ignore_errors=True)
        raise
    finish(out)
    return out
