"""The language of queries whose file does not say: one code for the whole file, or detection per query.

Many query sets (BEIR, MIRACL and Mr. TyDi topics, ir_datasets collections, MS MARCO-style TSVs) carry no
language column, while every report groups by language. A reader takes ``lang=`` for the whole file;
without it, each query's language is detected with py3langid (its model ships in the package, so this
works offline) and the reader says so once, as an :class:`~xdr.errors.XdrWarning` with the counts, so a
report split by detected languages is never a surprise. Detection that cannot decide (too few letters,
a low probability, or a language xdr has no code for) gives ``"und"`` (undetermined, ISO 639-2), and
``lang="und"`` turns detection off for a file. Only the thresholds and the bookkeeping are ours.
"""

from __future__ import annotations

import functools
import warnings
from collections import Counter

from py3langid.langid import MODEL_FILE, LanguageIdentifier

from xdr.errors import XdrError, XdrWarning
from xdr.langs import LANGUAGES, normalize_lang

UNDETERMINED = "und"
MIN_LETTERS = 3  # "42?" or "OK" says nothing about a language
MIN_PROBABILITY = 0.5


@functools.cache
def _identifier() -> LanguageIdentifier:
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def detect_language(text: str) -> str:
    """The ISO 639-1 code py3langid is confident of, else ``"und"``."""
    if sum(ch.isalpha() for ch in text) < MIN_LETTERS:
        return UNDETERMINED
    code, probability = _identifier().classify(text)
    return code if probability >= MIN_PROBABILITY and code in LANGUAGES else UNDETERMINED


def file_language(lang: str | None) -> str | None:
    """A ``lang=`` argument checked once, before any row is read: a code, ``"und"``, or None (detect)."""
    if lang is None or lang.strip().lower() == UNDETERMINED:
        return None if lang is None else UNDETERMINED
    return normalize_lang(lang)


class QueryLanguages:
    """Decides each query's language for one source, counting detections for a single warning.

    ``given`` is the whole file's language (from :func:`file_language`); a row's own language must agree
    with it, since a file that says ``fi`` where the user said ``de`` is the wrong file or the wrong flag.
    """

    def __init__(self, source: str, given: str | None) -> None:
        self.source, self.given = source, given
        self.detected: Counter[str] = Counter()

    def __call__(self, text: str, own: str | None = None) -> str:
        """The language of a query with text ``text`` whose record says ``own`` (None: says nothing)."""
        if own is not None:
            if self.given is not None and self.given != UNDETERMINED and own != self.given:
                raise XdrError(f"the row says {own!r} but lang={self.given!r} was given for the whole file")
            return own
        if self.given is not None:
            return self.given
        code = detect_language(text)
        self.detected[code] += 1
        return code

    def report(self) -> None:
        """Warn once, if any language was detected, with how many queries went to each language."""
        if not self.detected:
            return
        n = sum(self.detected.values())
        counts = ", ".join(f"{code} {k}" for code, k in self.detected.most_common())
        found = len(self.detected) - (UNDETERMINED in self.detected)
        warnings.warn(
            f"{self.source}: {n} queries have no language; py3langid detected {found} "
            f"language{'s' if found != 1 else ''} ({counts}); pass lang= (--lang) to set one for the file",
            XdrWarning,
            stacklevel=2,
        )
