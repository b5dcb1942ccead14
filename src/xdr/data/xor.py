"""XOR-TyDi QA files: the XOR-Retrieve question files, the English Wikipedia corpus, and the
human question translations.

- Question files (``xor_{train,dev}_retrieve_eng_span*.jsonl``): one JSON object per line with
  ``id``, ``question``, ``answers`` (English strings), ``lang`` and ``split``. The train file writes
  Arabic as ``" ar"``; the language is normalised, so it comes out as ``"ar"``. ``split`` is not kept.
- Corpus (``enwiki_20190201_w100.tsv``, ~18M 100-word passages): DPR's ``psgs_w100`` layout, header
  ``id<TAB>text<TAB>title`` (text before title), quoted fields as DPR writes them.
- Translations (``<l>-en/<l>.txt`` and ``<l>-en/en.txt``): parallel line by line.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

from xdr.data._io import UniqueIds, iter_delimited, iter_jsonl, numbered_lines
from xdr.data.generic import passages_from_records
from xdr.data.schema import Passage, Query
from xdr.errors import DataError
from xdr.langs import normalize_lang

WIKI_HEADER = ("id", "text", "title")
YES_NO = ("yes", "no")  # answers of boolean questions, which no passage span can contain


def read_xor_questions(path: str | Path, *, check_duplicates: bool = True) -> Iterator[Query]:
    """Stream an XOR-Retrieve question file as Queries whose answers are the English answer strings."""
    ids = UniqueIds(check_duplicates)
    for rec in iter_jsonl(path):
        qid = ids.check(rec, "id", rec.ident("id"))
        yield Query(id=qid, lang=rec.lang("lang"), text=rec.text("question"), answers=rec.answers("answers"))


def read_xor_wiki(path: str | Path, *, check_duplicates: bool = True) -> Iterator[Passage]:
    """Stream the XOR English Wikipedia TSV.

    The header must be exactly ``id, text, title``: this catches a different file passed by mistake
    before millions of rows are encoded from it.
    """
    return passages_from_records(iter_delimited(path, WIKI_HEADER, exact_header=WIKI_HEADER), check_duplicates)


@dataclass(frozen=True, slots=True)
class TranslationPair:
    lang: str
    source: str
    english: str


def read_question_translations(root: str | Path, lang: str) -> Iterator[TranslationPair]:
    """Stream ``root/<lang>-en/{<lang>,en}.txt`` as (question, English translation) pairs.

    The files must have the same number of lines. A pair with a blank side is skipped: the upstream
    ar-en release has one (an English line left empty beside a garbled source), and a blank line
    carries nothing to train on.
    """
    code = normalize_lang(lang)
    folder = Path(root) / f"{code}-en"
    src_path, en_path = folder / f"{code}.txt", folder / "en.txt"
    pairs = zip_longest(numbered_lines(src_path), numbered_lines(en_path), fillvalue=None)
    for src, en in pairs:
        if src is None or en is None:
            short, long_, line = (src_path, en_path, en[0]) if src is None else (en_path, src_path, src[0])
            problem = f"ends before line {line} but {long_.name} goes on; the files must be parallel"
            raise DataError(short, line, None, problem)
        source, english = src[1].rstrip("\r\n"), en[1].rstrip("\r\n")
        if source.strip() and english.strip():
            yield TranslationPair(code, source, english)


def span_answers(answers: Iterable[str]) -> list[str]:
    """The answers R@kt looks for: all but the literal (lower-case) ``yes``/``no`` of boolean questions."""
    return [a for a in answers if a not in YES_NO]
