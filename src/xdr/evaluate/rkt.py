"""XOR-Retrieve R@kt ("recall at k tokens") with the official scorer's exact semantics.

Per question, the official ``eval_xor_retrieve.py`` (AkariAsai/XORQA) skips it when the gold file has no
answers for its id, drops the answers ``"yes"`` and ``"no"`` (skipping the question when none remain),
concatenates ``nltk.word_tokenize`` of the retrieved passage texts in rank order, keeps the first
``budget`` tokens, joins them with single spaces and counts a hit when ANY answer is a case-sensitive
substring of that string. Scores are hit rates x100 per language and their unweighted (macro) mean.

Consequences worth knowing: an answer whose own tokenization differs from its text ("Portland, Oregon"
becomes "Portland , Oregon"; a sentence-final "U.S." becomes "U.S .") can only match where the passage
happens to tokenize it the same way; matching is on raw substrings, so "1914" also hits inside "19145".

One deliberate difference: the official script iterates over the predictions, so a question missing from
the run silently drops out of the denominator. Here the questions define the denominator and a missing
question is a miss (listed in :attr:`RktResult.not_in_run`); for a complete run the two agree.
"""

from __future__ import annotations

import functools
import multiprocessing
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nltk

from xdr.data.runs import read_xor_submission
from xdr.data.schema import Query
from xdr.data.xor import span_answers
from xdr.errors import MismatchError, XdrError
from xdr.evaluate.nltk_punkt import ensure_nltk_punkt

DEFAULT_BUDGETS = (2000, 5000)


def rkt_name(budget: int) -> str:
    """``R@2kt`` for 2000 tokens (the paper's names), ``R@300t`` for budgets that are not whole thousands."""
    return f"R@{budget // 1000}kt" if budget % 1000 == 0 else f"R@{budget}t"


@functools.cache
def _nltk_ready() -> None:
    ensure_nltk_punkt()


def _tokenize(text: str) -> tuple[str, int]:
    tokens = nltk.word_tokenize(text)
    return " ".join(tokens), len(tokens)


