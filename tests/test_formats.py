"""The formats users already have: BEIR, Pyserini, CSV, MIRACL, any column names through ``fields``,
queries without a language (``lang`` or detection, said once), ir_datasets ids on real ir_datasets
classes over local files, and evaluate on queries that carry no language."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from xdr.data import detect_format, read_passages, read_qrels, read_queries
from xdr.data.language import UNDETERMINED, detect_language
from xdr.data.registry import load_registry
from xdr.data.schema import Passage, Query
from xdr.errors import DataError, XdrError, XdrWarning
from xdr.evaluate import evaluate_files

ROOT = Path(__file__).resolve().parents[1]
FIX = Path(__file__).parent / "fixtures" / "formats"
BEIR = FIX / "beir"
MIRACL = FIX / "miracl-te"
TOPICS = MIRACL / "topics.miracl-v1.0-te-dev.tsv"
MIRACL_QRELS = MIRACL / "qrels.miracl-v1.0-te-dev.tsv"
MIRACL_PASSAGES = [
    Passage("1#0", "హైదరాబాదు తెలంగాణ రాష్ట్ర రాజధాని.", "హైదరాబాదు"),
    Passage("1#1", "హైదరాబాదు జనాభా కోటికి పైగా ఉంది.", "హైదరాబాదు"),
    Passage("7#0", "విజయవాడ కృష్ణా నది ఒడ్డున ఉన్న నగరం.", "విజయవాడ"),
]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(path: Path, *rows: object) -> Path:
    return write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def quietly(it: Iterator) -> list:
    """Read a stream whose language detection warns, without the warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", XdrWarning)
        return list(it)


def located(exc: pytest.ExceptionInfo[DataError], path: Path | str, line: int | None, field: str | None) -> str:
    err = exc.value
    assert (err.path, err.line, err.field) == (str(path), line, field)
    return str(err)


# ------------------------------------------------------------------------------------------ detection
@pytest.mark.parametrize(
    ("path", "fmt"),
    [
        (BEIR / "corpus.jsonl", "beir"), (BEIR / "queries.jsonl", "beir"), (BEIR / "qrels" / "test.tsv", "beir-qrels"),
        (FIX / "pyserini.jsonl", "pyserini"), (FIX / "corpus.csv", "csv"), (MIRACL / "docs-0.jsonl", "miracl"),
        (TOPICS, "id-text"), ("irds:miracl/te/dev", "irds"),
    ],
)
def test_detects_the_formats_users_have(path: Path, fmt: str) -> None:
    assert detect_format(path) == fmt


def test_a_two_column_tsv_with_a_header_is_not_headerless(tmp_path: Path) -> None:
    assert detect_format(write(tmp_path / "q.tsv", "qid\tquery\n1\tHallo\n")) == "tsv"
    assert detect_format(write(tmp_path / "c.tsv", "text\tid\nHallo\t1\n")) == "tsv"


# ----------------------------------------------------------------------------------------------- BEIR
def test_beir_corpus_queries_and_qrels() -> None:
    expected = [
        Passage("d1", "Berlin ist die Hauptstadt Deutschlands.", "Berlin"),
        Passage("d2", "Tokyo is the capital of Japan.", "Tokyo"),
        Passage("d3", "Helsinki is the capital of Finland.", ""),
    ]
    assert list(read_passages(BEIR / "corpus.jsonl")) == expected
    assert list(read_passages(BEIR)) == expected  # the dataset directory
    queries = quietly(read_queries(BEIR))
    assert [(q.id, q.lang) for q in queries] == [("q1", "de"), ("q2", "ja"), ("q3", "en")]
    assert queries[1].text == "日本の首都はどこですか？"
    assert read_qrels(BEIR / "qrels" / "test.tsv") == {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 2}}


def test_beir_bad_rows_name_beirs_own_fields(tmp_path: Path) -> None:
    corpus = jsonl(tmp_path / "corpus.jsonl", {"_id": "d1", "title": "", "text": "ok"}, {"_id": "d2", "text": 5})
    with pytest.raises(DataError) as exc:
        list(read_passages(corpus))
    assert "expected a string, got number" in located(exc, corpus, 2, "text")
    ids = jsonl(tmp_path / "c2.jsonl", {"_id": "d1", "text": "ok"}, {"_id": None, "text": "x"})
    with pytest.raises(DataError) as exc:
        list(read_passages(ids))
    assert located(exc, ids, 2, "_id").endswith("is null")
    qrels = write(tmp_path / "test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\thigh\n")
    with pytest.raises(DataError) as exc:
        read_qrels(qrels)
    assert "expected an integer, got 'high'" in located(exc, qrels, 3, "score")


