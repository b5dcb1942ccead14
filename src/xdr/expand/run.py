"""Expand queries with an LLM into a resumable artifact (see :mod:`xdr.expand.artifact`).

Per shard of queries the calls go out in at most three rounds, each one batch to the back end (so a
server with parallel slots decodes them together): translate the queries (``translate-expand``), expand
them, translate the expanded queries (``expand-translate``). A row whose step was dropped by the filters
makes no later call. Seeds are derived from (run seed, query id, order, strategy, sample) by hashing, so a
rerun or a resume asks exactly the same questions.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, field_validator

from xdr.artifacts import atomic_path, input_identity, is_done, sha256_file, shard_name, start_artifact
from xdr.data.schema import Query
from xdr.errors import MismatchError, XdrError
from xdr.expand.artifact import STAGE, SUFFIX, Expansion, finish, shard_paths, write_shard
from xdr.expand.filters import judge_expansion, judge_translation, strip_meta
from xdr.expand.prompts import (
    DEFAULT_EXEMPLARS,
    ORDERS,
    STRATEGIES,
    SYSTEMS,
    TARGET,
    TRANSLATE_SYSTEM,
    Order,
    Strategy,
    expansion_messages,
    load_expansion_exemplars,
    translation_messages,
)
from xdr.generate.base import passage_seed, row_seed
from xdr.generate.llm import ChatBackend, Prompt
from xdr.progress import row_progress


class ExpandSettings(BaseModel):
    """What an expansion run asks for; recorded in the artifact's meta, and a resume must match it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    strategies: tuple[Strategy, ...] = ("zero-shot",)
    order: Order = "expand"
    samples: int = Field(default=1, ge=1, description="expansions per query and strategy")
    seed: int = 42
    num_exemplars: int = Field(default=3, ge=1, description="few-shot exemplars per prompt")
    shard_size: int = Field(default=100, ge=1, description="queries per shard")

    @field_validator("strategies")
    @classmethod
    def _unique(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("at least one strategy")
        return tuple(dict.fromkeys(v))


def plan_calls(queries: Sequence[Query], settings: ExpandSettings) -> int:
    """The most LLM calls a run makes (filters can only save some): what an experiment budgets for."""
    per_query = len(settings.strategies) * settings.samples
    foreign = sum(q.lang != TARGET for q in queries)
    expansions = len(queries) * per_query
    if settings.order == "translate-expand":
        return foreign + expansions
    return expansions + (foreign * per_query if settings.order == "expand-translate" else 0)


def expansion_seed(seed: int, qid: str, order: str, strategy: str, sample: int) -> int:
    return row_seed(passage_seed(seed, qid, f"{order}/{strategy}"), sample)


@dataclass
class _Row:
    q: Query
    strategy: str
    sample: int
    seed: int
    prompt: str = ""
    expansion: str | None = None
    translation: str | None = None
    english: str | None = None
    raw: dict[str, str | None] = field(default_factory=lambda: {"expansion": None, "translation": None})
    stripped: bool = False
    reason: str | None = None

    def clean(self, step: str, text: str | None) -> str:
        self.raw[step] = text
        out, stripped = strip_meta(text)
        self.stripped |= stripped
        return out


class _Shard:
    """The calls of one shard of queries, counted and timed."""

    def __init__(self, backend: ChatBackend, settings: ExpandSettings, exemplars: list[Any]) -> None:
        self.backend, self.settings, self.exemplars = backend, settings, exemplars
        self.calls, self.seconds = 0, 0.0

    def _complete(self, prompts: list[Prompt]) -> list[list[str]]:
        if not prompts:
            return []
        start = time.monotonic()
        answers = self.backend.complete(prompts)
        self.seconds += time.monotonic() - start
        self.calls += sum(len(p.seeds) for p in prompts)
        return answers

    def _translate_queries(self, queries: list[Query]) -> dict[str, tuple[str | None, str | None, str | None]]:
        """``{qid: (translation, raw answer, drop reason)}``; an English query is its own translation."""
        todo = [q for q in queries if q.lang != TARGET]
        prompts = [Prompt(translation_messages(q.text), [passage_seed(self.settings.seed, q.id, "translate")])
                   for q in todo]
        out: dict[str, tuple[str | None, str | None, str | None]] = {q.id: (q.text, None, None) for q in queries}
        for q, [raw] in zip(todo, self._complete(prompts), strict=True):
            text, _ = strip_meta(raw)
            reason = judge_translation(text, q.text, q.lang)
            out[q.id] = (text if reason is None else None, raw, reason)
        return out

    def rows(self, queries: list[Query]) -> list[_Row]:
        s = self.settings
        rows = [_Row(q, st, k, expansion_seed(s.seed, q.id, s.order, st, k))
                for q in queries for st in s.strategies for k in range(s.samples)]
        translated = self._translate_queries(queries) if s.order == "translate-expand" else {}
        groups: dict[tuple[str, str], list[_Row]] = {}
        for r in rows:
            if r.q.id in translated:
                r.translation, r.raw["translation"], why = translated[r.q.id]
                if why is not None:
                    r.reason = f"translate:{why}"
            groups.setdefault((r.q.id, r.strategy), []).append(r)
        # one strategy's prompts back to back: they share the system prompt (and the exemplars), which an
        # LLM server with prompt caching then evaluates once rather than once per query
        live = sorted((g for g in groups.values() if g[0].reason is None),
                      key=lambda g: s.strategies.index(g[0].strategy))
        prompts, texts = [], []
        for g in live:
            text, lang = (g[0].translation, TARGET) if s.order == "translate-expand" else (g[0].q.text, g[0].q.lang)
            texts.append(text or "")
            messages = expansion_messages(text or "", lang, g[0].strategy, self.exemplars, s.num_exemplars)
            prompts.append(Prompt(messages, [r.seed for r in g]))
        for g, p, text, answers in zip(live, prompts, texts, self._complete(prompts), strict=True):
            instruction = "\n".join(m["content"] for m in p.messages)
            for r, raw in zip(g, answers, strict=True):
                r.prompt = p.messages[-1]["content"]
                r.expansion = r.clean("expansion", raw)
                if why := judge_expansion(r.expansion, text, instruction):
                    r.reason = f"expand:{why}"
                elif s.order == "translate-expand":
                    r.english = f"{r.translation} {r.expansion}"
        if s.order == "expand-translate":
            self._translate_expanded([r for r in rows if r.reason is None])
        return rows

    def _translate_expanded(self, rows: list[_Row]) -> None:
        for r in rows:
            if r.q.lang == TARGET:
                r.english = f"{r.q.text} {r.expansion}"
        todo = [r for r in rows if r.q.lang != TARGET]
        prompts = [Prompt(translation_messages(f"{r.q.text}\n{r.expansion}"), [row_seed(r.seed, 1)]) for r in todo]
        for r, [raw] in zip(todo, self._complete(prompts), strict=True):
            text = r.clean("translation", raw)
            if why := judge_translation(text, f"{r.q.text}\n{r.expansion}", r.q.lang):
                r.reason = f"translate:{why}"
            else:
                r.english = text


def _expansion(r: _Row, generator: str, order: str) -> Expansion:
    keep = r.reason is None
    return Expansion(
        qid=r.q.id, lang=r.q.lang, strategy=r.strategy, order=order, sample=r.sample, query=r.q.text,
        expansion=r.expansion if keep else None, translation=r.translation, english=r.english if keep else None,
        generator=generator, prompt=r.prompt, seed=r.seed, raw_expansion=r.raw["expansion"],
        raw_translation=r.raw["translation"], meta_stripped=r.stripped, keep=keep, reason=r.reason,
    )


def run_expansion(
    queries: Iterable[Query],
    backend: ChatBackend,
    out_dir: str | Path,
    settings: ExpandSettings | None = None,
    *,
    exemplars: str | Path | None = None,
    source: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Expand every query under each strategy ``samples`` times into ``out_dir``; resume it if killed.

    ``source`` (the queries file) is recorded by content hash, so a resume over an edited file is
    refused. Finished shards are skipped; a shard whose queries differ from the input's is refused.
    """
    s = settings or ExpandSettings()
    for strategy in s.strategies:
        if strategy not in STRATEGIES:
            raise XdrError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    if s.order not in ORDERS:
        raise XdrError(f"unknown order {s.order!r}; choose from {', '.join(ORDERS)}")
    qs = list(queries)
    if not qs:
        raise XdrError("no queries to expand")
    if len({q.id for q in qs}) != len(qs):
        raise XdrError("duplicate query ids: each query is expanded under its id")
    shots_path = Path(exemplars) if exemplars is not None else DEFAULT_EXEMPLARS
    shots = load_expansion_exemplars(shots_path) if "few-shot" in s.strategies else []
    out = Path(out_dir)
    params = {
        "settings": s.model_dump(mode="json"),
        "generator": backend.name,
        "generator_config": backend.config,
        "systems": {k: SYSTEMS[k] for k in s.strategies} | {"translate": TRANSLATE_SYSTEM},
        "exemplars": {"file": shots_path.name, "sha256": sha256_file(shots_path)} if shots else None,
        "queries": input_identity(source) if source is not None else {"count": len(qs)},
    }
    created = not out.exists()
    start_artifact(out, STAGE, params)
    if is_done(out):
        return out
    try:
        with row_progress(progress) as bar:
            task = bar.add_task("expand", total=len(qs), note=f"≤ {plan_calls(qs, s)} LLM calls")
            it, i = iter(qs), 0
            while chunk := list(islice(it, s.shard_size)):
                path = out / shard_name(i, SUFFIX)
                if path.exists():
                    _check_resumed(path, chunk)
                else:
                    shard = _Shard(backend, s, shots)
                    rows = [_expansion(r, backend.name, s.order) for r in shard.rows(chunk)]
                    with atomic_path(path) as tmp:
                        write_shard(tmp, rows, shard.calls, shard.seconds)
                bar.advance(task, len(chunk))
                i += 1
    except BaseException:
        if created and not shard_paths(out):
            shutil.rmtree(out, ignore_errors=True)
        raise
    finish(out)
    return out


def _check_resumed(path: Path, chunk: list[Query]) -> None:
    found = list(dict.fromkeys(pq.read_table(path, columns=["qid"]).column("qid").to_pylist()))
    if found != [q.id for q in chunk]:
        raise MismatchError(f"{path}: holds other queries than the input gives this shard now; remove the "
                            "directory or choose another --out")
