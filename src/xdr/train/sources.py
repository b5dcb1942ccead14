"""Training files as both trainers take them: ``[LANG:]PATH`` on the command line, a :class:`TrainingSource`
in Python, read into examples with a provenance record for ``meta.json``.

Kept free of torch and transformers, so that parsing command-line arguments stays cheap.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from xdr.artifacts import input_fingerprint
from xdr.data import detect_format, read_training
from xdr.data.schema import TrainingExample
from xdr.errors import XdrError
from xdr.langs import normalize_lang

# What a language prefix looks like: a 2- or 3-letter code, optionally with a region ("pt-BR", "zh_CN").
# Anything else before a colon belongs to the path, e.g. a Windows drive letter ("C:\\data\\train.json").
_LANG_PREFIX = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]+)*")


@dataclass(frozen=True, slots=True)
class TrainingSource:
    """A training file. ``lang`` is the query language, for formats whose rows do not record it (SQuAD,
    DPR, Tevatron); ``format`` is as :func:`xdr.data.read_training` names it (``None``: detected from the
    file). The path is kept as a :class:`~pathlib.Path` and the language in its canonical form."""

    path: Path
    lang: str | None = None
    format: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        if self.lang is not None:
            object.__setattr__(self, "lang", normalize_lang(self.lang))

    @classmethod
    def parse(cls, arg: str) -> TrainingSource:
        """``de:data/xquad.de.json`` or ``data/train.jsonl``. A prefix that looks like a language code must
        be a known one: ``xx:file`` is an unknown language, not a missing file named ``xx:file``."""
        prefix, colon, path = arg.partition(":")
        if not colon or not _LANG_PREFIX.fullmatch(prefix):
            return cls(Path(arg))
        if not path:
            raise XdrError(f"{arg!r}: expected [LANG:]PATH, and no path follows the language")
        try:
            return cls(Path(path), lang=prefix)
        except XdrError as e:
            raise XdrError(f"{arg}: {e}") from None

    def detected(self) -> TrainingSource:
        """This source with its format filled in; a missing file is refused here, before any reading."""
        if not self.path.exists():
            raise XdrError(f"{self.path}: no such file")
        return self if self.format else replace(self, format=detect_format(self.path))

    def examples(self) -> Iterator[TrainingExample]:
        # "en" only reaches formats without a language of their own when none was given (SWIM-IR ignores it)
        return read_training(self.path, self.format, lang=self.lang or "en")

    def record(self) -> dict[str, Any]:
        """Provenance for ``meta.json``: the file's fingerprint, its format and the language given."""
        return {**input_fingerprint(self.path), "format": self.format, "lang": self.lang}
