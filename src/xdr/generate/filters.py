"""Quality filters for generated questions: every row gets ``keep`` and, when dropped, one ``reason``.

Rules, checked in this order (the first that applies is the reason):

- ``unparsed``: the generator returned fewer than ``n`` outputs (an LLM answer that did not parse).
- ``empty``: nothing but whitespace.
- ``too_long``: more than ``max_chars`` characters or ``max_words`` whitespace-separated words.
- ``copy``: the output restates the passage instead of asking about it. After normalisation (NFKC,
  case-folded, reduced to word tokens ``\\w+``) it is either a contiguous token span of the passage
  (title + text; a bare entity name counts, as it is not a question), or it has at least three word
  trigrams and at least ``copy_overlap`` of them occur in the passage. A question that reuses the
  passage's words in a new order ("when was the Eiffel Tower built" against "the Eiffel Tower was
  built in 1889") shares few trigrams and is kept.
- ``wrong_language``: the language identifier (py3langid, its model ships in the package) is confident
  the output is in another language: its best guess is outside the target's group of close languages
  and either scores at least ``min_confidence`` (normalised probability) or leaves the target group
  less than ``1 - min_confidence`` (probability spread over the wrong language's own neighbours).
  Outputs with fewer than ``min_letters`` letters are not judged (too short to tell), nor are targets
  the identifier does not know. Close languages (e.g. Indonesian/Malay, Norwegian/Danish,
  Croatian/Serbian/Bosnian) count as the target: the identifier cannot tell them apart on one question.
- ``duplicate``: the same normalised text as an earlier *kept* output of the same passage and language.
"""

from __future__ import annotations

import functools
import importlib.metadata
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from py3langid.langid import MODEL_FILE, LanguageIdentifier

from xdr.data.schema import Passage
from xdr.errors import XdrError

REASONS = ("unparsed", "empty", "too_long", "copy", "wrong_language", "duplicate")

CLOSE_LANGUAGES: tuple[frozenset[str], ...] = (
    frozenset({"id", "ms"}),
    frozenset({"no", "nn", "da"}),
    frozenset({"hr", "sr", "bs"}),
    frozenset({"cs", "sk"}),
    frozenset({"gl", "pt"}),
    frozenset({"ar", "arz", "ary"}),
    frozenset({"zh", "wuu", "yue"}),
    frozenset({"ku", "sdh"}),
    frozenset({"uz", "uzs"}),
)

_WORD = re.compile(r"\w+")
_COPY_NGRAM = 3


@dataclass(frozen=True)
class FilterSettings:
    """Thresholds of the rules in this module's docstring; recorded in meta.json."""

    max_chars: int = 256
    max_words: int = 48
    copy_overlap: float = 0.8
    language_check: bool = True
    min_confidence: float = 0.5
    min_letters: int = 10

    def __post_init__(self) -> None:
        if not 0.0 < self.copy_overlap <= 1.0 or not 0.0 < self.min_confidence <= 1.0:
            raise XdrError("copy_overlap and min_confidence must be in (0, 1]")

    def as_dict(self) -> dict[str, Any]:
        """The settings plus the identifier's version: a new model could change which rows are kept."""
        d = asdict(self)
        d["language_identifier"] = f"py3langid {importlib.metadata.version('py3langid')}"
        return d


def normalize_text(text: str) -> str:
    """Comparison form for duplicates: NFKC, case-folded, single spaces, no edge punctuation."""
    text = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    return text.strip(" ?？¿؟。.!！¡、,，:;\"'«»“”")


def _tokens(text: str) -> list[str]:
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def _ngrams(tokens: Sequence[str]) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + _COPY_NGRAM]) for i in range(len(tokens) - _COPY_NGRAM + 1)}


@functools.cache
def _identifier() -> LanguageIdentifier:
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def _close_group(lang: str) -> frozenset[str]:
    return next((g for g in CLOSE_LANGUAGES if lang in g), frozenset({lang}))


def wrong_language(text: str, lang: str, settings: FilterSettings) -> bool:
    """True when the identifier is confident that ``text`` is not in ``lang`` (or a close language)."""
    if sum(ch.isalpha() for ch in text) < settings.min_letters:
        return False
    identifier = _identifier()
    if lang not in identifier.labels:
        return False
    group = _close_group(lang)
    ranked = identifier.rank(text)
    target = sum(p for label, p in ranked if label in group)
    # The best guess alone decides only when it is confident; otherwise the mass may be spread over a
    # wrong language's own neighbours (German 0.48 + Luxembourgish 0.33 for a German "Greek" question),
    # so the question is whether the target language keeps any real share.
    best, best_p = ranked[0]
    return best not in group and (best_p >= settings.min_confidence or target < 1 - settings.min_confidence)


class _PassageCopyCheck:
    """Token and trigram view of one passage, built once for all its outputs."""

    def __init__(self, passage: Passage, overlap: float) -> None:
        tokens = _tokens(passage.joined(" "))
        self.padded = f" {' '.join(tokens)} "
        self.ngrams = _ngrams(tokens)
        self.overlap = overlap

    def __call__(self, text: str) -> bool:
        tokens = _tokens(text)
        if not tokens:
            return False
        if f" {' '.join(tokens)} " in self.padded:
            return True
        grams = _ngrams(tokens)
        return len(grams) >= 3 and len(grams & self.ngrams) >= self.overlap * len(grams)


def filter_outputs(
    outputs: Sequence[str | None], passage: Passage, lang: str, settings: FilterSettings | None
) -> list[str | None]:
    """The drop reason of each output of one (passage, language), ``None`` for a kept one.

    ``None`` outputs stand for answers the generator could not parse; ``settings=None`` keeps every
    output it has (only ``unparsed`` still applies).
    """
    if settings is None:
        return ["unparsed" if q is None else None for q in outputs]
    is_copy = _PassageCopyCheck(passage, settings.copy_overlap)
    seen: set[str] = set()
    reasons: list[str | None] = []
    for q in outputs:
        reason = None
        if q is None:
            reason = "unparsed"
        elif not q.strip():
            reason = "empty"
        elif len(q) > settings.max_chars or len(q.split()) > settings.max_words:
            reason = "too_long"
        elif is_copy(q):
            reason = "copy"
        elif settings.language_check and wrong_language(q, lang, settings):
            reason = "wrong_language"
        elif normalize_text(q) in seen:
            reason = "duplicate"
        else:
            seen.add(normalize_text(q))
        reasons.append(reason)
    return reasons