def test_beir_directory_without_its_files(tmp_path: Path) -> None:
    with pytest.raises(XdrError, match=r"is a directory without corpus\.jsonl or MIRACL's"):
        read_passages(tmp_path)
    with pytest.raises(XdrError, match=r"is a directory without queries\.jsonl"):
        read_queries(tmp_path)


# ------------------------------------------------------------------------------- Pyserini, CSV, fields
def test_pyserini_jsonl() -> None:
    assert list(read_passages(FIX / "pyserini.jsonl")) == [
        Passage("p1", "Oslo is the capital of Norway."), Passage("p2", "Bergen is a city in Norway."),
    ]


def test_csv_with_a_field_mapping() -> None:
    passages = list(read_passages(FIX / "corpus.csv", fields={"id": "doc", "title": "heading", "text": "body"}))
    assert passages == [
        Passage("c1", "Oslo is the capital of Norway, and its largest city.", "Oslo"),
        Passage("c2", 'Bergen has "seven mountains".', "Bergen"),
    ]
    with pytest.raises(DataError) as exc:  # without the mapping, the header lacks xdr's names
        list(read_passages(FIX / "corpus.csv"))
    assert "missing column" in located(exc, FIX / "corpus.csv", 1, "id")


def test_any_column_names_in_jsonl_tsv_and_parquet(tmp_path: Path) -> None:
    fields = {"id": "pid", "text": "body", "title": "head"}
    rows = [{"pid": 7, "head": "Oslo", "body": "Oslo is in Norway."}, {"pid": "8", "head": None, "body": "Bergen."}]
    expected = [Passage("7", "Oslo is in Norway.", "Oslo"), Passage("8", "Bergen.", "")]
    assert list(read_passages(jsonl(tmp_path / "c.jsonl", *rows), fields=fields)) == expected
    pq.write_table(pa.Table.from_pylist([{**r, "pid": str(r["pid"])} for r in rows]), tmp_path / "c.parquet")
    assert list(read_passages(tmp_path / "c.parquet", fields=fields)) == expected
    tsv = write(tmp_path / "c.tsv", "pid\thead\tbody\n7\tOslo\tOslo is in Norway.\n8\t\tBergen.\n")
    assert list(read_passages(tsv, fields=fields)) == expected
    bad = jsonl(tmp_path / "bad.jsonl", rows[0], {"pid": "9", "body": ["not", "text"]})
    with pytest.raises(DataError) as exc:
        list(read_passages(bad, fields=fields))
    assert "expected a string, got list" in located(exc, bad, 2, "body")  # the file's name for the field


def test_query_fields_and_a_mapped_lang_column(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "q.jsonl", {"qid": "a", "question": "Wer bist du?", "language": "de", "gold": ["x"]})
    queries = list(read_queries(path, fields={"id": "qid", "text": "question", "lang": "language", "answers": "gold"}))
    assert queries == [Query("a", "de", "Wer bist du?", ("x",))]
    topics = write(tmp_path / "t.tsv", "qid\tquery\n1\tWer bist du?\n")  # a header: --fields reads it as one
    assert list(read_queries(topics, fields={"id": "qid", "text": "query"}, lang="de")) == [
        Query("1", "de", "Wer bist du?")
    ]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"body": "text"}, "unknown field 'body'; the fields here are id, text, title"),
        ({"text": " "}, "'text' must map to a column name"),
    ],
)
def test_bad_field_mappings(fields: dict[str, str], message: str) -> None:
    with pytest.raises(XdrError, match=message):
        read_passages(FIX / "pyserini.jsonl", fields=fields)


def test_fields_only_for_table_formats(tmp_path: Path) -> None:
    xor = jsonl(tmp_path / "x.jsonl", {"id": "1", "question": "q", "lang": "fi", "answers": []})
    with pytest.raises(XdrError, match="fields= maps columns of jsonl, tsv, csv"):
        read_queries(xor, fields={"id": "qid"})


