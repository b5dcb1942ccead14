"""SQuAD-format JSON (SQuAD, XQuAD, XQuAD-R): ``data[].{title, paragraphs[].{context, qas[]}}``.

These files are single JSON objects of a few MB to tens of MB, so they are loaded whole.

Paragraph ids are positional, ``"{article:03d}-{paragraph:02d}"`` (0-based, in file order; more
than 99 paragraphs just widen the second part). They are stable for a given file, free of whitespace
(safe in TREC run files), and the same across the XQuAD-R languages, whose files are parallel
paragraph by paragraph. Passage titles are the article titles with ``_`` read as spaces.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from xdr.data._io import Record, UniqueIds, load_json
from xdr.data.schema import Passage, Query, TrainingExample
from xdr.errors import DataError
from xdr.langs import XQUAD_R_DEV_LANGS, normalize_lang


def _paragraphs(path: str | Path) -> Iterator[tuple[Passage, Record]]:
    """Each paragraph as a Passage, with its Record for reading the questions."""
    doc = load_json(path)
    if not isinstance(doc, dict):
        raise DataError(path, None, None, "expected a SQuAD file: a JSON object with a 'data' list")
    for a, article in enumerate(Record(doc, path, None).records("data")):
        title = article.text("title", required=False).replace("_", " ")
        for p, par in enumerate(article.records("paragraphs")):
            yield Passage(id=f"{a:03d}-{p:02d}", text=par.text("context"), title=title), par


def _answer_texts(qa: Record) -> tuple[str, ...]:
    """The distinct answer strings, in order (SQuAD dev lists the same span once per annotator)."""
    return tuple(dict.fromkeys(ans.text("text") for ans in qa.records("answers", required=False)))


def read_squad_paragraphs(path: str | Path) -> Iterator[Passage]:
    """The paragraphs of a SQuAD-format file as a passage pool."""
    for passage, _ in _paragraphs(path):
        yield passage


def read_squad_training(path: str | Path, lang: str) -> Iterator[TrainingExample]:
    """(paragraph, question in ``lang``) pairs, e.g. to train a query generator.

    Each example's query is the question (id = the SQuAD question id) and its one positive is the
    paragraph. SQuAD 2.0 questions marked ``is_impossible`` are skipped: the paragraph does not
    answer them, so they would teach a generator to ask unanswerable questions.
    """
    code = normalize_lang(lang)
    ids = UniqueIds()
    for passage, par in _paragraphs(path):
        for qa in par.records("qas"):
            if qa.obj.get("is_impossible") is True:
                continue
            qid = ids.check(qa, "id", qa.ident("id"))
            query = Query(id=qid, lang=code, text=qa.text("question"), answers=_answer_texts(qa))
            yield TrainingExample(query=query, positives=(passage,))


@dataclass(frozen=True)
class XQuADR:
    """XQuAD-R as a cross-lingual retrieval benchmark over the pool language's paragraphs.

    ``queries`` maps each language to its questions (ids ``"<question id>-<lang>"``, since a question
    id is shared by all languages); ``qrels`` maps every query id to ``{paragraph id: 1}``.
    """

    corpus: list[Passage]
    queries: dict[str, list[Query]]
    qrels: dict[str, dict[str, int]]


def read_xquad_r(
    data_dir: str | Path, langs: Sequence[str] = XQUAD_R_DEV_LANGS, pool_lang: str = "en"
) -> XQuADR:
    """Load ``<data_dir>/<pool_lang>.json`` as the pool and ``<data_dir>/<lang>.json`` as the queries.

    A question's relevant paragraph is the pool paragraph that holds the same question id, and its
    answers are the pool-language answer strings (English by default), which is what an answer-in-
    passage check against the pool needs. Each language file must be parallel to the pool file: a
    question in another position, or one the pool lacks, is a DataError.
    """
    root = Path(data_dir)
    pool_code = normalize_lang(pool_lang)
    corpus: list[Passage] = []
    gold: dict[str, tuple[str, tuple[str, ...]]] = {}  # question id -> (paragraph id, pool answers)
    ids = UniqueIds()
    for passage, par in _paragraphs(root / f"{pool_code}.json"):
        corpus.append(passage)
        for qa in par.records("qas"):
            gold[ids.check(qa, "id", qa.ident("id"))] = (passage.id, _answer_texts(qa))
    by_lang: dict[str, list[Query]] = {}
    qrels: dict[str, dict[str, int]] = {}
    for lang in langs:
        code = normalize_lang(lang)
        path = root / f"{code}.json"
        queries, seen = [], UniqueIds()
        for passage, par in _paragraphs(path):
            for qa in par.records("qas"):
                qid = seen.check(qa, "id", qa.ident("id"))
                if qid not in gold:
                    raise qa.error("id", f"question {qid!r} is not in {pool_code}.json")
                pid, answers = gold[qid]
                if pid != passage.id:
                    raise qa.error(
                        "id", f"question {qid!r} is in paragraph {passage.id} here but {pid} in "
                        f"{pool_code}.json; XQuAD-R files must be parallel"
                    )
                query = Query(id=f"{qid}-{code}", lang=code, text=qa.text("question"), answers=answers)
                queries.append(query)
                qrels[query.id] = {pid: 1}
        by_lang[code] = queries
    return XQuADR(corpus=corpus, queries=by_lang, qrels=qrels)
