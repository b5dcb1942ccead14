"""The data stage: every reader on hand-written fixtures and the real shared files, every error type with
its exact location, streaming, and atomic writers."""

from __future__ import annotations

import collections
import gzip
import itertools
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from xdr.data import (
    detect_format,
    read_passages,
    read_qrels,
    read_queries,
    read_question_translations,
    read_run,
    read_training,
    read_xquad_r,
    write_passages,
    write_qrels,
    write_queries,
    write_run,
)
from xdr.data._io import iter_json_array
from xdr.data.prepare import prepare
from xdr.data.schema import Passage, Query
from xdr.data.squad import read_squad_paragraphs
from xdr.data.swimir import read_swimir_passages
from xdr.data.xor import read_xor_wiki
from xdr.errors import DataError, XdrError

FIX = Path(__file__).parent / "fixtures" / "data"
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
XOR = SHARED / "xor-tydi"
XQUAD = SHARED / "xquad-r"
needs_xor = pytest.mark.skipif(not XOR.is_dir(), reason="shared XOR-TyDi data not present")
needs_xquad = pytest.mark.skipif(not XQUAD.is_dir(), reason="shared XQuAD-R data not present")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(path: Path, *rows: object) -> Path:
    return write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


# ------------------------------------------------------------------------------------------ detection
@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("corpus.jsonl", "jsonl"), ("corpus.tsv", "tsv"), ("wiki.tsv", "xor-wiki"), ("queries.tsv", "tsv"),
        ("queries.jsonl", "jsonl"),
        ("xor_questions.jsonl", "xor"), ("dpr.json", "dpr"), ("tevatron.jsonl", "tevatron"),
        ("swimir.jsonl", "swimir"), ("squad.json", "squad"),
    ],
)
def test_detect_format(name: str, fmt: str) -> None:
    assert detect_format(FIX / name) == fmt


def test_detect_format_parquet_and_unknown_suffix(tmp_path: Path) -> None:
    write_passages(tmp_path / "c.parquet", [Passage("a", "text")])
    assert detect_format(tmp_path / "c.parquet") == "parquet"
    swim = pa.table({k: ["x"] for k in ("_id", "lang", "code", "query", "title", "text")})
    pq.write_table(swim, tmp_path / "s.parquet")
    assert detect_format(tmp_path / "s.parquet") == "swimir"
    with pytest.raises(XdrError, match="cannot tell the format"):
        detect_format(write(tmp_path / "c.xml", "<doc/>\n"))


def test_reader_refuses_a_format_of_another_kind() -> None:
    with pytest.raises(XdrError, match="format 'dpr' does not hold passages"):
        read_passages(FIX / "dpr.json")
    with pytest.raises(XdrError, match="format 'xor' does not hold training examples"):
        read_training(FIX / "xor_questions.jsonl")


# ------------------------------------------------------------------------------------- generic formats
def test_generic_passages_jsonl_tsv() -> None:
    assert list(read_passages(FIX / "corpus.jsonl")) == [
        Passage("p1", "Oslo is the capital of Norway.", "Oslo"),
        Passage("p2", "Helsinki is the capital of Finland.", "Helsinki"),
        Passage("3", "A passage without a title and with an integer id.", ""),
    ]
    assert [p.title for p in read_passages(FIX / "corpus.tsv")] == ["Oslo", "Helsinki"]


def test_generic_queries_tsv_answers_are_a_json_list() -> None:
    qs = list(read_queries(FIX / "queries.tsv"))
    assert list(read_queries(FIX / "queries.jsonl")) == qs[:2]
    assert qs[0] == Query("q1", "fi", "Mikä on Suomen pääkaupunki?", ("Helsinki",))
    assert qs[1].answers == ()  # empty cell
    assert qs[2].answers == ("a|b", "c")  # '|' is just a character


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_writers_round_trip(tmp_path: Path, suffix: str) -> None:
    passages = list(read_passages(FIX / "corpus.jsonl"))
    queries = list(read_queries(FIX / "queries.tsv"))
    assert write_passages(tmp_path / f"c{suffix}", iter(passages), batch_rows=2) == 3
    assert write_queries(tmp_path / f"q{suffix}", iter(queries), batch_rows=2) == 3
    assert list(read_passages(tmp_path / f"c{suffix}")) == passages
    assert list(read_queries(tmp_path / f"q{suffix}")) == queries
    if suffix == ".parquet":
        assert pq.ParquetFile(tmp_path / f"c{suffix}").metadata.num_row_groups == 2  # written in batches


