"""`xdr expand`: meta-text stripping and each filter, strategies and orders against a stub chat server on
127.0.0.1, derived seeds, statistics and LLM cost, and a resume after the process was killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from itertools import groupby
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from chat_server import running

from xdr.data.schema import Query
from xdr.errors import MismatchError
from xdr.expand import (
    ExpandSettings,
    expansion_messages,
    expansion_seed,
    judge_expansion,
    judge_translation,
    load_expansion_exemplars,
    plan_calls,
    read_expansions,
    run_expansion,
    strip_meta,
)
from xdr.expand.prompts import SYSTEMS, TRANSLATE_SYSTEM
from xdr.generate.llm import OpenAIChatBackend

REPO = Path(__file__).resolve().parents[1]
QUERIES = [
    Query("q1", "de", "Wie tief ist der Baikalsee?"),
    Query("q2", "es", "¿Quién escribió Cien años de soledad?"),
    Query("q3", "de", "EMPTY Frage"),
    Query("q4", "de", "COPY Frage"),
    Query("q5", "de", "UNTRANSLATED Frage"),
    Query("q6", "en", "Why do bees dance?"),
]
ENGLISH = {
    "Wie tief ist der Baikalsee?": "How deep is Lake Baikal?",
    "¿Quién escribió Cien años de soledad?": "Who wrote One Hundred Years of Solitude?",
}


def stub_answer(body: dict[str, Any]) -> str:
    """Translates what it knows, fails on cue, and expands with chatty framing that names the seed."""
    system, text = body["messages"][0]["content"], body["messages"][-1]["content"]
    if system == TRANSLATE_SYSTEM:
        if "UNTRANSLATED" in text:
            return "Das ist eine Frage, die nicht übersetzt wurde und auf Deutsch bleibt."
        first = text.split("\n")[0]
        return "Here is the translation: " + ENGLISH.get(first, "An English question about something.") + (
            " It is about lakes and writers." if "\n" in text else "")
    query = text.split("Query: ", 1)[1]
    if "EMPTY" in query:
        return "Sure! Here is the expansion:"
    if "COPY" in query:
        return query
    return f"Sure, here is the expansion: **Expansion:** Lake Baikal is 1642 m deep, seed {body['seed']}."


def backend(url: str) -> OpenAIChatBackend:
    return OpenAIChatBackend("stub", url, timeout=5.0, retries=1, backoff=0.01)


@pytest.mark.parametrize(
    ("raw", "clean", "stripped"),
    [
        ("Sure, here is the expansion: The lake is deep.", "The lake is deep.", True),
        ("To answer this query, we need some history. The tower was built in 1889.",
         "The tower was built in 1889.", True),
        ("**Expansion:** Baikal is 1642 m deep.", "Baikal is 1642 m deep.", True),
        ('Here is the translation:\n"How deep is Lake Baikal?"', "How deep is Lake Baikal?", True),
        ("Step 1: It asks about X.\nStep 2: Documents say Y.", "It asks about X. Documents say Y.", True),
        ("The answer is here. Here we go, so to answer.", "The answer is here. Here we go, so to answer.", False),
        (None, "", False),
    ],
)
def test_strip_meta(raw: str | None, clean: str, stripped: bool) -> None:
    assert strip_meta(raw) == (clean, stripped)


def test_filters_each_reason() -> None:
    instruction = SYSTEMS["zero-shot"]
    assert judge_expansion("", "q", instruction) == "empty"
    assert judge_expansion("Wie tief ist der Baikalsee", "Wie tief ist der Baikalsee?", instruction) == "copy"
    assert judge_expansion("Reply with the passage only.", "q", instruction) == "copy"
    assert judge_expansion("Der Baikalsee ist 1642 m tief.", "Wie tief ist der Baikalsee?", instruction) is None
    assert judge_translation(" ", "Frage", "de") == "empty"
    assert judge_translation("Wie tief ist der Baikalsee?", "Wie tief ist der Baikalsee?", "de") == "copy"
    assert judge_translation("Der Baikalsee ist der tiefste See der Welt.", "x", "de") == "wrong_language"
    assert judge_translation("Πόσο βαθιά είναι η λίμνη Βαϊκάλη;", "Wie tief ist der Baikalsee?", "de") == \
        "wrong_language"  # another language, in another script
    assert judge_translation("How deep is Lake Baikal?", "Wie tief ist der Baikalsee?", "de") is None
    assert judge_translation("What are malum prohibitum considerations?", "x", "de") is None  # 'Latin', but English


def test_prompts_per_strategy() -> None:
    shots = load_expansion_exemplars()
    zero = expansion_messages("Wie tief?", "de", "zero-shot", shots)
    assert [m["role"] for m in zero] == ["system", "user"]
    assert zero[-1]["content"] == "Language: German\nQuery: Wie tief?"
    few = expansion_messages("Wie tief?", "de", "few-shot", shots, num_exemplars=2)
    assert [m["role"] for m in few] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert few[1]["content"].startswith("Language: German\n")  # an exemplar in the query's language first
    assert {expansion_messages("x", "de", s, shots)[0]["content"] for s in ("zero-shot", "cot", "rar")} == {
        SYSTEMS["zero-shot"], SYSTEMS["cot"], SYSTEMS["rar"]}


def _rows(path: Path) -> list[dict[str, Any]]:
    return [r for p in sorted(path.glob("part-*.parquet")) for r in pq.read_table(p).to_pylist()]


def test_expand_then_translate_filters_counts_and_cost(tmp_path: Path) -> None:
    settings = ExpandSettings(strategies=("zero-shot", "cot"), order="expand-translate", samples=2, shard_size=4)
    with running(stub_answer) as srv:
        out = run_expansion(QUERIES, backend(srv.url), tmp_path / "x", settings, progress=False)
        calls = len(srv.requests)
    rows = _rows(out)
    assert len(rows) == len(QUERIES) * 2 * 2
    by = {(r["qid"], r["strategy"], r["sample"]): r for r in rows}
    r = by[("q1", "cot", 1)]
    assert r["keep"] and r["seed"] == expansion_seed(42, "q1", "expand-translate", "cot", 1)
    assert r["expansion"] == f"Lake Baikal is 1642 m deep, seed {r['seed'] % 2**31}." and r["meta_stripped"]
    assert r["english"] == "How deep is Lake Baikal? It is about lakes and writers." and r["translation"] is None
    assert r["prompt"] == "Language: German\nQuery: Wie tief ist der Baikalsee?"
    assert r["raw_expansion"].startswith("Sure, here is the expansion:")
    assert by[("q3", "zero-shot", 0)]["reason"] == "expand:empty"
    assert by[("q4", "zero-shot", 0)]["reason"] == "expand:copy"
    assert by[("q5", "zero-shot", 0)]["reason"] == "translate:wrong_language"
    assert by[("q6", "zero-shot", 0)]["english"].startswith("Why do bees dance? Lake Baikal")  # English: no call
    kept = list(read_expansions(out))
    assert {e.qid for e in kept} == {"q1", "q2", "q6"} and all(e.keep for e in kept)
    # Calls: 24 expansions, then translations of the kept non-English rows (q1, q2, q5 x 2 x 2).
    assert calls == 24 + 12 <= plan_calls(QUERIES, settings) == 24 + 20
    stats = json.loads((out / "stats.json").read_text())
    assert stats["rows"]["cot"]["de"] == {"rows": 8, "kept": 2, "meta_stripped": 6, "expand:empty": 2,
                                          "expand:copy": 2, "translate:wrong_language": 2}
    assert stats["cost"]["calls"] == calls and stats["cost"]["queries"] == len(QUERIES)


def test_translate_then_expand_translates_each_query_once(tmp_path: Path) -> None:
    settings = ExpandSettings(strategies=("zero-shot", "few-shot"), order="translate-expand", samples=2)
    with running(stub_answer) as srv:
        out = run_expansion(QUERIES[:2] + QUERIES[4:], backend(srv.url), tmp_path / "x", settings, progress=False)
        translations = sum(b["messages"][0]["content"] == TRANSLATE_SYSTEM for _, b in srv.requests)
        calls = len(srv.requests)
    assert translations == 3  # q1, q2, q5; the English q6 is its own translation
    assert calls == plan_calls(QUERIES[:2] + QUERIES[4:], settings) - 2 * 2  # q5's expansions never asked
    rows = {(r["qid"], r["strategy"], r["sample"]): r for r in _rows(out)}
    r = rows[("q2", "few-shot", 0)]
    assert r["translation"] == "Who wrote One Hundred Years of Solitude?"
    assert r["prompt"] == "Language: English\nQuery: Who wrote One Hundred Years of Solitude?"
    assert r["english"] == f"{r['translation']} {r['expansion']}"
    assert rows[("q5", "few-shot", 1)]["reason"] == "translate:wrong_language"


def test_one_strategys_prompts_go_out_back_to_back(tmp_path: Path) -> None:
    """So that a server with prompt caching evaluates each system prompt and its exemplars once a shard."""
    settings = ExpandSettings(strategies=("zero-shot", "few-shot", "cot"), shard_size=6)
    with running(stub_answer) as srv:
        one_at_a_time = OpenAIChatBackend("stub", srv.url, concurrency=1, timeout=5.0, retries=1, backoff=0.01)
        out = run_expansion(QUERIES, one_at_a_time, tmp_path / "x", settings, progress=False)
        systems = [b["messages"][0]["content"] for _, b in srv.requests]
    assert [s for s, _ in groupby(systems)] == [SYSTEMS[s] for s in settings.strategies]
    assert [r["qid"] for r in _rows(out)][:3] == ["q1"] * 3  # the artifact keeps query order


def test_rerun_is_identical_and_other_settings_are_refused(tmp_path: Path) -> None:
    settings = ExpandSettings(strategies=("rar",), samples=2)
    with running(stub_answer) as srv:
        a = _rows(run_expansion(QUERIES, backend(srv.url), tmp_path / "a", settings, progress=False))
        b = _rows(run_expansion(QUERIES, backend(srv.url), tmp_path / "b", settings, progress=False))
        with pytest.raises(MismatchError, match="other settings"):
            run_expansion(QUERIES, backend(srv.url), tmp_path / "a", settings.model_copy(update={"samples": 3}),
                          progress=False)
    assert a == b


def test_killed_run_resumes_without_losing_or_duplicating_rows(tmp_path: Path) -> None:
    queries = tmp_path / "q.jsonl"
    queries.write_text("".join(json.dumps({"id": f"q{i}", "lang": "de", "text": f"Frage {i}"}) + "\n"
                               for i in range(12)))
    out = tmp_path / "exp"

    def slow(body: dict[str, Any]) -> str:
        time.sleep(0.05)
        return f"Eine Erweiterung mit dem Seed {body['seed']}."

    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    with running(slow) as srv:
        cmd = [sys.executable, "-m", "xdr", "expand", str(queries), "--out", str(out), "--model", "stub",
               "--base-url", srv.url, "--strategy", "zero-shot,rar", "--samples", "2", "--shard-size", "1",
               "--concurrency", "1"]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while len(list(out.glob("part-*.parquet"))) < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(timeout=10)
        finished = len(list(out.glob("part-*.parquet")))
        assert 3 <= finished < 12 and not (out / "_DONE").exists()
        before = len(srv.requests)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        resumed_calls = len(srv.requests) - before
    rows = _rows(out)
    keys = Counter((r["qid"], r["strategy"], r["sample"]) for r in rows)
    assert set(keys) == {(f"q{i}", s, k) for i in range(12) for s in ("zero-shot", "rar") for k in range(2)}
    assert set(keys.values()) == {1}
    assert resumed_calls <= (12 - finished) * 4  # finished shards were not asked again
    assert (out / "_DONE").exists() and "LLM calls" in done.stdout


@pytest.mark.slow
def test_experiment_runs_end_to_end_with_a_stub_llm(me5_dir: Path, tmp_path: Path) -> None:
    shared = REPO.parent / "shared" / "data"
    if not (shared / "xquad-r").exists():
        pytest.skip("XQuAD-R is not in ../shared/data")
    cmd = [sys.executable, "expansion.py", "--stub", "--per-lang", "2", "--per-lang-best", "5", "--pool", "subset",
           "--shared", str(shared), "--work", str(tmp_path / "work"), "--out", str(tmp_path / "expansion")]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "2"}
    done = subprocess.run(cmd, cwd=REPO / "experiments", env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    planned = "{'strategies': 48, 'translate-expand': 60, 'expand-translate': 60}"
    assert f"LLM calls planned (at most): {planned}" in done.stdout
    doc = (tmp_path / "expansion.md").read_text()
    assert "STUB LLM" in doc and "Do query expansion and xQG add up?" in doc
    result = json.loads((tmp_path / "expansion.json").read_text())
    assert set(result["strategies"]) == {"zero-shot", "few-shot", "cot", "rar"}
    assert result["expansions"]["strategies"]["cost"]["calls"] == 48
    assert (tmp_path / "work" / "llm" / "strategies" / "_DONE").exists()  # a stub keeps off the committed runs
