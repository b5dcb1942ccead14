"""The CLI wiring: help with examples, the demo pipeline end to end, and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from xdr.cli import app

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo"
runner = CliRunner()


@pytest.fixture(autouse=True)
def _built_model(me5_dir: Path) -> None:
    """Every command here may resolve me5-small; build it once into the test cache, never ~/.cache."""


def _commands(group, prefix=()):
    for name, cmd in getattr(group, "commands", {}).items():
        path = (*prefix, name)
        yield path
        yield from _commands(cmd, path)


@pytest.mark.parametrize("path", [(), *_commands(get_command(app))], ids=lambda p: " ".join(p) or "xdr")
def test_every_help_shows_an_example(path: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Example" in result.output


def xdr(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run the real entry point, so exit codes and stderr are what a user sees."""
    return subprocess.run([sys.executable, "-m", "xdr", *args], cwd=cwd, capture_output=True, text=True)


def test_demo_pipeline_end_to_end(tmp_path: Path) -> None:
    corpus, queries = str(DEMO / "corpus.jsonl"), str(DEMO / "queries.jsonl")
    assert xdr("encode", corpus, "--model", "me5-small", "--out", str(tmp_path / "emb")).returncode == 0
    assert xdr("index", str(tmp_path / "emb"), "--out", str(tmp_path / "idx")).returncode == 0
    s = xdr("search", str(tmp_path / "idx"), queries, "--corpus", corpus, "--k", "10", "--show", "1",
            "--out", str(tmp_path / "run"))
    assert s.returncode == 0, s.stderr
    assert "Eisenach" in s.stdout  # the Bach passage is shown for the question about his birthplace
    m = xdr("search", str(tmp_path / "idx"), queries, "--k", "10", "--mmap", "--out", str(tmp_path / "run-mmap"))
    assert m.returncode == 0, m.stderr  # the index left on disk answers the same
    assert (tmp_path / "run-mmap" / "run.trec").read_text() == (tmp_path / "run" / "run.trec").read_text()
    e = xdr("evaluate", str(tmp_path / "run"), "--queries", queries, "--qrels", str(DEMO / "qrels.txt"),
            "--budgets", "100", "--out", str(tmp_path / "eval"))
    assert e.returncode == 0, e.stderr
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert set(report["per_language"]["R@1"]) == {"ar", "bn", "de", "es", "fi", "ja", "ko", "ru", "te"}
    assert report["macro"]["RR@10"] > 80  # me5-small answers most of its own demo
    xor = json.loads((tmp_path / "run" / "xor.json").read_text())
    assert len(xor) == 72 and all(len(q["ctxs"]) == 10 for q in xor)


def test_malformed_input_is_one_line_naming_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "corpus.jsonl"
    bad.write_text('{"id": "a", "text": "fine"}\n{"id": "b", "txt": "typo"}\n')
    r = xdr("encode", str(bad), "--out", str(tmp_path / "emb"))
    assert r.returncode == 2
    errors = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and f"{bad}:2" in errors[0] and "'text'" in errors[0]
    assert r.stderr.rstrip().endswith(errors[0]) and "Traceback" not in r.stderr
    assert not (tmp_path / "emb" / "_DONE").exists()


def test_unknown_language_and_missing_model_are_clear_errors(tmp_path: Path) -> None:
    q = tmp_path / "q.jsonl"
    q.write_text('{"id": "1", "lang": "jp", "text": "x"}\n')
    r = xdr("data", "convert", str(q), str(tmp_path / "q.parquet"), "--kind", "queries")
    assert r.returncode == 2 and "unknown language code 'jp'" in r.stderr
    assert not (tmp_path / "q.parquet").exists()
    r = xdr("encode", str(DEMO / "corpus.jsonl"), "--model", str(tmp_path / "no-such-model"),
            "--out", str(tmp_path / "emb"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "Online:" in r.stderr and "Offline:" in r.stderr  # says how to get it both ways


def test_index_refuses_a_query_encoder_from_another_model(tmp_path: Path, tiny_bert_dir: Path) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"id": "a", "text": "the river flows"}\n{"id": "b", "text": "a mountain"}\n')
    assert xdr("encode", str(corpus), "--out", str(tmp_path / "emb")).returncode == 0
    assert xdr("index", str(tmp_path / "emb"), "--out", str(tmp_path / "idx")).returncode == 0
    q = tmp_path / "q.jsonl"
    q.write_text('{"id": "1", "lang": "de", "text": "Fluss"}\n')
    r = xdr("search", str(tmp_path / "idx"), str(q), "--model", str(tiny_bert_dir), "--out", str(tmp_path / "r"))
    assert r.returncode == 2 and "another model" in r.stderr