def test_writer_of_nothing_still_writes_a_schema(tmp_path: Path) -> None:
    assert write_queries(tmp_path / "q.parquet", []) == 0
    assert list(read_queries(tmp_path / "q.parquet")) == []


@pytest.mark.parametrize("name", ["c.tsv", "c.jsonl.gz", "c.csv"])
def test_writers_refuse_other_suffixes(tmp_path: Path, name: str) -> None:
    with pytest.raises(XdrError, match=r"\.jsonl.*\.parquet"):
        write_passages(tmp_path / name, [])
    assert not (tmp_path / name).exists()


# ---------------------------------------------------------------------------------------------- errors
def expect_error(
    exc: pytest.ExceptionInfo[DataError], path: Path, line: int | None, field: str | None
) -> str:
    """Check the error's location attributes and return its message."""
    err = exc.value
    assert (err.path, err.line, err.field) == (str(path), line, field)
    return str(err)


@pytest.mark.parametrize(
    ("rows", "line", "field", "message"),
    [
        ([{"id": "a", "title": "t"}], 1, "text", "field 'text': missing"),
        ([{"id": "a", "text": None}], 1, "text", "field 'text': is null"),
        ([{"id": "a", "text": 5}], 1, "text", "field 'text': expected a string, got number"),
        ([{"id": "a", "text": "x"}, {"id": " ", "text": "y"}], 2, "id", "field 'id': empty"),
        ([{"id": "a", "text": "   "}], 1, "text", "field 'text': empty"),
        ([{"id": True, "text": "x"}], 1, "id", "field 'id': expected a string, got boolean"),
        ([{"id": "a", "text": "x"}, {"id": "b", "text": "y"}, {"id": "a", "text": "z"}], 3, "id",
         "field 'id': duplicate id 'a'"),
        ([["a", "x"]], 1, None, "expected a JSON object, got list"),
    ],
)
def test_jsonl_passage_errors(tmp_path: Path, rows: list, line: int, field: str | None, message: str) -> None:
    path = jsonl(tmp_path / "c.jsonl", *rows)
    with pytest.raises(DataError) as exc:
        list(read_passages(path))
    assert expect_error(exc, path, line, field) == f"{path}:{line}: {message}"


def test_duplicates_can_be_allowed(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "c.jsonl", {"id": "a", "text": "x"}, {"id": "a", "text": "y"})
    assert len(list(read_passages(path, check_duplicates=False))) == 2


def test_bad_json_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "c.jsonl", '{"id": "a", "text": "x"}\n\n{"id": "b", "text": \n')
    with pytest.raises(DataError) as exc:
        list(read_passages(path))
    assert expect_error(exc, path, 3, None).startswith(f"{path}:3: bad JSON: Expecting value")


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        ({"id": "q", "lang": "jp", "text": "x"}, "lang", "unknown language code 'jp'"),
        ({"id": "q", "lang": "fi", "text": "x", "answers": "Helsinki"}, "answers",
         "expected a list of strings, got string"),
        ({"id": "q", "lang": "fi", "text": "x", "answers": ["a", 2]}, "answers[1]",
         "expected a string, got number"),
    ],
)
def test_query_errors(tmp_path: Path, row: dict, field: str, message: str) -> None:
    path = jsonl(tmp_path / "q.jsonl", row)
    with pytest.raises(DataError) as exc:
        list(read_queries(path))
    assert message in expect_error(exc, path, 1, field)


