"""Query expansion with LLMs: each query expanded (and translated) under several prompting strategies.

The query-side counterpart of :mod:`xdr.generate`: the same chat back ends write expansions into a
resumable artifact that search reads (``xdr search --expansions``) to concatenate with or fuse into the
query, or to search an English BM25 index with the translation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xdr.expand.artifact import Expansion, expansion_stats, read_expansions, stats_markdown
from xdr.expand.filters import REASONS, judge_expansion, judge_translation, strip_meta
from xdr.expand.prompts import (
    ORDERS,
    STRATEGIES,
    ExpansionExemplar,
    expansion_messages,
    load_expansion_exemplars,
    translation_messages,
)
from xdr.lazy import lazy_exports

if TYPE_CHECKING:
    from xdr.expand.run import ExpandSettings, expansion_seed, plan_calls, run_expansion

_LAZY = {name: "xdr.expand.run" for name in ("ExpandSettings", "expansion_seed", "plan_calls", "run_expansion")}
__getattr__ = lazy_exports(__name__, _LAZY)

__all__ = [
    "ORDERS",
    "REASONS",
    "STRATEGIES",
    "ExpandSettings",
    "Expansion",
    "ExpansionExemplar",
    "expansion_messages",
    "expansion_seed",
    "expansion_stats",
    "judge_expansion",
    "judge_translation",
    "load_expansion_exemplars",
    "plan_calls",
    "read_expansions",
    "run_expansion",
    "stats_markdown",
    "strip_meta",
    "translation_messages",
]
