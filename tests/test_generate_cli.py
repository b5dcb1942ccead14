"""`xdr generate` as a user meets it, through the real entry point: a model that cannot be had is one line
and leaves no directory, a run shows its progress against the corpus size, and the statistics fit the
terminal."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
from rich.console import Console

from xdr.data.schema import Passage
from xdr.generate import generation_stats, registry, run_generation


def _corpus(tmp_path: Path, n: int = 7) -> Path:
    path = tmp_path / "corpus.jsonl"
    rows = [{"id": f"d{i}", "title": f"Topic {i}", "text": f"Passage {i} tells about topic number {i}."}
            for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run_xdr(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """Run `xdr ARGS` in this process through the console entry point; its exit status."""
    from xdr.cli import main

    monkeypatch.setattr(sys, "argv", ["xdr", *args])
    try:
        main()
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def test_a_generator_that_cannot_be_had_is_one_line_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read when huggingface_hub was imported
    out = tmp_path / "gen"
    status = run_xdr(monkeypatch, "generate", "run", str(_corpus(tmp_path)), "--langs", "de", "--out", str(out),
                 "--model", "xdr-tests/no-such-generator")
    err = capsys.readouterr().err
    assert status == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "'xdr-tests/no-such-generator' is not available" in err and "Offline:" in err
    assert not out.exists()


class EchoGenerator:
    """Two questions per passage, one of them a copy of the passage (dropped by the filters)."""

    name = "echo"
    config: ClassVar[dict[str, Any]] = {"kind": "echo"}

    def generate(self, passages: Sequence[Passage], lang: str, n: int, seed: int) -> list[list[str]]:
        return [[f"Wie heißt das Thema {p.id}?", p.text][:n] for p in passages]


def test_run_shows_progress_against_the_corpus_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setitem(registry._FACTORIES, "echo", lambda **_: EchoGenerator())
    monkeypatch.setenv("COLUMNS", "120")
    out = tmp_path / "gen"
    status = run_xdr(monkeypatch, "generate", "run", str(_corpus(tmp_path)), "--generator", "echo", "--langs", "de",
                 "--n", "2", "--shard-size", "3", "--out", str(out))
    captured = capsys.readouterr()
    assert status == 0, captured.err
    progress = captured.err.strip().splitlines()[-1]
    assert "generate" in progress and "7/7" in progress  # passages done of the file's count
    assert "queries/s" in progress and "eta" in progress
    kept = generation_stats(out)["all"]["kept_rate"]
    assert f"kept {kept:.1%}" in progress and 0 < kept < 1


def test_a_failure_before_the_first_shard_leaves_no_directory(tmp_path: Path) -> None:
    class Down(EchoGenerator):
        def generate(self, passages: Sequence[Passage], lang: str, n: int, seed: int) -> list[list[str]]:
            raise ConnectionError("server down")

    passages = [Passage("d1", "text")]
    with pytest.raises(ConnectionError):
        run_generation(passages, Down(), tmp_path / "gen", langs=["de"], progress=False)
    assert not (tmp_path / "gen").exists()
    (tmp_path / "mine").mkdir()  # a directory the user made is theirs: it stays, with the meta to resume
    with pytest.raises(ConnectionError):
        run_generation(passages, Down(), tmp_path / "mine", langs=["de"], progress=False)
    assert (tmp_path / "mine" / "meta.json").exists()


@pytest.mark.parametrize("command", ["stats", "run"])
def test_stats_table_fits_a_narrow_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, command: str
) -> None:
    import xdr.cli.generate

    monkeypatch.setitem(registry._FACTORIES, "echo", lambda **_: EchoGenerator())
    out = tmp_path / "gen"
    run = ["run", str(_corpus(tmp_path)), "--generator", "echo", "--langs", "de,fi,ja", "--n", "2", "--out", str(out)]
    assert run_xdr(monkeypatch, "generate", *run) == 0
    console = Console(file=io.StringIO(), width=60)
    monkeypatch.setattr(xdr.cli.generate, "out", console)
    assert run_xdr(monkeypatch, "generate", *(["stats", str(out)] if command == "stats" else run)) == 0
    lines = console.file.getvalue().splitlines()
    assert all(len(line) <= 60 for line in lines)
    for lang, s in generation_stats(out).items():  # each language's figures stay on its own line, whole
        row = next(line for line in lines if line.lstrip().startswith(lang + " "))
        for figure in (f"{s['passages']:,}", f"{s['count']:,}", f"{100 * s['kept_rate']:.1f}",
                       f"{s['mean_length']:.1f}"):
            assert f" {figure} " in f"{row} ", (lang, figure, row)