def test_tsv_errors(tmp_path: Path) -> None:
    path = write(tmp_path / "c.tsv", "id\ttitle\ttext\na\tT\tok\nb\tonly two\n")
    with pytest.raises(DataError) as exc:
        list(read_passages(path))
    assert expect_error(exc, path, 3, None) == (
        f"{path}:3: expected 3 tab-separated columns (id, title, text), got 2"
    )
    path = write(tmp_path / "h.tsv", "id\ttitle\tbody\na\tT\tok\n")
    with pytest.raises(DataError) as exc:
        list(read_passages(path))
    assert "missing column" in expect_error(exc, path, 1, "text")
    path = write(tmp_path / "q.tsv", "id\tlang\ttext\tanswers\nq\tfi\tx\tHelsinki\n")
    with pytest.raises(DataError) as exc:
        list(read_queries(path))
    assert "expected a JSON list of strings" in expect_error(exc, path, 2, "answers")


def test_tsv_line_numbers_count_quoted_newlines(tmp_path: Path) -> None:
    path = write(tmp_path / "c.tsv", 'id\ttext\na\t"two\nlines"\nb\t\n')
    with pytest.raises(DataError) as exc:
        list(read_passages(path))
    assert expect_error(exc, path, 4, "text").endswith("empty")


def test_parquet_errors_name_the_row(tmp_path: Path) -> None:
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["fine", ""]}), path)
    with pytest.raises(DataError) as exc:
        list(read_passages(path))
    assert expect_error(exc, path, 2, "text") == f"{path}: row 2: field 'text': empty"
    pq.write_table(pa.table({"id": ["a"]}), path)
    with pytest.raises(DataError, match="field 'text': missing column"):
        list(read_passages(path))
    write(path, "not parquet")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        list(read_passages(path, format="parquet"))


def test_invalid_utf8_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"id": "a", "text": "\xff"}\n')
    with pytest.raises(DataError, match="not valid UTF-8"):
        list(read_passages(path))
    with pytest.raises(XdrError, match="no such file"):
        list(read_passages(tmp_path / "missing.jsonl", format="jsonl"))
    truncated = tmp_path / "c.jsonl.gz"
    truncated.write_bytes(gzip.compress(b'{"id": "a", "text": "x"}\n' * 1000)[:-20])
    with pytest.raises(DataError, match="cannot read: Compressed file ended"):
        list(read_passages(truncated, check_duplicates=False))


# ---------------------------------------------------------------------------------------------- streaming
def test_reading_the_first_rows_does_not_read_the_rest(tmp_path: Path) -> None:
    n = 50_000
    path = tmp_path / "big.tsv"
    with open(path, "w", encoding="utf-8") as f:
        f.write("id\ttext\ttitle\n")
        for i in range(n):
            f.write(f"{i}\tpassage number {i}\tT{i}\n")
        f.write("broken row without tabs\n")
    first = list(itertools.islice(read_passages(path), 3))
    assert [p.id for p in first] == ["0", "1", "2"]
    with pytest.raises(DataError) as exc:
        for _ in read_passages(path):
            pass
    assert exc.value.line == n + 2


def test_readers_are_lazy_about_bad_rows(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "q.jsonl", {"id": "q1", "lang": "fi", "text": "ok"}, {"id": "q2", "lang": "xx"})
    assert next(read_queries(path)).id == "q1"


# ------------------------------------------------------------------------------------------------- XOR
def test_xor_questions_fixture() -> None:
    qs = list(read_queries(FIX / "xor_questions.jsonl"))
    assert qs[0] == Query("-101", "ar", "ما هي عاصمة النرويج؟", ("Oslo",))
    assert qs[1].answers == ("Helsinki", "Helsingfors")


def test_xor_wiki_column_order_and_quotes(tmp_path: Path) -> None:
    ps = list(read_passages(FIX / "wiki.tsv"))
    text = 'Aaron is a figure of the Hebrew Bible, called "the Levite" in Exodus.'
    assert ps[0] == Passage("1", text, "Aaron")
    assert ps[1].text == "Text with a 'single' quote inside."
    swapped = write(tmp_path / "w.tsv", "id\ttitle\ttext\n1\tT\tx\n")
    with pytest.raises(DataError, match="expected exactly"):
        list(read_xor_wiki(swapped))