class _TokenCache:
    """``nltk.word_tokenize`` of each distinct passage text, computed once.

    The same passages recur across questions, and tokenizing dominates the cost. A passage is stored as
    its tokens joined by single spaces plus the token count rather than as a token list: NLTK tokens never
    contain whitespace (the tokenizer ends in ``str.split()``), so the joined string splits back exactly,
    and one string per passage costs a fraction of the memory of ~130 token objects.
    """

    def __init__(self) -> None:
        self._joined: dict[str, tuple[str, int]] = {}

    def get(self, text: str) -> tuple[str, int]:
        hit = self._joined.get(text)
        if hit is None:
            hit = self._joined[text] = _tokenize(text)
        return hit

    def fill(self, texts: Iterable[str], workers: int) -> None:
        """Tokenize ``texts`` ahead of time in ``workers`` processes (the results are identical)."""
        todo = [t for t in dict.fromkeys(texts) if t not in self._joined]
        if not todo:
            return
        chunk = max(1, len(todo) // (workers * 16))
        with multiprocessing.get_context().Pool(workers, initializer=_nltk_ready) as pool:
            self._joined.update(zip(todo, pool.map(_tokenize, todo, chunksize=chunk), strict=True))

    def window(self, texts: Sequence[str], budget: int) -> str:
        """``" ".join`` of the first ``budget`` tokens of the concatenated passages, as the scorer builds it.

        Passages are only tokenized until the budget is reached, which is also where the scorer stops.
        """
        parts: list[str] = []
        used = 0
        for text in texts:
            if used >= budget:
                break
            joined, n = self.get(text)
            if n == 0:
                continue  # an empty passage adds no tokens (and must not add an empty part)
            if used + n <= budget:
                parts.append(joined)
            else:
                parts.append(" ".join(joined.split(" ")[: budget - used]))
            used += n
        return " ".join(parts)


@dataclass(frozen=True)
class RktResult:
    """Per-question hits for each budget, plus which questions were not scored and why.

    ``hits[budget][qid]`` exists for every scored question (gold answers other than yes/no), so per-query
    results line up across systems for significance tests.
    """

    budgets: tuple[int, ...]
    hits: dict[int, dict[str, bool]]
    langs: dict[str, str]
    skipped_no_answers: tuple[str, ...]
    skipped_yes_no: tuple[str, ...]
    not_in_run: tuple[str, ...]
    unmatchable: tuple[str, ...] = ()  # scored questions none of whose answers survives tokenization as written

    def counts(self) -> dict[str, int]:
        """Scored questions per language: the denominators the official script prints."""
        out: dict[str, int] = {}
        for lang in self.langs.values():
            out[lang] = out.get(lang, 0) + 1
        return dict(sorted(out.items()))

    def per_language(self, budget: int) -> dict[str, float]:
        """Hit rate x100 per language."""
        hits: dict[str, int] = {}
        for qid, hit in self.hits[budget].items():
            lang = self.langs[qid]
            hits[lang] = hits.get(lang, 0) + int(hit)
        return {lang: 100.0 * hits.get(lang, 0) / n for lang, n in self.counts().items()}

    def macro(self, budget: int) -> float:
        """Unweighted mean of the per-language scores, as the official "Final macro averaged score"."""
        scores = list(self.per_language(budget).values())
        return sum(scores) / len(scores) if scores else float("nan")


def recall_at_k_tokens(
    run: Mapping[str, Sequence[str]],
    queries: Iterable[Query],
    budgets: Sequence[int] = DEFAULT_BUDGETS,
    *,
    workers: int = 1,
) -> RktResult:
    """Score ranked passage TEXTS per question id (``run``) against the queries' answers for each budget.

    ``workers`` > 1 tokenizes the passages in that many processes first. Which passages are needed is
    bounded without tokenizing: NLTK never yields fewer tokens than whitespace-separated words, so once
    the word count reaches the largest budget, the token count has too.
    """
    budgets = tuple(dict.fromkeys(int(b) for b in budgets))
    if not budgets or min(budgets) <= 0:
        raise XdrError(f"token budgets must be positive integers, got {budgets}")
    _nltk_ready()
    queries = list(queries)
    cache = _TokenCache()
    if workers > 1:
        cache.fill(_prefix_texts(run, queries, max(budgets)), workers)
    hits: dict[int, dict[str, bool]] = {b: {} for b in budgets}
    langs: dict[str, str] = {}
    no_answers: list[str] = []
    yes_no: list[str] = []
    missing: list[str] = []
    unmatchable: list[str] = []
    seen: set[str] = set()
    for q in queries:
        if q.id in seen:
            raise XdrError(f"question id {q.id!r} appears twice in the questions")
        seen.add(q.id)
        if not q.answers:
            no_answers.append(q.id)
            continue
        answers = span_answers(q.answers)
        if not answers:
            yes_no.append(q.id)
            continue
        langs[q.id] = q.lang
        if not any(_tokenize(a)[0] == a for a in answers):
            unmatchable.append(q.id)
        texts = run.get(q.id)
        if texts is None:
            missing.append(q.id)
        for budget in budgets:
            window = cache.window(texts, budget) if texts else ""
            hits[budget][q.id] = any(a in window for a in answers)
    return RktResult(budgets, hits, langs, tuple(no_answers), tuple(yes_no), tuple(missing), tuple(unmatchable))


def _prefix_texts(run: Mapping[str, Sequence[str]], queries: list[Query], budget: int) -> Iterator[str]:
    """The passages the scorer can reach within ``budget`` tokens, for every question in the run."""
    for q in queries:
        words = 0
        for text in run.get(q.id, ()):
            if words >= budget:
                break
            yield text
            words += len(text.split())


def score_xor_submission(
    source: str | Path | Sequence[Mapping[str, Any]],
    queries: Iterable[Query],
    budgets: Sequence[int] = DEFAULT_BUDGETS,
    *,
    workers: int = 1,
) -> RktResult:
    """R@kt of an XOR-Retrieve prediction file; a prediction whose ``lang`` contradicts the gold is refused.

    Predictions for ids not among ``queries`` are ignored, as the official scorer ignores ids without gold.
    """
    queries = list(queries)
    gold_lang = {q.id: q.lang for q in queries}
    run: dict[str, Sequence[str]] = {}
    for p in read_xor_submission(source):
        if p.id in gold_lang and p.lang != gold_lang[p.id]:
            raise MismatchError(
                f"prediction {p.id!r} says lang {p.lang!r} but the gold question is {gold_lang[p.id]!r}; "
                "are the predictions for this question file?"
            )
        run[p.id] = p.ctxs
    return recall_at_k_tokens(run, queries, budgets, workers=workers)
