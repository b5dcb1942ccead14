"""Query generation for passage augmentation (xQG): n questions per passage in each target language.

Generators (the xQG mT5 checkpoint, or an LLM prompted summarize-then-ask as in SWIM-IR) write into a
resumable artifact of Parquet shards that records, per query, whether the filters kept it and why not.

The generator classes load on first use: they import torch and transformers, which reading an artifact,
ingesting released queries or computing statistics do not need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xdr.generate.artifact import SCHEMA, GeneratedQuery, read_generated, refilter
from xdr.generate.base import Generator, passage_seed, row_seed
from xdr.generate.filters import FilterSettings, filter_outputs
from xdr.generate.ingest import RELEASED, ingest_xqg, read_released
from xdr.generate.prompts import Exemplar, load_exemplars, parse_answer
from xdr.generate.registry import generator_kinds, make_generator, register_generator
from xdr.generate.run import run_generation
from xdr.generate.stats import generation_stats, stats_markdown, stats_table
from xdr.lazy import lazy_exports

if TYPE_CHECKING:
    from xdr.generate.hf import Sampling
    from xdr.generate.llm import ChatBackend, HFChatBackend, LLMGenerator, OpenAIChatBackend, Prompt
    from xdr.generate.seq2seq import XQG_CHECKPOINT, Seq2SeqGenerator, seq2seq_prompt

_LAZY = {
    "Sampling": "xdr.generate.hf",
    "XQG_CHECKPOINT": "xdr.generate.seq2seq",
    "Seq2SeqGenerator": "xdr.generate.seq2seq",
    "seq2seq_prompt": "xdr.generate.seq2seq",
    "ChatBackend": "xdr.generate.llm",
    "HFChatBackend": "xdr.generate.llm",
    "LLMGenerator": "xdr.generate.llm",
    "OpenAIChatBackend": "xdr.generate.llm",
    "Prompt": "xdr.generate.llm",
}


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "RELEASED",
    "SCHEMA",
    "XQG_CHECKPOINT",
    "ChatBackend",
    "Exemplar",
    "FilterSettings",
    "GeneratedQuery",
    "Generator",
    "HFChatBackend",
    "LLMGenerator",
    "OpenAIChatBackend",
    "Prompt",
    "Sampling",
    "Seq2SeqGenerator",
    "filter_outputs",
    "generation_stats",
    "generator_kinds",
    "ingest_xqg",
    "load_exemplars",
    "make_generator",
    "parse_answer",
    "passage_seed",
    "read_generated",
    "read_released",
    "refilter",
    "register_generator",
    "row_seed",
    "run_generation",
    "seq2seq_prompt",
    "stats_markdown",
    "stats_table",
]