@needs_xor
def test_real_xor_train_arabic_quirk() -> None:
    path = XOR / "xor_train_retrieve_eng_span.jsonl"
    raw = collections.Counter(json.loads(line)["lang"] for line in path.open(encoding="utf-8"))
    assert raw[" ar"] == 2574 and "ar" not in raw  # the upstream quirk is really there
    langs = collections.Counter(q.lang for q in read_queries(path))
    assert langs == {"ar": 2574, "bn": 2582, "fi": 2088, "ja": 2288, "ko": 2469, "ru": 1941, "te": 1308}


@needs_xor
def test_real_xor_dev() -> None:
    qs = list(read_queries(XOR / "xor_dev_retrieve_eng_span_v1_1.jsonl"))
    assert len(qs) == 2110 and all(q.answers for q in qs)
    assert collections.Counter(q.lang for q in qs) == {
        "ar": 350, "bn": 312, "fi": 360, "ja": 296, "ko": 299, "ru": 255, "te": 238,
    }


def test_translations_fixture_skips_blank_pairs(tmp_path: Path) -> None:
    pairs = list(read_question_translations(FIX / "translations", "fi"))
    assert [(p.source, p.english) for p in pairs] == [
        ("Mikä on Suomen pääkaupunki?", "What is the capital of Finland?"),
        ("Kuka kirjoitti Kalevalan?", "Who compiled the Kalevala?"),
    ]
    root = tmp_path / "t"
    shutil.copytree(FIX / "translations", root)
    write(root / "fi-en" / "en.txt", "one\ntwo\n")
    with pytest.raises(DataError) as exc:
        list(read_question_translations(root, "fi"))
    assert expect_error(exc, root / "fi-en" / "en.txt", 3, None).endswith("the files must be parallel")


@needs_xor
def test_real_translations() -> None:
    pairs = list(read_question_translations(XOR / "question_translations", "ar"))
    assert len(pairs) == 4649 - 1  # line 428 has an empty English side
    assert all(p.lang == "ar" and p.source.strip() and p.english.strip() for p in pairs)


# ------------------------------------------------------------------------------------- DPR and Tevatron
def test_dpr_fixture() -> None:
    examples = list(read_training(FIX / "dpr.json"))
    assert [e.query.id for e in examples] == ["0", "2"]  # element 1 has no positive
    first = examples[0]
    assert first.query == Query("0", "en", "capital of norway", ("Oslo",))
    assert first.positives == (Passage("p1", "Oslo is the capital of Norway.", "Oslo"),)
    assert first.negatives == (Passage("0-neg0", "Bergen is a city in Norway.", "Bergen"),)  # hard only
    assert examples[1].positives[0].id == "2-pos0"


def test_json_array_streams_with_ijson(tmp_path: Path) -> None:
    text = (FIX / "dpr.json").read_text(encoding="utf-8")
    records = list(iter_json_array(FIX / "dpr.json"))
    assert [r.obj for r in records] == json.loads(text)
    assert [r.prefix for r in records] == ["[0].", "[1].", "[2]."]  # located by element, not line
    numbers = write(tmp_path / "n.json", "[1234567, 2]")
    with pytest.raises(DataError, match=r"field '\[0\]': expected an object, got number"):
        list(iter_json_array(numbers))
    gz = tmp_path / "dpr.json.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    assert len(list(read_training(gz, lang="fi"))) == 2
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert len(list(read_training(bom))) == 2


@pytest.mark.parametrize(
    ("text", "field", "problem"),
    [
        ('[{"question": "a"},\n {"question": }]', "[1]", "bad JSON: parse error"),
        ('[{"question": "a"} {"question": "b"}]', "[1]", "bad JSON: parse error: after array element"),
        ('[{"question": "a"},\n', "[1]", "bad JSON: parse error: premature EOF"),
        ('{"question": "a"}', None, "expected a JSON array"),
        ('[{"question": "a"},' + " " * 70_000 + '{"question": "\udcff"}]', "[1]", "invalid bytes in UTF8"),
    ],
)
def test_json_array_errors(tmp_path: Path, text: str, field: str | None, problem: str) -> None:
    path = tmp_path / "d.json"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(DataError) as exc:
        list(iter_json_array(path))
    assert problem in expect_error(exc, path, None, field)


