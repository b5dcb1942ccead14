"""The expansions artifact: Parquet shards of one row per (query, strategy, sample), with statistics.

Columns: ``qid, lang, strategy, order, sample, query, expansion, translation, english, generator, prompt,
seed, raw_expansion, raw_translation, meta_stripped, keep, reason``.

- ``expansion``: the cleaned expansion, in the query's language (orders ``expand``, ``expand-translate``)
  or in English (``translate-expand``, which expands the translated query).
- ``translation``: the English translation of the query alone (``translate-expand``), else null.
- ``english``: the English query plus expansion, what BM25 over an English corpus searches with
  (``translate-expand``: translation + expansion; ``expand-translate``: the translation of the query
  and its expansion together), else null.
- ``reason``: ``step:rule`` of the first step that failed (``expand:copy``, ``translate:wrong_language``;
  rules in :mod:`xdr.expand.filters`), null when kept. Dropped rows stay so that statistics can be
  recomputed; readers take kept rows.

Each shard's Parquet metadata holds the LLM calls it made and their wall-clock seconds, so the cost
of a run is known per query. Shards hold every strategy and sample of their queries, in query order.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from xdr.artifacts import Stage, mark_done, open_artifact, write_json_atomic, write_text_atomic

STAGE = Stage.EXPAND
SUFFIX = ".parquet"
COST_KEY = b"xdr.expand.cost"  # shard metadata: {"calls": int, "seconds": float}
SCHEMA = pa.schema(
    [
        pa.field("qid", pa.string(), nullable=False),
        pa.field("lang", pa.string(), nullable=False),
        pa.field("strategy", pa.string(), nullable=False),
        pa.field("order", pa.string(), nullable=False),
        pa.field("sample", pa.int32(), nullable=False),
        pa.field("query", pa.string(), nullable=False),
        pa.field("expansion", pa.string()),
        pa.field("translation", pa.string()),
        pa.field("english", pa.string()),
        pa.field("generator", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("raw_expansion", pa.string()),
        pa.field("raw_translation", pa.string()),
        pa.field("meta_stripped", pa.bool_(), nullable=False),
        pa.field("keep", pa.bool_(), nullable=False),
        pa.field("reason", pa.string()),
    ]
)


@dataclass(frozen=True, slots=True)
class Expansion:
    """One row of the artifact (see the module docstring for the columns)."""

    qid: str
    lang: str
    strategy: str
    order: str
    sample: int
    query: str
    expansion: str | None
    translation: str | None
    english: str | None
    generator: str
    prompt: str
    seed: int
    raw_expansion: str | None
    raw_translation: str | None
    meta_stripped: bool
    keep: bool
    reason: str | None


def shard_paths(out_dir: str | Path) -> list[Path]:
    """Completed shards in order (temp files start with a dot and are skipped)."""
    return sorted(Path(out_dir).glob(f"part-*{SUFFIX}"))


def write_shard(path: Path, rows: list[Expansion], calls: int, seconds: float) -> pa.Table:
    """One shard's rows with its LLM cost in the file's metadata (the caller writes it atomically)."""
    cols = {name: [getattr(r, name) for r in rows] for name in SCHEMA.names}
    table = pa.table(cols, schema=SCHEMA)
    table = table.replace_schema_metadata({COST_KEY: json.dumps({"calls": calls, "seconds": seconds})})
    pq.write_table(table, path, compression="zstd")
    return table


def read_expansions(
    out_dir: str | Path, *, strategy: str | None = None, kept_only: bool = True, partial: bool = False
) -> Iterator[Expansion]:
    """The rows of a finished artifact (``partial``: the finished shards of one still running), in order."""
    if not partial:
        open_artifact(out_dir, STAGE, what="an expansions artifact (`xdr expand`)")
    for path in shard_paths(out_dir):
        for row in pq.read_table(path).to_pylist():
            if (row["keep"] or not kept_only) and (strategy is None or row["strategy"] == strategy):
                yield Expansion(**row)


def shard_cost(path: Path) -> dict[str, float]:
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta.get(COST_KEY, b'{"calls": 0, "seconds": 0.0}'))


def expansion_stats(out_dir: str | Path) -> dict[str, Any]:
    """``{"rows": {strategy: {lang: counts}}, "cost": {...}}``: per strategy and language the rows, kept,
    meta-stripped and each drop reason; and the LLM calls, seconds and seconds per query of the run."""
    counts: dict[str, dict[str, defaultdict[str, int]]] = {}
    calls, seconds, queries = 0, 0.0, 0
    for path in shard_paths(out_dir):
        t = pq.read_table(path, columns=["qid", "lang", "strategy", "meta_stripped", "keep", "reason"])
        queries += len(set(t.column("qid").to_pylist()))
        for row in t.to_pylist():
            c = counts.setdefault(row["strategy"], {}).setdefault(row["lang"], defaultdict(int))
            c["rows"] += 1
            c["kept"] += row["keep"]
            c["meta_stripped"] += row["meta_stripped"]
            if row["reason"]:
                c[row["reason"]] += 1
        cost = shard_cost(path)
        calls, seconds = calls + int(cost["calls"]), seconds + float(cost["seconds"])
    rows = {s: {lang: dict(c) for lang, c in by_lang.items()} for s, by_lang in counts.items()}
    per_query = {"calls": calls / queries if queries else 0.0, "seconds": seconds / queries if queries else 0.0}
    return {"rows": rows, "cost": {"queries": queries, "calls": calls, "seconds": seconds, "per_query": per_query}}


def stats_markdown(stats: dict[str, Any]) -> str:
    """The statistics as Markdown: one row per strategy and language, then the cost."""
    reasons = sorted({r for by_lang in stats["rows"].values() for c in by_lang.values() for r in c if ":" in r})
    head = ["strategy", "lang", "rows", "kept", "meta stripped", *reasons]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for strategy, by_lang in stats["rows"].items():
        for lang, c in by_lang.items():
            cells = [strategy, lang, *(str(c.get(key, 0)) for key in ("rows", "kept", "meta_stripped", *reasons))]
            lines.append("| " + " | ".join(cells) + " |")
    cost = stats["cost"]
    lines.append(f"\nLLM calls: {cost['calls']} for {cost['queries']} queries ({cost['per_query']['calls']:.2f} per "
                 f"query), {cost['seconds']:.1f} s ({cost['per_query']['seconds']:.2f} s per query)")
    return "\n".join(lines) + "\n"


def finish(out_dir: Path) -> dict[str, Any]:
    """Write ``stats.json`` and ``stats.md`` beside the shards, then ``_DONE``."""
    stats = expansion_stats(out_dir)
    write_json_atomic(out_dir / "stats.json", stats)
    write_text_atomic(out_dir / "stats.md", stats_markdown(stats))
    mark_done(out_dir)
    return stats
