"""ir_datasets collections as sources: ``irds:<dataset id>`` for a corpus, queries or qrels.

``read_passages("irds:mr-tydi/ja/test")`` streams the dataset's documents, ``read_queries`` its queries
and ``read_qrels`` its judgments; ir_datasets downloads, caches and parses them (so a first use needs
internet). This module only adapts its records: a document's ``title`` and ``text`` fields when it has
them, else its ``default_text()``; a query's ``default_text()`` (e.g. a TREC topic's title), with the
language the dataset declares (``queries_lang()``). When it declares none (NeuCLIR's English topics over
a Chinese collection), the language is detected per query and said once, as for files: the id's
language names the documents, not the queries. ir_datasets is imported only when such a source is read.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from xdr.data._io import Record, UniqueIds
from xdr.data.language import QueryLanguages, file_language
from xdr.data.schema import Passage, Query
from xdr.errors import DataError, XdrError
from xdr.langs import normalize_lang

PREFIX = "irds:"


def is_irds(source: object) -> bool:
    return str(source).startswith(PREFIX)


def load(source: str) -> Any:
    """The ir_datasets Dataset named by ``irds:<id>``."""
    dataset_id = str(source)[len(PREFIX):].strip()
    try:
        import ir_datasets
    except ImportError:
        raise XdrError(f"{source}: ir_datasets sources need the ir-datasets package: pip install 'xdr[irds]'") from None
    if not dataset_id:
        raise XdrError(f"{source}: give a dataset id after 'irds:', e.g. irds:miracl/te/dev")
    try:
        return ir_datasets.load(dataset_id)
    except KeyError:
        raise XdrError(f"{source}: ir_datasets has no dataset {dataset_id!r} (see ir_datasets.io)") from None


def _need(dataset: Any, source: str, what: str) -> None:
    if not getattr(dataset, f"has_{what}")():
        raise XdrError(f"{source}: this ir_datasets dataset has no {what}")


def _text(obj: Any) -> str:
    """A record's ``text`` field, else its ``default_text()`` (ir_datasets' own choice of fields)."""
    text = getattr(obj, "text", None)
    return text if isinstance(text, str) else obj.default_text()


def read_irds_passages(source: str, *, check_duplicates: bool = True) -> Iterator[Passage]:
    dataset = load(source)
    _need(dataset, source, "docs")
    return _passages(dataset, source, check_duplicates)


def _passages(dataset: Any, source: str, check_duplicates: bool) -> Iterator[Passage]:
    ids = UniqueIds(check_duplicates)
    for n, doc in enumerate(dataset.docs_iter(), 1):
        rec = Record({"doc_id": doc.doc_id}, source, n)
        pid = ids.check(rec, "doc_id", rec.ident("doc_id"))
        title = getattr(doc, "title", "")
        yield Passage(id=pid, text=_text(doc), title=title if isinstance(title, str) else "")


def read_irds_queries(
    source: str, *, lang: str | None = None, check_duplicates: bool = True
) -> Iterator[Query]:
    dataset = load(source)
    _need(dataset, source, "queries")
    given = file_language(lang)
    languages = QueryLanguages(source, given if given is not None else _declared(dataset))
    return _queries(dataset, source, languages, check_duplicates)


def _declared(dataset: Any) -> str | None:
    """The queries' language as the dataset declares it, if it is one xdr knows."""
    declared = dataset.queries_lang()
    try:
        return normalize_lang(declared) if declared else None
    except XdrError:
        return None


def _queries(dataset: Any, source: str, languages: QueryLanguages, check_duplicates: bool) -> Iterator[Query]:
    ids = UniqueIds(check_duplicates)
    try:
        for n, query in enumerate(dataset.queries_iter(), 1):
            rec = Record({"query_id": query.query_id}, source, n)
            qid = ids.check(rec, "query_id", rec.ident("query_id"))
            text = _text(query)
            yield Query(id=qid, lang=languages(text), text=text)
    finally:
        languages.report()


def read_irds_qrels(source: str) -> dict[str, dict[str, int]]:
    """query id -> {doc id: relevance}; a pair judged twice with different grades is an error."""
    dataset = load(source)
    _need(dataset, source, "qrels")
    qrels: dict[str, dict[str, int]] = {}
    for n, qrel in enumerate(dataset.qrels_iter(), 1):
        docs = qrels.setdefault(str(qrel.query_id), {})
        rel = int(qrel.relevance)
        if docs.setdefault(str(qrel.doc_id), rel) != rel:
            problem = f"{qrel.doc_id!r} is judged twice for query {qrel.query_id!r}, with different grades"
            raise DataError(source, n, "doc_id", problem)
    return qrels
