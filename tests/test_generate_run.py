"""The generate runner: shard layout and row order, meta, resume after a crash, refusals, reading back."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from xdr.artifacts import is_done
from xdr.data.schema import Passage
from xdr.errors import MismatchError, XdrError
from xdr.generate import SCHEMA, FilterSettings, Generator, passage_seed, read_generated, refilter, run_generation
from xdr.generate.artifact import shard_paths

PASSAGES = [Passage(f"doc{i}", f"Passage number {i} about topic {i % 3}.", f"Title {i}") for i in range(7)]


class FakeGenerator:
    """Deterministic questions from (seed, docid, lang, k); records calls; can crash or under-deliver."""

    name = "fake"

    def __init__(
        self, crash_after: int | None = None, short: frozenset[str] = frozenset(), script: Sequence[str] = ()
    ) -> None:
        self.crash_after, self.short, self.script = crash_after, short, script
        self.calls: list[tuple[list[str], str]] = []
        self.config: dict[str, Any] = {"kind": "fake", "version": 1}

    def generate(self, passages: Sequence[Passage], lang: str, n: int, seed: int) -> list[list[str]]:
        if self.crash_after is not None and len(self.calls) == self.crash_after:
            raise RuntimeError("crash")
        self.calls.append(([p.id for p in passages], lang))
        if self.script:
            return [list(self.script) for _ in passages]
        out = []
        for p in passages:
            m = n - 1 if p.id in self.short else n  # an unparsable answer, as an LLM gives
            out.append([f"q{k} {lang} {p.id} {passage_seed(seed, p.id, lang) % 1000}" for k in range(m)])
        return out


def _rows(out: Path) -> list[dict[str, Any]]:
    return [row for path in shard_paths(out) for row in pq.read_table(path).to_pylist()]


def run(out: Path, gen: FakeGenerator, passages: list[Passage] = PASSAGES, **kw: Any) -> Path:
    args: dict[str, Any] = {"langs": ["ja", "ru"], "n": 3, "seed": 9, "shard_size": 3, "filters": None} | kw
    return run_generation(passages, gen, out, **args)


def test_fake_generator_meets_the_protocol() -> None:
    assert isinstance(FakeGenerator(), Generator)


def test_layout_row_order_and_meta(tmp_path: Path) -> None:
    gen = FakeGenerator()
    out = run(tmp_path / "gen", gen)

    paths = shard_paths(out)
    assert [p.name for p in paths] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert pq.read_schema(paths[0]).remove_metadata() == SCHEMA
    assert [pq.read_metadata(p).num_rows for p in paths] == [18, 18, 6]  # all languages of 3, 3, 1 passages
    rows = _rows(out)
    keys = [(r["docid"], r["lang"], r["k"]) for r in rows]
    assert keys == [(p.id, lang, k) for p in PASSAGES for lang in ("ja", "ru") for k in range(3)]
    assert all(r["generator"] == "fake" and r["keep"] and r["reason"] is None for r in rows)
    assert rows[0]["seed"] == passage_seed(9, "doc0", "ja")
    assert gen.calls[:2] == [(["doc0", "doc1", "doc2"], "ja"), (["doc0", "doc1", "doc2"], "ru")]

    meta = json.loads((out / "meta.json").read_text())
    assert meta["stage"] == "generate"
    assert meta["params"] == {
        "generator": "fake", "generator_config": {"kind": "fake", "version": 1}, "langs": ["ja", "ru"],
        "n": 3, "seed": 9, "shard_size": 3, "filters": None,
    }
    assert is_done(out)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["all"]["count"] == 7 * 2 * 3 and stats["ja"]["passages"] == 7
    assert (out / "stats.md").read_text().startswith("| lang |")


def test_short_answers_become_unparsed_rows(tmp_path: Path) -> None:
    out = run(tmp_path / "gen", FakeGenerator(short=frozenset({"doc4"})))
    rows = [r for r in _rows(out) if r["docid"] == "doc4"]
    assert len(rows) == 6  # still n rows per language: the shortfall is counted, not lost
    missing = [r for r in rows if r["k"] == 2]
    assert all(r["query"] is None and not r["keep"] and r["reason"] == "unparsed" for r in missing)
    assert sum(1 for _ in read_generated(out)) == 7 * 2 * 3 - 2


def test_resume_after_crash_equals_uninterrupted_run(tmp_path: Path) -> None:
    full = run(tmp_path / "full", FakeGenerator())
    crashed = FakeGenerator(crash_after=3)  # shard 0 done (2 calls), shard 1 dies after its first language
    with pytest.raises(RuntimeError, match="crash"):
        run(tmp_path / "resumed", crashed)
    assert len(shard_paths(tmp_path / "resumed")) == 1 and not is_done(tmp_path / "resumed")
    with pytest.raises(XdrError, match="did not finish"):
        next(read_generated(tmp_path / "resumed"))
    # an experiment may read what a stopped run finished: the first shard's 3 passages x 2 langs x 3
    partial = [(q.docid, q.lang, q.k) for q in read_generated(tmp_path / "resumed", partial=True)]
    assert partial == [(q.docid, q.lang, q.k) for q in read_generated(full)][:18]
    assert {d for d, _, _ in partial} == {"doc0", "doc1", "doc2"}
    # and pin the first shards of a run that has more
    assert [(q.docid, q.lang, q.k) for q in read_generated(full, shards=1)] == partial
    with pytest.raises(XdrError, match="first 9 shards"):
        next(read_generated(tmp_path / "resumed", partial=True, shards=9))

    again = FakeGenerator()
    run(tmp_path / "resumed", again)
    assert [ids[0] for ids, _ in again.calls] == ["doc3", "doc3", "doc6", "doc6"]  # shard 0 not redone
    assert _rows(tmp_path / "resumed") == _rows(full)

    done = FakeGenerator()
    run(tmp_path / "resumed", done)
    assert done.calls == []


def test_resume_refuses_other_settings_or_input(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        run(tmp_path / "gen", FakeGenerator(crash_after=2))
    with pytest.raises(MismatchError, match="seed"):
        run(tmp_path / "gen", FakeGenerator(), seed=10)
    with pytest.raises(MismatchError, match="input changed"):
        run(tmp_path / "gen", FakeGenerator(), passages=PASSAGES[1:])


def test_languages_are_normalised_and_checked(tmp_path: Path) -> None:
    out = run(tmp_path / "gen", FakeGenerator(), langs=[" AR", "ar", "te"], passages=PASSAGES[:1])
    assert [r["lang"] for r in _rows(out)] == ["ar"] * 3 + ["te"] * 3
    with pytest.raises(XdrError, match="unknown language"):
        run(tmp_path / "bad", FakeGenerator(), langs=["jp"])
    with pytest.raises(XdrError, match="n must be positive"):
        run(tmp_path / "bad", FakeGenerator(), n=0)


def test_generator_breaking_the_contract_is_a_bug(tmp_path: Path) -> None:
    class TooMany(FakeGenerator):
        def generate(self, passages: Sequence[Passage], lang: str, n: int, seed: int) -> list[list[str]]:
            return [["a"] * (n + 1) for _ in passages]

    with pytest.raises(RuntimeError, match="contract"):
        run(tmp_path / "gen", TooMany())


def test_read_generated_streams_kept_or_all_rows(tmp_path: Path) -> None:
    gen = FakeGenerator(script=["Same?", "same", "Другое?"])
    out = run(tmp_path / "gen", gen, langs=["ru"], passages=PASSAGES[:2], filters=None)
    assert len(list(read_generated(out))) == 6
    out = run(tmp_path / "filtered", gen, langs=["ru"], passages=PASSAGES[:2], filters=FilterSettings())
    kept = list(read_generated(out))
    every = list(read_generated(out, kept_only=False))
    assert [(q.docid, q.k) for q in kept] == [("doc0", 0), ("doc0", 2), ("doc1", 0), ("doc1", 2)]
    assert [q.reason for q in every] == [None, "duplicate", None] * 2


def test_refilter_applies_one_rule_set_to_rows_written_under_another(tmp_path: Path) -> None:
    gen = FakeGenerator(script=["Same?", "same", "Другое?"])
    unfiltered = run(tmp_path / "gen", gen, langs=["ru"], passages=PASSAGES[:2], filters=None)
    filtered = run(tmp_path / "filtered", gen, langs=["ru"], passages=PASSAGES[:2], filters=FilterSettings())
    passages = {p.id: p for p in PASSAGES}
    redone = list(refilter(read_generated(unfiltered, kept_only=False), passages))
    assert [(q.docid, q.k, q.keep, q.reason) for q in redone] == [
        (q.docid, q.k, q.keep, q.reason) for q in read_generated(filtered, kept_only=False)
    ]
    assert [q.keep for q in refilter(read_generated(filtered, kept_only=False), passages, None)].count(False) == 2
    with pytest.raises(XdrError, match="doc1"):
        list(refilter(read_generated(unfiltered, kept_only=False), {"doc0": PASSAGES[0]}))
