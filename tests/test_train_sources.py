"""Training files: ``[LANG:]PATH`` parsing, language checks, format detection and provenance records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xdr.errors import XdrError
from xdr.train.sources import TrainingSource


@pytest.mark.parametrize(
    ("arg", "path", "lang"),
    [
        ("de:data/xquad.de.json", "data/xquad.de.json", "de"),
        ("DE:data/xquad.de.json", "data/xquad.de.json", "de"),  # codes are case-insensitive
        ("pt-BR:train.jsonl", "train.jsonl", "pt"),  # a region is dropped, as normalize_lang does
        ("data/train.jsonl", "data/train.jsonl", None),
        ("C:\\data\\train.json", "C:\\data\\train.json", None),  # a drive letter is no language
        ("c:/data/train.json", "c:/data/train.json", None),
        ("ja:C:\\data\\train.json", "C:\\data\\train.json", "ja"),
        ("runs/a:b.json", "runs/a:b.json", None),  # a colon inside a path
    ],
)
def test_parse_splits_a_language_prefix(arg: str, path: str, lang: str | None) -> None:
    source = TrainingSource.parse(arg)
    assert source == TrainingSource(Path(path), lang=lang)
    assert source.format is None


def test_parse_refuses_an_unknown_language_rather_than_a_missing_file() -> None:
    with pytest.raises(XdrError, match=r"^xx:train\.json: unknown language code 'xx'"):
        TrainingSource.parse("xx:train.json")
    with pytest.raises(XdrError, match="no path follows the language"):
        TrainingSource.parse("de:")


def test_the_record_checks_and_normalises_its_language() -> None:
    assert TrainingSource("a.json", lang=" JA ").lang == "ja"
    assert TrainingSource("a.json").path == Path("a.json")
    with pytest.raises(XdrError, match="unknown language code 'jp'"):
        TrainingSource("a.json", lang="jp")


def test_detected_reads_and_records_a_file(tmp_path: Path) -> None:
    with pytest.raises(XdrError, match="no such file"):
        TrainingSource(tmp_path / "missing.jsonl").detected()
    path = tmp_path / "train.jsonl"
    row = {"query_id": "q1", "query": "which fox?", "positive_passages": [{"docid": "p1", "title": "", "text": "fox"}],
           "negative_passages": []}
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    source = TrainingSource.parse(f"fi:{path}").detected()
    assert source.format == "tevatron"
    [example] = source.examples()
    assert (example.query.text, example.query.lang) == ("which fox?", "fi")
    record = source.record()
    assert record["path"] == str(path) and record["bytes"] == path.stat().st_size
    assert (record["format"], record["lang"]) == ("tevatron", "fi")
    given = TrainingSource(path, format="tevatron")
    assert given.detected() is given  # a given format is not detected again
