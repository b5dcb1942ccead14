"""Cleaning and judging LLM expansions and translations: every row gets ``keep`` and, if dropped, a reason.

Meta-text is stripped first (the answer is kept, the framing goes): a chain-of-thought or chatty model
wraps its answer in "Sure, here is...", "To answer this query, ...", "Expansion:" labels and markdown,
words that match every document and hurt BM25 most. What remains is then judged, in this order:

- ``empty``: nothing left (or no answer at all).
- ``copy``: the output restates the query or the instruction it was given, adding nothing.
- ``wrong_language``: a translation that :func:`xdr.data.language.detect_language` is confident is in the
  query's own language (left untranslated), or in another language and mostly not in ASCII letters (a
  non-Latin script). An English question about "malum prohibitum" that the identifier takes for Latin
  is kept. Expansions are not judged for language: a term in another script is a fair expansion.

The patterns are hand-written because they describe one family of prompts; they are anchored at the
start of a sentence or line, so a word like "here" inside the answer is never touched.
"""

from __future__ import annotations

import re

from xdr.data.language import UNDETERMINED, detect_language
from xdr.generate.filters import normalize_text

REASONS = ("empty", "copy", "wrong_language")

_LABEL = re.compile(
    r"^\s*(?:expanded query|expansion|expanded|passage|answer|response|rephrased (?:query|"
    r"question)|translation|english(?: translation)?|final answer|step \d+|query)\s*:\s*",
    re.IGNORECASE,
)
_FRAMING = re.compile(
    r"^(?:sure|certainly|of course|okay|ok|absolutely|great|here(?:'s| is| are)|below is|to answer (?:this|the|your)"
    r"|in order to answer|let me|let's|i will|i'll|i hope|note:|as an ai|this (?:passage|expansion|translation)"
    r"|the (?:passage|expansion|translation) (?:above|below))\b",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"(?<=[.!?:。！？])\s+|\n+")
_MARKUP = re.compile(r"\*\*|__|`+|^\s*[-*#>]+\s+", re.MULTILINE)
_QUOTES = "\"'“”«»„"


def strip_meta(text: str | None) -> tuple[str, bool]:
    """``text`` without framing sentences, labels and markdown; and whether anything was removed."""
    if text is None:
        return "", False
    sentences = (_LABEL.sub("", s).strip() for s in _SENTENCE.split(_MARKUP.sub("", text)))
    kept = [s for s in sentences if s and not _FRAMING.match(s)]
    out = " ".join(kept).strip().strip(_QUOTES).strip()
    return out, out != " ".join(text.split())


def judge_expansion(text: str, query: str, instruction: str) -> str | None:
    """The drop reason of a cleaned expansion of ``query`` asked for with ``instruction``; None keeps it."""
    if not text.strip():
        return "empty"
    norm = normalize_text(text)
    if not norm or norm == normalize_text(query) or norm in normalize_text(instruction):
        return "copy"
    return None


def judge_translation(text: str, query: str, lang: str) -> str | None:
    """The drop reason of a cleaned English translation of ``query`` (in ``lang``); None keeps it."""
    if not text.strip():
        return "empty"
    if lang != "en" and normalize_text(text) == normalize_text(query):
        return "copy"
    detected = detect_language(text)
    if detected in ("en", UNDETERMINED):
        return None
    letters = [ch for ch in text if ch.isalpha()]
    ascii_share = sum(ch.isascii() for ch in letters) / max(len(letters), 1)
    return "wrong_language" if detected == lang or ascii_share < 0.5 else None
