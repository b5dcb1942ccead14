"""Hard-negative mining: dense (HashEncoder through FAISS) and BM25, the false-negative filters, output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from test_encode import HashEncoder

from xdr.artifacts import sidecar_path
from xdr.data import read_training, write_passages
from xdr.data.schema import Passage, Query, TrainingExample
from xdr.encode import encode_passages
from xdr.errors import MismatchError, XdrError
from xdr.index import build_index
from xdr.train.mine import BM25Settings, MiningSettings, mine_hard_negatives

POS = Passage("pos", "Berlin is the capital city of Germany")
CORPUS = [
    POS,
    Passage("ans", "The capital city of Germany has been Berlin since 1990"),
    Passage("dup", "berlin is the capital city of germany"),  # the positive, lower-cased: the same vector
    Passage("n1", "capital city of France"),
    Passage("n2", "the city of Germany"),
    *[Passage(f"f{i}", f"unrelated text about cooking pasta number {i}") for i in range(12)],
]
BM25 = MiningSettings(method="bm25")
EXAMPLE = TrainingExample(Query("q0", "de", "capital city of Germany", ("Berlin",)), (POS,))


def mine(tmp_path: Path, examples: list[TrainingExample] | None = None, **kw: Any) -> tuple[list, dict]:
    """Mine with ``kw`` split into MiningSettings fields and the call's own keywords."""
    settings = {"depth": len(CORPUS), "n_negatives": None} | {k: v for k, v in kw.items()
                                                              if k in MiningSettings.model_fields}
    args: dict[str, Any] = {"encoder": HashEncoder(dim=64)} | {k: v for k, v in kw.items() if k not in settings}
    out = mine_hard_negatives(examples or [EXAMPLE], CORPUS, tmp_path / "mined.jsonl", MiningSettings(**settings),
                              **args)
    return list(read_training(out)), json.loads(sidecar_path(out).read_text())


def negative_ids(examples: list[TrainingExample]) -> list[str]:
    return [p.id for p in examples[0].negatives]


def test_dense_negatives_exclude_positives_and_answer_passages(tmp_path: Path) -> None:
    got, meta = mine(tmp_path)
    assert len(got) == 1
    ex = got[0]
    assert ex.query == EXAMPLE.query  # id, language and answers survive the round trip (format tevatron)
    assert ex.positives == (POS,)
    neg = negative_ids(got)
    assert "pos" not in neg and "ans" not in neg
    assert "dup" in neg and len(neg) == len(CORPUS) - 2
    counts = meta["counts"]
    assert counts["dropped"]["positive"] == 1 and counts["dropped"]["answer"] == 1
    assert counts["candidates"] == len(CORPUS) and counts["negatives"] == len(CORPUS) - 2
    assert meta["stage"] == "mine" and meta["params"]["method"] == "dense"
    assert meta["params"]["model"]["name"] == "fake" and meta["params"]["index_built"] is True
    assert meta["inputs"]["corpus"] == {"in_memory": len(CORPUS)}

    got, meta = mine(tmp_path, answer_check=False)
    assert "ans" in negative_ids(got) and meta["counts"]["dropped"]["answer"] == 0


@pytest.mark.parametrize("kw", [{"margin": 0.05}, {"relative_margin": 0.05}])
def test_margin_drops_near_duplicates_of_the_positive(tmp_path: Path, kw: dict[str, float]) -> None:
    got, meta = mine(tmp_path, **kw)
    neg = negative_ids(got)
    assert "dup" not in neg
    assert meta["counts"]["dropped"]["margin"] >= 1
    assert all(p.id.startswith(("n", "f")) for p in got[0].negatives)
    scores = [n["score"] for n in json.loads((tmp_path / "mined.jsonl").read_text())["negative_passages"]]
    assert scores == sorted(scores, reverse=True)


def test_skip_top_n_negatives_and_seeded_random_sampling(tmp_path: Path) -> None:
    full, _ = mine(tmp_path, answer_check=False)
    ranked = negative_ids(full)
    top, meta = mine(tmp_path, answer_check=False, skip_top=1, n_negatives=3)
    assert negative_ids(top) == ranked[1:4]
    assert meta["counts"]["dropped"]["skip_top"] == 1 and meta["counts"]["dropped"]["surplus"] == len(ranked) - 4

    a, _ = mine(tmp_path, sampling="random", n_negatives=4, seed=1)
    b, _ = mine(tmp_path, sampling="random", n_negatives=4, seed=1)
    assert negative_ids(a) == negative_ids(b)
    picked = negative_ids(a)
    assert len(picked) == 4 and picked == [i for i in ranked if i in picked]  # a sample, kept in rank order


