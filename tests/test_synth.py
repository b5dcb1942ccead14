"""Synthetic SWIM-IR pairs: stratified sampling, one query per passage and language, resume, output."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from test_generate_run import FakeGenerator

from xdr.data import read_training
from xdr.data.schema import Passage
from xdr.errors import XdrError
from xdr.generate import FilterSettings
from xdr.train.synth import allocate, length_stratum, stratified_sample, synthesize_pairs


def _passage(i: int, words: int) -> Passage:
    return Passage(f"d{i}", " ".join(f"w{i}x{j}" for j in range(words)), f"Article {i % 4}")


# 60 short, 30 medium and 10 long passages, interleaved so that corpus order is not stratum order
CORPUS = [_passage(i, 10 if i % 10 < 6 else 60 if i % 10 < 9 else 200) for i in range(100)]


def synth(tmp_path: Path, gen: FakeGenerator | None = None, name: str = "pairs", **kw: Any) -> Path:
    args: dict[str, Any] = {"langs": ["ja", "te"], "sample_size": 20, "seed": 3, "shard_size": 4,
                            "filters": None} | kw
    return synthesize_pairs(CORPUS, gen or FakeGenerator(), tmp_path / f"{name}.jsonl", **args)


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_allocation_is_proportional_with_largest_remainders() -> None:
    assert allocate({"a": 60, "b": 30, "c": 10}, 20) == {"a": 12, "b": 6, "c": 2}
    assert allocate({"a": 5, "b": 3, "c": 2}, 5) == {"a": 3, "b": 1, "c": 1}  # a/b tie on .5: name order
    assert allocate({"a": 2, "b": 1}, 10) == {"a": 2, "b": 1}
    assert [length_stratum(CORPUS[i]) for i in (0, 6, 9)] == ["<50", "50-99", ">=150"]


def test_strata_are_covered_proportionally_one_query_per_passage_and_language(tmp_path: Path) -> None:
    out = synth(tmp_path)
    got = rows(out)
    assert len(got) == 40
    assert len({(r["_id"], r["code"]) for r in got}) == 40  # one query per (passage, language)
    by_id = {p.id: p for p in CORPUS}
    for code, name in (("ja", "Japanese"), ("te", "Telugu")):
        mine = [r for r in got if r["code"] == code]
        assert {r["lang"] for r in mine} == {name}
        assert Counter(length_stratum(by_id[r["_id"]]) for r in mine) == {"<50": 12, "50-99": 6, ">=150": 2}
        ids = [int(r["_id"][1:]) for r in mine]
        assert ids == sorted(ids)  # corpus order
        assert all(r["text"] == by_id[r["_id"]].text and r["title"] == by_id[r["_id"]].title for r in mine)
        assert all(r["query"].startswith(f"q0 {code} {r['_id']} ") for r in mine)
    ja = {r["_id"] for r in got if r["code"] == "ja"}
    te = {r["_id"] for r in got if r["code"] == "te"}
    assert ja != te  # independent samples per language, as SWIM-IR

    meta = json.loads((tmp_path / "pairs.jsonl.meta.json").read_text())
    assert meta["stage"] == "synthesize" and meta["params"]["generator_config"] == {"kind": "fake", "version": 1}
    assert meta["sampling"] == {"strata_sizes": {"50-99": 30, "<50": 60, ">=150": 10},
                                "allocation": {"50-99": 6, "<50": 12, ">=150": 2}}
    assert meta["counts"] == {"ja": {"sampled": 20, "pairs": 20}, "te": {"sampled": 20, "pairs": 20}}
    assert (tmp_path / "pairs.jsonl.generate" / "ja" / "_DONE").exists()


def test_output_parses_as_swimir_training_data(tmp_path: Path) -> None:
    out = synth(tmp_path)
    examples = list(read_training(out))
    assert list(read_training(out, format="swimir")) == examples
    assert len(examples) == 40
    ex = examples[0]
    assert ex.query.lang == "ja" and ex.query.id == f"{ex.positives[0].id}-ja"
    assert ex.positives[0] in CORPUS and ex.negatives == ()


def test_seed_determinism_and_shared_samples(tmp_path: Path) -> None:
    a = synth(tmp_path, name="a").read_text()
    b = synth(tmp_path, name="b").read_text()
    assert a == b
    c = synth(tmp_path, name="c", seed=4).read_text()
    assert {r["_id"] for r in rows(tmp_path / "c.jsonl")} != {r["_id"] for r in rows(tmp_path / "a.jsonl")}
    assert c != a
    shared = rows(synth(tmp_path, name="s", shared_sample=True))
    assert [r["_id"] for r in shared if r["code"] == "ja"] == [r["_id"] for r in shared if r["code"] == "te"]
    # the sample does not depend on the corpus order
    samples, _ = stratified_sample(reversed(CORPUS), 20, ["ja"], seed=3)
    assert [p.id for p in samples["ja"]][::-1] == [r["_id"] for r in rows(tmp_path / "a.jsonl") if r["code"] == "ja"]


def test_resume_after_a_kill_gives_no_duplicates(tmp_path: Path) -> None:
    full = synth(tmp_path, name="full").read_text()
    with pytest.raises(RuntimeError, match="crash"):
        synth(tmp_path, FakeGenerator(crash_after=7))  # ja: 5 shards done; te: 2 shards done, then killed
    assert not (tmp_path / "pairs.jsonl").exists()
    again = FakeGenerator()
    out = synth(tmp_path, again)
    assert len(again.calls) == 3  # only te's three unfinished shards
    assert out.read_text() == full
    assert len({(r["_id"], r["code"]) for r in rows(out)}) == 40


def test_only_kept_queries_become_pairs(tmp_path: Path) -> None:
    class SometimesEmpty(FakeGenerator):
        def generate(self, passages: Sequence[Passage], lang: str, n: int, seed: int) -> list[list[str]]:
            out = super().generate(passages, lang, n, seed)
            return [[" "] if int(p.id[1:]) % 2 else o for p, o in zip(passages, out, strict=True)]

    out = synth(tmp_path, SometimesEmpty(), filters=FilterSettings(language_check=False))
    got = rows(out)
    assert got and all(int(r["_id"][1:]) % 2 == 0 for r in got)
    meta = json.loads((tmp_path / "pairs.jsonl.meta.json").read_text())
    assert all(c["pairs"] == sum(r["code"] == lang for r in got) < c["sampled"] for lang, c in meta["counts"].items())


def test_title_and_callable_strata_and_refusals(tmp_path: Path) -> None:
    samples, stats = stratified_sample(CORPUS, 8, ["x"], seed=0, strata="title")
    assert Counter(p.title for p in samples["x"]) == {f"Article {i}": 2 for i in range(4)}
    samples, stats = stratified_sample(CORPUS, 10, ["x"], seed=0, strata=lambda p: str(int(p.id[1:]) < 50))
    assert stats["allocation"] == {"False": 5, "True": 5}
    samples, _ = stratified_sample(CORPUS[:5], 10, ["x"], seed=0, strata="none")
    assert samples["x"] == CORPUS[:5]  # a corpus smaller than the sample is taken whole
    with pytest.raises(XdrError, match="unknown strata"):
        stratified_sample(CORPUS, 5, ["x"], seed=0, strata="topic")  # type: ignore[arg-type]
    with pytest.raises(XdrError, match="duplicate passage id"):
        stratified_sample([CORPUS[0], CORPUS[0]], 5, ["x"], seed=0)
    with pytest.raises(XdrError, match="no target languages"):
        synth(tmp_path, langs=[])
    with pytest.raises(XdrError, match="empty corpus"):
        synthesize_pairs([], FakeGenerator(), tmp_path / "e.jsonl", langs=["ja"], sample_size=3)
