"""Language lists: one parser for every command, so `" DE , el"` means de,el everywhere and `jp` fails at once.

Each command's library call is replaced by a stub that records its arguments and stops the command, so
these tests check the wiring without loading a model.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from xdr.cli import app, main
from xdr.errors import XdrError
from xdr.langs import XQUAD_R_DEV_LANGS, parse_langs

ROOT = Path(__file__).resolve().parents[1]
CORPUS = str(ROOT / "examples" / "demo" / "corpus.jsonl")
runner = CliRunner()


class Called(Exception):
    """Raised by a stubbed library function, carrying the arguments the command gave it."""

    def __init__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        super().__init__("called")
        self.args_, self.kwargs = args, kwargs


def _stop(*args: Any, **kwargs: Any) -> None:
    raise Called(args, kwargs)


def _langs_kw(c: Called) -> Any:
    return c.kwargs["langs"]


# command line (without its language option), the language option, the library function it calls,
# the functions stubbed to return a dummy, and where the call's language list is.
COMMANDS: dict[str, tuple[list[str], str, str, list[str], Callable[[Called], Any]]] = {
    "data prepare": (["data", "prepare", "xquad-r", "--from", "x", "--out", "o"], "--langs",
                     "xdr.data.prepare.prepare", [], _langs_kw),
    "generate run": (["generate", "run", CORPUS, "--out", "o"], "--langs",
                     "xdr.generate.run_generation", ["xdr.generate.make_generator"], _langs_kw),
    "generate ingest": (["generate", "ingest", "released.jsonl", "--out", "o"], "--langs",
                        "xdr.generate.ingest_xqg", [], _langs_kw),
    "synthesize": (["synthesize", CORPUS, "--out", "o", "--sample-size", "1"], "--langs",
                   "xdr.train.synth.synthesize_pairs", ["xdr.generate.make_generator"], _langs_kw),
    "augment": (["augment", "emb", "gen", "--out", "o"], "--langs", "xdr.augment.augment", [],
                lambda c: list(c.args_[3].langs)),
    "train": (["train", "--out", "o", "--train", "t.json", "--dev-xquad-r", "xq"], "--dev-langs",
              "xdr.data.squad.read_xquad_r", [], lambda c: c.args_[1]),
}


def _patch(monkeypatch: pytest.MonkeyPatch, target: str, value: Any) -> None:
    """Patch ``module.attr`` on the module itself (``xdr.augment`` is also the name of a function)."""
    module, attr = target.rsplit(".", 1)
    monkeypatch.setattr(importlib.import_module(module), attr, value)


def _invoke(monkeypatch: pytest.MonkeyPatch, name: str, extra: list[str]) -> Called:
    argv, _, target, dummies, _ = COMMANDS[name]
    _patch(monkeypatch, target, _stop)
    for dummy in dummies:
        _patch(monkeypatch, dummy, lambda *a, **k: object())
    result = runner.invoke(app, [*argv, *extra])
    assert isinstance(result.exception, Called), (result.output, result.exception)
    return result.exception


@pytest.mark.parametrize("name", COMMANDS)
def test_every_language_option_is_normalised(name: str, monkeypatch: pytest.MonkeyPatch, me5_dir: Path) -> None:
    option, where = COMMANDS[name][1], COMMANDS[name][4]
    assert where(_invoke(monkeypatch, name, [option, " DE , el,de-DE"])) == ["de", "el"]


@pytest.mark.parametrize("name", ["data prepare", "train"])
def test_xquad_r_defaults_are_the_dev_languages(name: str, monkeypatch: pytest.MonkeyPatch, me5_dir: Path) -> None:
    assert COMMANDS[name][4](_invoke(monkeypatch, name, [])) == list(XQUAD_R_DEV_LANGS)


@pytest.mark.parametrize("name", COMMANDS)
def test_unknown_language_is_one_line_and_exit_2(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, option, target, _, _ = COMMANDS[name]
    _patch(monkeypatch, target, _stop)  # never reached: the list is refused before any work
    monkeypatch.setattr(sys, "argv", ["xdr", *argv, option, "de, jp"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    lines = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert len(lines) == 1 and "'jp'" in lines[0] and option in lines[0], lines


def test_parse_langs() -> None:
    assert parse_langs(None) is None
    assert parse_langs(" DE , el") == ["de", "el"]
    assert parse_langs("de-DE,de_AT,de,EL") == ["de", "el"]  # aliases folded, first occurrence kept
    assert parse_langs(",te,,ar,") == ["te", "ar"]  # order kept, empties dropped
    for bad in ("jp", "de,zz"):
        with pytest.raises(XdrError, match=r"^--dev-langs: unknown language code '(jp|zz)'"):
            parse_langs(bad, "--dev-langs")
    with pytest.raises(XdrError, match="--langs: no language codes"):
        parse_langs(" , ")