def test_dpr_ctx_errors_name_the_nested_field(tmp_path: Path) -> None:
    path = write(tmp_path / "d.json", '[\n{"question": "q", "positive_ctxs": [{"title": "t", "text": 1}]}\n]')
    with pytest.raises(DataError) as exc:
        list(read_training(path))
    assert "expected a string, got number" in expect_error(exc, path, None, "[0].positive_ctxs[0].text")


def test_tevatron_fixture() -> None:
    examples = list(read_training(FIX / "tevatron.jsonl", lang="en"))
    assert examples[0].query == Query("t1", "en", "capital of norway", ("Oslo",))
    assert examples[0].negatives[0].id == "p7"
    assert examples[1].query.lang == "fi"  # the row's own lang wins over the default


# ------------------------------------------------------------------------------------------------ SWIM-IR
def test_swimir_jsonl_and_parquet(tmp_path: Path) -> None:
    examples = list(read_training(FIX / "swimir.jsonl"))
    assert [e.query.id for e in examples] == ["w1-fi", "w1-ja", "w2-fi"]
    assert [e.query.lang for e in examples] == ["fi", "ja", "fi"]
    assert examples[1].positives == (Passage("w1", "Oslo is the capital of Norway.", "Oslo"),)
    assert [p.id for p in read_passages(FIX / "swimir.jsonl")] == ["w1", "w2"]
    rows = [json.loads(line) for line in (FIX / "swimir.jsonl").read_text(encoding="utf-8").splitlines()]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "train-00000-of-00001.parquet")
    assert list(read_training(tmp_path / "train-00000-of-00001.parquet")) == examples
    assert [p.id for p in read_swimir_passages(tmp_path / "train-00000-of-00001.parquet")] == ["w1", "w2"]


# ------------------------------------------------------------------------------------------------- SQuAD
def test_squad_paragraphs_and_training() -> None:
    ps = list(read_squad_paragraphs(FIX / "squad.json"))
    assert [p.id for p in ps] == ["000-00", "000-01", "001-00"]
    assert ps[0].title == "Nordic capitals"
    examples = list(read_training(FIX / "squad.json", lang="en"))
    assert [e.query.id for e in examples] == ["s1", "s2", "s4", "s5"]  # s3 is_impossible
    assert examples[0].query.answers == ("Oslo",)  # repeated annotator answers collapse
    assert examples[2].positives == (ps[1],)


def test_xquad_r_on_fixture_and_parallel_check(tmp_path: Path) -> None:
    shutil.copy(FIX / "squad.json", tmp_path / "en.json")
    doc = json.loads((FIX / "squad.json").read_text(encoding="utf-8"))
    doc["data"][0]["paragraphs"][0]["qas"][0]["question"] = "Mikä on Norjan pääkaupunki?"
    (tmp_path / "fi.json").write_text(json.dumps(doc), encoding="utf-8")
    bench = read_xquad_r(tmp_path, ["fi"])
    assert bench.queries["fi"][0] == Query("s1-fi", "fi", "Mikä on Norjan pääkaupunki?", ("Oslo",))
    assert bench.qrels["s5-fi"] == {"001-00": 1}
    moved = doc["data"][0]["paragraphs"][0]["qas"].pop(0)
    doc["data"][1]["paragraphs"][0]["qas"].append(moved)
    (tmp_path / "fi.json").write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(DataError) as exc:
        read_xquad_r(tmp_path, ["fi"])
    field = "data[1].paragraphs[0].qas[1].id"
    assert "must be parallel" in expect_error(exc, tmp_path / "fi.json", None, field)


@needs_xquad
def test_real_xquad_r() -> None:
    bench = read_xquad_r(XQUAD, ["de", "el", "es", "hi", "tr", "vi"])
    assert len(bench.corpus) == 240 and len({p.id for p in bench.corpus}) == 240
    text = {p.id: p.text for p in bench.corpus}
    for lang, queries in bench.queries.items():
        assert len(queries) == 1190, lang
        assert len({q.id for q in queries}) == 1190
        for q in queries:
            assert q.id.endswith(f"-{lang}") and q.lang == lang
            (pid,) = bench.qrels[q.id]  # exactly one relevant paragraph
            assert any(a in text[pid] for a in q.answers), q.id  # the English answer is in it
    assert len(bench.qrels) == 6 * 1190
    de = bench.queries["de"][0]
    assert de.id == "56beb4343aeaaa14008c925b-de" and de.answers == ("308",)


