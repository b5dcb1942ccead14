"""Importing the released xQG queries (ielab/xor-tydi-xqg-augmented JSONL) into generate shards."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from xdr.errors import DataError
from xdr.generate import RELEASED, generation_stats, ingest_xqg, read_generated

ROWS: list[dict[str, Any]] = [
    {
        "docid": "12",
        "text": "Lake Baikal is the deepest lake in the world.",
        "generated_queries": {
            "ja": ["世界で一番深い湖はどこですか？", "世界で一番深い湖はどこですか？"],
            "fi": ["Mikä on maailman syvin järvi?"],
        },
    },
    {
        "docid": 7,  # some dumps store numeric ids
        "text": "Honey bees perform the waggle dance.",
        "generated_queries": {"fi": ["Mitä mehiläiset tanssivat?", ""], "ja": ["ミツバチは何を踊りますか？"]},
    },
]


def write_jsonl(path: Path, rows: list[Any], blank_line: bool = True) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows]
    if blank_line:
        lines.insert(1, "")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def test_ingest_writes_generate_shards(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "xqg.jsonl.gz", ROWS)
    out = ingest_xqg(src, tmp_path / "out", shard_size=1)

    every = list(read_generated(out, kept_only=False))
    assert [(q.docid, q.lang, q.k, q.reason) for q in every] == [
        ("12", "fi", 0, None),
        ("12", "ja", 0, None),
        ("12", "ja", 1, "duplicate"),
        ("7", "fi", 0, None),
        ("7", "fi", 1, "empty"),
        ("7", "ja", 0, None),
    ]
    assert {(q.generator, q.seed) for q in every} == {(RELEASED, None)}
    assert len(list(read_generated(out))) == 4
    assert generation_stats(out)["ja"]["duplicate_rate"] == 1 / 3
    assert len(list(out.glob("part-*.parquet"))) == 2


def test_ingest_selects_and_orders_languages(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "xqg.jsonl", ROWS)
    out = ingest_xqg(src, tmp_path / "out", langs=["ja"], filters=None)
    keys = [(q.docid, q.lang, q.k) for q in read_generated(out)]
    assert keys == [("12", "ja", 0), ("12", "ja", 1), ("7", "ja", 0)]
    with pytest.raises(DataError) as e:
        ingest_xqg(src, tmp_path / "te", langs=["te"])
    assert (e.value.line, e.value.field) == (1, "generated_queries.te")


@pytest.mark.parametrize(
    ("row", "field", "problem"),
    [
        ("{not json", None, "not valid JSON"),
        ("[1, 2]", None, "JSON object"),
        ({"text": "t", "generated_queries": {}}, "docid", "missing"),
        ({"docid": "", "text": "t", "generated_queries": {}}, "docid", "missing"),
        ({"docid": "1", "text": 5, "generated_queries": {}}, "text", "not a string"),
        ({"docid": "1", "text": "t"}, "generated_queries", "missing"),
        ({"docid": "1", "generated_queries": ["q"]}, "generated_queries", "object"),
        ({"docid": "1", "generated_queries": {"jp": ["q"]}}, "generated_queries.jp", "unknown"),
        ({"docid": "1", "generated_queries": {"ja": "q"}}, "generated_queries.ja", "list of strings"),
        ({"docid": "1", "generated_queries": {"ja": [1]}}, "generated_queries.ja", "list of strings"),
    ],
)
def test_malformed_rows_name_file_line_and_field(
    tmp_path: Path, row: Any, field: str | None, problem: str
) -> None:
    src = write_jsonl(tmp_path / "bad.jsonl", [ROWS[0], row])  # the blank line makes the bad row line 3
    with pytest.raises(DataError, match=problem) as e:
        ingest_xqg(src, tmp_path / "out")
    assert (e.value.path, e.value.line, e.value.field) == (str(src), 3, field)