def test_prebuilt_index_and_corpus_file_give_the_same_output(tmp_path: Path) -> None:
    enc = HashEncoder(dim=64)
    emb = encode_passages(CORPUS, enc, tmp_path / "emb", progress=False)
    index = build_index(emb, tmp_path / "index", progress=False)
    corpus_file = tmp_path / "corpus.jsonl"
    write_passages(corpus_file, CORPUS)
    ref, _ = mine(tmp_path / "a")
    out = mine_hard_negatives([EXAMPLE], corpus_file, tmp_path / "b.jsonl",
                              MiningSettings(depth=len(CORPUS), n_negatives=None), encoder=enc, index=index)
    assert list(read_training(out)) == ref
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["params"]["index_built"] is False and meta["inputs"]["corpus"]["bytes"] > 0
    assert enc.calls[-1][0] == "passage" and len(enc.calls) == 3  # corpus once, then query + positive

    with pytest.raises(MismatchError, match="another model"):
        mine_hard_negatives([EXAMPLE], corpus_file, tmp_path / "c.jsonl", encoder=HashEncoder(name="other"),
                            index=index)


def test_work_dir_keeps_the_index_for_reuse(tmp_path: Path) -> None:
    mine(tmp_path, work_dir=tmp_path / "work")
    assert (tmp_path / "work" / "index" / "_DONE").exists()
    enc = HashEncoder(dim=64)
    mine(tmp_path, encoder=enc, work_dir=tmp_path / "work")
    assert [kind for kind, _ in enc.calls] == ["query", "passage"]  # the corpus was not encoded again


def test_refusals(tmp_path: Path) -> None:
    with pytest.raises(XdrError, match="needs an encoder"):
        mine_hard_negatives([EXAMPLE], CORPUS, tmp_path / "x.jsonl")
    with pytest.raises(XdrError, match="no training examples"):
        mine_hard_negatives([TrainingExample(EXAMPLE.query, ())], CORPUS, tmp_path / "x.jsonl",
                            encoder=HashEncoder())
    with pytest.raises(XdrError, match="duplicate query id"):
        mine_hard_negatives([EXAMPLE, EXAMPLE], CORPUS, tmp_path / "x.jsonl", encoder=HashEncoder())
    with pytest.raises(ValidationError, match="method"):
        MiningSettings(method="splade")  # type: ignore[arg-type]
    assert not (tmp_path / "x.jsonl").exists()


EN_POS = Passage("eiffel", "The Eiffel Tower is a wrought iron lattice tower in Paris", "Eiffel Tower")
EN_CORPUS = [
    EN_POS,
    Passage("vegas", "A half-scale replica of the Eiffel Tower stands in Las Vegas", "Paris Las Vegas"),
    Passage("iron", "Wrought iron towers were built across Europe in the nineteenth century", "Iron"),
    Passage("banana", "Bananas are elongated edible fruits", "Banana"),
    Passage("penguin", "Penguins are flightless birds of the Southern Hemisphere", "Penguin"),
    Passage("volcano", "A volcano is a rupture in the crust of a planet", "Volcano"),
]


def test_bm25_returns_lexically_similar_negatives(tmp_path: Path) -> None:
    ex = TrainingExample(Query("e1", "en", "Which iron tower stands in Paris?", ("1889",)), (EN_POS,))
    out = mine_hard_negatives([ex], EN_CORPUS, tmp_path / "bm25.jsonl",
                              MiningSettings(method="bm25", depth=10, n_negatives=5))
    got = list(read_training(out))
    assert {p.id for p in got[0].negatives} == {"vegas", "iron"}
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["counts"]["dropped"]["no_match"] == 3 and meta["counts"]["dropped"]["positive"] == 1
    assert meta["params"]["bm25"] == {"k1": 0.9, "b": 0.4, "method": "lucene", "stopwords": "en",
                                      "stemmer": "english"}
    assert meta["counts"]["positive_score_unknown"] == 0


def test_bm25_with_translated_queries_and_margin(tmp_path: Path) -> None:
    ru = TrainingExample(Query("r1", "ru", "Какая железная башня стоит в Париже?"), (EN_POS,))
    out = mine_hard_negatives([ru], EN_CORPUS, tmp_path / "ru.jsonl", BM25)
    [got_ru] = read_training(out)
    assert got_ru.negatives == ()  # a Russian query shares no term with English passages
    out = mine_hard_negatives([ru], EN_CORPUS, tmp_path / "ru.jsonl", BM25,
                              search_texts={"r1": "Which iron tower stands in Paris?"})
    got = list(read_training(out))
    assert got[0].query.text == ru.query.text and got[0].query.lang == "ru"
    assert {p.id for p in got[0].negatives} == {"vegas", "iron"}

    out = mine_hard_negatives([ru], EN_CORPUS, tmp_path / "m.jsonl",
                              MiningSettings(method="bm25", margin=1e6, bm25=BM25Settings(stemmer=None)),
                              search_texts={"r1": "iron tower Paris"})
    meta = json.loads(sidecar_path(out).read_text())
    [got_m] = read_training(out)
    assert got_m.negatives == () and meta["counts"]["dropped"]["margin"] == 2