# --------------------------------------------------------------------------------------------- MIRACL
def test_miracl_corpus_shards_topics_and_qrels(tmp_path: Path) -> None:
    assert list(read_passages(MIRACL / "docs-0.jsonl")) == MIRACL_PASSAGES[:2]
    assert list(read_passages(MIRACL)) == MIRACL_PASSAGES  # the shards of a fetched corpus, in order
    shards = tmp_path / "miracl-corpus-te"
    shards.mkdir()
    for i in (10, 2):  # numeric order, not string order: docs-2 before docs-10
        src = MIRACL / f"docs-{0 if i == 2 else 1}.jsonl"
        (shards / f"docs-{i}.jsonl.gz").write_bytes(gzip.compress(src.read_bytes()))
    assert list(read_passages(shards)) == MIRACL_PASSAGES
    shutil.copy(MIRACL / "docs-0.jsonl", shards / "docs-11.jsonl")
    with pytest.raises(XdrError, match="duplicate passage id '1#0' across its shards"):
        list(read_passages(shards))
    assert list(read_queries(TOPICS, lang="te")) == [
        Query("0", "te", "తెలంగాణ రాజధాని ఏది?"), Query("1", "te", '"విజయవాడ" ఏ నది ఒడ్డున ఉంది?'),
    ]
    assert read_qrels(MIRACL_QRELS) == {"0": {"1#0": 1, "1#1": 0}, "1": {"7#0": 1}}


def test_miracl_topics_bad_row(tmp_path: Path) -> None:
    path = write(tmp_path / "topics.tsv", "0\tఏది?\n1\tone\ttwo\n")
    with pytest.raises(DataError) as exc:
        list(read_queries(path, lang="te"))
    assert "expected 2 tab-separated columns (id, text), got 3" in located(exc, path, 2, None)


def test_miracl_in_the_registry() -> None:
    reg = load_registry()
    langs = ("ar", "bn", "de", "en", "es", "fa", "fi", "fr", "hi", "id", "ja", "ko", "ru", "sw", "te", "th", "yo", "zh")
    for lang in langs:
        corpus, topics = reg[f"miracl-corpus-{lang}"], reg[f"miracl-{lang}"]
        assert (corpus.kind, corpus.format, topics.kind, topics.format) == ("corpus", "miracl", "benchmark", "miracl")
        assert corpus.verified == len(corpus.files) and topics.verified == len(topics.files)
        assert corpus.source == "internet" and topics.source == "internet (login)"  # miracl/miracl is gated
        assert [f.path for f in corpus.files] == [f"docs-{i}.jsonl.gz" for i in range(len(corpus.files))]
    te = reg["miracl-corpus-te"].files[0]
    assert te.url == "https://huggingface.co/datasets/miracl/miracl-corpus/resolve/main/miracl-corpus-v1.0-te/docs-0.jsonl.gz"
    assert len(reg["miracl-corpus-en"].files) == 66
    assert [f.path for f in reg["miracl-te"].files] == [
        f"{what}.miracl-v1.0-te-{split}.tsv" for split in ("train", "dev") for what in ("topics", "qrels")
    ]
    assert reg["miracl-te"].files[2].url == (
        "https://huggingface.co/datasets/miracl/miracl/resolve/main/miracl-v1.0-te/topics/topics.miracl-v1.0-te-dev.tsv"
    )
    assert [f.path for f in reg["miracl-de"].files] == ["topics.miracl-v1.0-de-dev.tsv", "qrels.miracl-v1.0-de-dev.tsv"]


# --------------------------------------------------------------------------------- query languages
def test_queries_without_lang_are_detected_and_said_once() -> None:
    with pytest.warns(XdrWarning) as record:
        queries = list(read_queries(BEIR / "queries.jsonl"))
    assert [q.lang for q in queries] == ["de", "ja", "en"]
    messages = [str(w.message) for w in record if issubclass(w.category, XdrWarning)]
    assert len(messages) == 1
    assert "3 queries have no language; py3langid detected 3 languages (de 1, ja 1, en 1)" in messages[0]
    assert "--lang" in messages[0]


