"""Per-language statistics of a generated-queries artifact, recomputed from the shards' reason column."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
from rich import box
from rich.table import Table

from xdr.artifacts import mark_done, write_json_atomic, write_text_atomic
from xdr.generate.artifact import shard_paths
from xdr.generate.filters import REASONS

ALL = "all"


def generation_stats(out_dir: str | Path) -> dict[str, dict[str, Any]]:
    """``{lang: {passages, count, kept, kept_rate, <reason>_rate..., mean_length}}`` plus an ``all`` row.

    Rates are fractions of ``count`` (rows = passages x n); ``mean_length`` is the mean number of
    characters of kept queries. Reads the shards present, so it also works on an unfinished run.
    """
    counts: dict[str, defaultdict[str, int]] = {}
    for path in shard_paths(out_dir):
        t = pq.read_table(path, columns=["lang", "k", "query", "reason"])
        t = t.append_column("chars", pc.utf8_length(t["query"]))
        for row in t.group_by(["lang", "reason"]).aggregate([("k", "count"), ("chars", "sum")]).to_pylist():
            c = counts.setdefault(row["lang"], defaultdict(int))
            c["count"] += row["k_count"]
            c[row["reason"] or "kept"] += row["k_count"]
            if row["reason"] is None:
                c["kept_chars"] += row["chars_sum"] or 0
        first = t.filter(pc.equal(t["k"], 0))
        for row in first.group_by("lang").aggregate([("k", "count")]).to_pylist():
            counts[row["lang"]]["passages"] += row["k_count"]
    total: defaultdict[str, int] = defaultdict(int)
    for c in counts.values():
        for key, value in c.items():
            total[key] += value
    return {lang: _summary(c) for lang, c in [*counts.items(), (ALL, total)]}


def _summary(c: dict[str, int]) -> dict[str, Any]:
    count, kept = c["count"], c["kept"]
    out: dict[str, Any] = {"passages": c["passages"], "count": count, "kept": kept}
    out["kept_rate"] = kept / count if count else 0.0
    for reason in REASONS:
        out[f"{reason}_rate"] = c[reason] / count if count else 0.0
    out["mean_length"] = c["kept_chars"] / kept if kept else 0.0
    return out


def stats_markdown(stats: dict[str, dict[str, Any]]) -> str:
    """The statistics as a Markdown table, one row per language and a final ``all`` row."""
    rates = [f"{r.replace('_', ' ')} %" for r in ("kept", *REASONS)]
    head = ["lang", "passages", "count", "kept", *rates, "mean chars"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for lang, s in stats.items():
        pct = [f"{100 * s[f'{r}_rate']:.1f}" for r in ("kept", *REASONS)]
        cells = [lang, str(s["passages"]), str(s["count"]), str(s["kept"]), *pct, f"{s['mean_length']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def stats_table(stats: dict[str, dict[str, Any]]) -> Table:
    """The statistics for a terminal: the drop reasons share one wrapping cell, so the table fits a narrow
    window without cutting a number (``stats.md`` keeps one column per reason)."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    for name in ("lang", "passages", "queries", "kept", "kept\n%"):
        table.add_column(name, justify="left" if name == "lang" else "right", no_wrap=True)
    table.add_column("dropped, % of queries", ratio=1, overflow="fold")
    table.add_column("mean\nchars", justify="right", no_wrap=True)
    for lang, s in stats.items():
        dropped = sorted(((s[f"{r}_rate"], r) for r in REASONS if s[f"{r}_rate"]), reverse=True)
        why = ", ".join(f"{r.replace('_', ' ')} {100 * rate:.1f}" for rate, r in dropped) or "-"
        if lang == ALL:
            table.add_section()
        table.add_row(lang, f"{s['passages']:,}", f"{s['count']:,}", f"{s['kept']:,}",
                      f"{100 * s['kept_rate']:.1f}", why, f"{s['mean_length']:.1f}")
    return table


def finish(out_dir: Path) -> None:
    """Write ``stats.json`` and ``stats.md`` beside the shards, then ``_DONE``."""
    stats = generation_stats(out_dir)
    write_json_atomic(out_dir / "stats.json", stats)
    write_text_atomic(out_dir / "stats.md", stats_markdown(stats))
    mark_done(out_dir)