@needs_xquad
def test_prepare_xquad_r(tmp_path: Path) -> None:
    corpus, queries, qrels = prepare("xquad-r", XQUAD, tmp_path, langs=["de", "hi"])
    assert sum(1 for _ in read_passages(corpus)) == 240
    assert collections.Counter(q.lang for q in read_queries(queries)) == {"de": 1190, "hi": 1190}
    assert len(read_qrels(qrels)) == 2 * 1190
    assert all(p.title == "" for p in read_passages(corpus))  # the bare-paragraph pool of LAReQA
    titled, _, _ = prepare("xquad-r", XQUAD, tmp_path / "t", langs=["de"], titles=True)
    assert next(read_passages(titled)).title == "Super Bowl 50"


# -------------------------------------------------------------------------------------------------- TREC
def test_trec_fixtures_and_round_trip(tmp_path: Path) -> None:
    assert read_qrels(FIX / "qrels.txt") == {"q1": {"p1": 1, "p2": 0}, "q2": {"p2": 2}}
    run = read_run(FIX / "run.txt")
    assert run == {"q1": {"p1": 12.5, "p2": 3.25}, "q2": {"p2": 7.0}}
    write_run(tmp_path / "run.txt", {"q1": {"b": 0.1, "a": 0.1, "c": 0.3}}, tag="me5")
    lines = (tmp_path / "run.txt").read_text().splitlines()
    assert lines == ["q1 Q0 c 1 0.3 me5", "q1 Q0 a 2 0.1 me5", "q1 Q0 b 3 0.1 me5"]
    write_qrels(tmp_path / "qrels.txt", {"q1": {"p1": 1}})
    assert read_qrels(tmp_path / "qrels.txt") == {"q1": {"p1": 1}}


@pytest.mark.parametrize(
    ("reader", "text", "field", "message"),
    [
        (read_qrels, "q1 0 p1 1\nq1 0 p1\n", None, "expected 4 columns (qid iter docid rel), got 3"),
        (read_qrels, "q1 0 p1 1\nq1 0 p2 yes\n", "rel", "expected an integer, got 'yes'"),
        (read_qrels, "q1 0 p1 1\nq1 0 p1 0\n", "docid", "'p1' is judged twice for query 'q1'"),
        (read_run, "q Q0 d 1 1.0 t\nq Q0 e 2 nan t\n", "score", "expected a finite number, got 'nan'"),
        (read_run, "q Q0 d 1 1.0 t\nq Q0 e 2.5 0.5 t\n", "rank", "expected an integer, got '2.5'"),
        (read_run, "q Q0 d 1 1.0 t\nq Q0 e 2 0.5\n", None, "expected 6 columns"),
    ],
)
def test_trec_errors(tmp_path: Path, reader, text: str, field: str | None, message: str) -> None:
    path = write(tmp_path / "f.txt", text)
    with pytest.raises(DataError) as exc:
        reader(path)
    assert message in expect_error(exc, path, 2, field)


# ------------------------------------------------------------------------------------------------ atomic
def test_failed_writes_leave_nothing_behind(tmp_path: Path) -> None:
    def broken():
        yield Passage("a", "x")
        raise RuntimeError("upstream reader failed")

    for name in ("c.parquet", "c.jsonl"):
        with pytest.raises(RuntimeError):
            write_passages(tmp_path / name, broken(), batch_rows=1)
    write_run(tmp_path / "run.txt", {"q": {"d": 1.0}})
    with pytest.raises(XdrError, match="whitespace"):
        write_run(tmp_path / "run.txt", {"q": {"d": 2.0, "bad id": 1.0}})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.txt"]  # no partial file, no temp file
    assert read_run(tmp_path / "run.txt") == {"q": {"d": 1.0}}  # the old file is untouched