def test_lang_for_the_whole_file_says_nothing(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", XdrWarning)
        assert {q.lang for q in read_queries(BEIR / "queries.jsonl", lang="DE")} == {"de"}
        assert {q.lang for q in read_queries(BEIR / "queries.jsonl", lang="und")} == {UNDETERMINED}
        mixed = jsonl(tmp_path / "q.jsonl", {"id": "1", "lang": "fi", "text": "Mikä?"}, {"id": "2", "text": "Hi"})
        assert [q.lang for q in read_queries(mixed, lang="fi")] == ["fi", "fi"]


def test_a_row_language_that_contradicts_lang_is_an_error(tmp_path: Path) -> None:
    rows = ({"id": "1", "lang": "de", "text": "Wer?"}, {"id": "2", "lang": "fi", "text": "Kuka?"})
    path = jsonl(tmp_path / "q.jsonl", *rows)
    with pytest.raises(DataError) as exc:
        list(read_queries(path, lang="de"))
    assert "the row says 'fi' but lang='de'" in located(exc, path, 2, "lang")


def test_lang_is_checked_before_reading_and_only_where_it_applies(tmp_path: Path) -> None:
    with pytest.raises(XdrError, match="unknown language code 'jp'"):
        read_queries(BEIR / "queries.jsonl", lang="jp")
    xor = jsonl(tmp_path / "x.jsonl", {"id": "1", "question": "q", "lang": "fi", "answers": []})
    with pytest.raises(XdrError, match="records one per row"):
        read_queries(xor, lang="fi")


def test_detection_that_cannot_decide_is_und() -> None:
    assert detect_language("42?") == UNDETERMINED
    assert detect_language("Mikä on Suomen pääkaupunki?") == "fi"
    assert detect_language("తెలంగాణ రాజధాని ఏది?") == "te"


# ----------------------------------------------------------------------------------------- evaluate
def test_evaluate_with_qrels_and_queries_without_lang(tmp_path: Path) -> None:
    run = write(tmp_path / "run.trec", "q1 Q0 d1 1 3.0 t\nq1 Q0 d2 2 2.0 t\nq2 Q0 d1 1 3.0 t\nq2 Q0 d2 2 2.0 t\n"
                "q3 Q0 d3 1 1.0 t\n")
    with pytest.warns(XdrWarning, match="py3langid detected 3 languages"):
        report = evaluate_files(run, BEIR / "queries.jsonl", qrels_path=BEIR / "qrels" / "test.tsv",
                                measures=["RR@10"])
    assert report.per_language["RR@10"] == {"de": 100.0, "ja": 50.0, "en": 100.0}
    fixed = evaluate_files(run, BEIR / "queries.jsonl", qrels_path=BEIR / "qrels" / "test.tsv",
                           measures=["RR@10"], lang="und")
    assert fixed.per_language["RR@10"] == {"und": pytest.approx(250 / 3)}


def test_cli_evaluate_with_fields_and_without_lang(tmp_path: Path) -> None:
    queries = jsonl(tmp_path / "q.jsonl", {"qid": "0", "question": "తెలంగాణ రాజధాని ఏది?"},
                    {"qid": "1", "question": "విజయవాడ ఏ నది ఒడ్డున ఉంది?"})
    run = write(tmp_path / "run.trec", "0 Q0 1#0 1 2.0 t\n1 Q0 1#0 1 2.0 t\n1 Q0 7#0 2 1.0 t\n")
    args = [sys.executable, "-m", "xdr", "evaluate", str(run), "--queries", str(queries), "--qrels",
            str(MIRACL_QRELS), "--measures", "RR@10", "--fields", "id=qid,text=question", "--out", str(tmp_path / "e")]
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "py3langid detected 1 language (te 2)" in result.stderr  # said once, on one line
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    assert report["per_language"]["RR@10"] == {"te": 75.0}
    bad = subprocess.run([*args[:-2], "--out", str(tmp_path / "e2"), "--fields", "id"], cwd=ROOT,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "--fields: expected name=column pairs" in bad.stderr


# ------------------------------------------------------------------------------------------- ir_datasets
@pytest.fixture(scope="module")
def irds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Two tiny datasets registered in ir_datasets from local files, on its own classes: MIRACL-like
    Telugu (docs with titles, queries that declare their language) and one whose queries declare none."""
    home = tmp_path_factory.mktemp("irds-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("IR_DATASETS_HOME", str(home))
    ir_datasets = pytest.importorskip("ir_datasets")
    from ir_datasets.datasets.base import Dataset
    from ir_datasets.datasets.miracl import MiraclDoc
    from ir_datasets.formats import GenericDoc, JsonlDocs, TrecQrels, TsvDocs, TsvQueries
    from ir_datasets.util import LocalDownload

    prefix = "xdr-test"
    if f"{prefix}/te/dev" not in set(ir_datasets.registry):
        docs = JsonlDocs(
            [LocalDownload(MIRACL / "docs-0.jsonl"), LocalDownload(MIRACL / "docs-1.jsonl")], doc_cls=MiraclDoc,
            mapping={"doc_id": "docid", "title": "title", "text": "text"}, lang="te", docstore_path=str(home / "te"),
        )
        qrels = TrecQrels(LocalDownload(MIRACL_QRELS), {0: "not relevant", 1: "relevant"})
        queries = TsvQueries(LocalDownload(TOPICS), lang="te")
        ir_datasets.registry.register(f"{prefix}/te/dev", Dataset(docs, queries, qrels))
        plain = home / "plain.tsv"
        plain.write_text("a\tOslo is the capital of Norway.\n", encoding="utf-8")
        english = home / "topics-en.tsv"
        english.write_text("0\tWhat is the capital of Telangana?\n", encoding="utf-8")
        plain_docs, no_lang = TsvDocs(LocalDownload(plain), doc_cls=GenericDoc), TsvQueries(LocalDownload(english))
        ir_datasets.registry.register(f"{prefix}/clir", Dataset(plain_docs, no_lang))
    yield prefix
    mp.undo()


def test_irds_docs_queries_and_qrels(irds: str) -> None:
    source = f"irds:{irds}/te/dev"
    assert list(read_passages(source)) == MIRACL_PASSAGES
    with warnings.catch_warnings():
        warnings.simplefilter("error", XdrWarning)  # the dataset declares Telugu: nothing to detect
        queries = list(read_queries(source))
    assert queries == [Query("0", "te", "తెలంగాణ రాజధాని ఏది?"), Query("1", "te", '"విజయవాడ" ఏ నది ఒడ్డున ఉంది?')]
    assert read_qrels(source) == {"0": {"1#0": 1, "1#1": 0}, "1": {"7#0": 1}}


def test_irds_queries_without_a_declared_language_are_detected(irds: str) -> None:
    source = f"irds:{irds}/clir"
    assert list(read_passages(source)) == [Passage("a", "Oslo is the capital of Norway.")]  # no title field
    with pytest.warns(XdrWarning, match=f"irds:{irds}/clir: 1 queries have no language.*en 1"):
        assert [q.lang for q in read_queries(source)] == ["en"]
    assert [q.lang for q in read_queries(source, lang="en")] == ["en"]
    with pytest.raises(XdrError, match="this ir_datasets dataset has no qrels"):
        read_qrels(source)


def test_irds_errors(irds: str) -> None:
    with pytest.raises(XdrError, match="ir_datasets has no dataset 'no/such/thing'"):
        read_passages("irds:no/such/thing")
    with pytest.raises(XdrError, match="give a dataset id after 'irds:'"):
        read_queries("irds:")


def test_evaluate_reads_irds_queries_and_qrels(irds: str, tmp_path: Path) -> None:
    run = write(tmp_path / "run.trec", "0 Q0 1#0 1 2.0 t\n1 Q0 1#0 1 2.0 t\n1 Q0 7#0 2 1.0 t\n")
    source = f"irds:{irds}/te/dev"
    report = evaluate_files(run, source, qrels_path=source, measures=["RR@10"])
    assert report.per_language["RR@10"] == {"te": 75.0}


def test_cli_convert_beir_queries_with_lang(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from xdr.cli import app

    out = tmp_path / "q.jsonl"
    result = CliRunner().invoke(app, ["data", "convert", str(BEIR / "queries.jsonl"), str(out), "--kind", "queries",
                                      "--lang", "de"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["lang"] for line in out.read_text().splitlines()] == ["de", "de", "de"]
    corpus = tmp_path / "c.parquet"
    result = CliRunner().invoke(app, ["data", "convert", str(FIX / "corpus.csv"), str(corpus),
                                      "--fields", "id=doc,title=heading,text=body"])
    assert result.exit_code == 0, result.output
    assert [p.id for p in read_passages(corpus)] == ["c1", "c2"]
