"""`xdr serve`: the API on plain, xQG-fused and multi-vector indexes, bad requests, load shedding, metrics,
explanations, the vector-space check, graceful SIGTERM, and the text store behind it."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from serve_fixtures import GENERATED, PASSAGES, Corpus, Server, build_corpus

from xdr.artifacts import read_meta
from xdr.config import ModelSpec
from xdr.data.schema import Passage
from xdr.data.textstore import TextStore, build_text_store, open_text_store
from xdr.errors import MismatchError, XdrError
from xdr.index import load_index
from xdr.maxsim import MaxSimReranker
from xdr.search import search
from xdr.serve import BatchSettings, MicroBatcher, Overloaded, ServeSettings, Service, create_app


@pytest.fixture(scope="module")
def encoder(tiny_bert_dir: Path):
    from xdr.models.encoder import Encoder

    return Encoder.load(ModelSpec(name="tiny", path=str(tiny_bert_dir)), device="cpu")


@pytest.fixture(scope="module")
def data(encoder, tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return build_corpus(tmp_path_factory.mktemp("serve"), encoder)


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDR_CACHE", str(tmp_path_factory.getbasetemp() / "serve-cache"))


def client(data: Corpus, encoder, index: Path | None = None, **options) -> TestClient:
    settings = ServeSettings(index=index or data.plain, corpus=data.corpus, **options)
    return TestClient(create_app(settings, Service(settings, encoder)))


@pytest.mark.parametrize("kind", ["plain", "fused", "multi"])
def test_search_answers_what_the_library_answers(data: Corpus, encoder, kind: str) -> None:
    index = getattr(data, kind)
    expected = search(index, ["Wie lang ist der Nil?", "Какая столица России?"], encoder, k=5)
    with client(data, encoder, index) as c:
        got = c.get("/search", params={"q": "Wie lang ist der Nil?", "k": 5}).json()
        post = c.post("/search", json={"queries": ["Wie lang ist der Nil?", {"q": "Какая столица России?",
                                                                               "lang": "ru"}], "k": 5}).json()
        info = c.get("/info").json()
    assert info["kind"] == {"plain": "plain", "fused": "xqg-fused", "multi": "multi-vector"}[kind]
    assert [(h["docid"], h["score"]) for h in got["hits"]] == [(d, round(s, 5)) for d, s in expected["q0"]]
    assert [h["rank"] for h in got["hits"]] == [1, 2, 3, 4, 5]
    texts = {i: (t, x) for i, t, x in PASSAGES}
    assert all((h["title"], h["text"]) == texts[h["docid"]] for h in got["hits"])
    assert got["lang"] == "de" and got["lang_detected"]
    second = post["results"][1]
    assert [h["docid"] for h in second["hits"]] == [d for d, _ in expected["q1"]]
    assert second["lang"] == "ru" and not second["lang_detected"]  # given, not detected


def test_max_sim_reranking_matches_the_reranker_and_beta_changes_it(data: Corpus, encoder) -> None:
    q = "Wie hoch ist der Mount Everest?"
    for beta in (0.5, 2.0):
        expected = search(data.plain, [q], encoder, k=4, reranker=MaxSimReranker(data.store, beta=beta, depth=8))
        with client(data, encoder, store=data.store, rerank_depth=8) as c:
            got = c.get("/search", params={"q": q, "k": 4, "rerank": "true", "beta": beta}).json()
        assert [(h["docid"], h["score"]) for h in got["hits"]] == [(d, round(s, 5)) for d, s in expected["q0"]]
        assert got["settings"]["rerank"] and got["settings"]["beta"] == beta


def test_hits_explained_by_their_generated_queries(data: Corpus, encoder) -> None:
    q = "Wohin fließt der Nil?"
    with client(data, encoder, data.fused, generated=data.generated) as c:
        assert c.get("/info").json()["explain"]
        got = c.get("/search", params={"q": q, "k": 8, "explain": "true"}).json()
        plain = c.get("/search", params={"q": q, "k": 8}).json()
    assert all("generated" not in h for h in plain["hits"])
    qvec = encoder.encode([q], "query")[0]
    by_doc = {h["docid"]: h["generated"] for h in got["hits"]}
    for docid, shown in by_doc.items():
        own = [(lang, t) for lang, ts in GENERATED.get(docid, {}).items() for t in ts]
        assert len(shown) == min(3, len(own))
        assert {(g["lang"], g["query"]) for g in shown} <= set(own)
        scores = [g["score"] for g in shown]
        assert scores == sorted(scores, reverse=True)
        for g in shown:
            assert g["score"] == pytest.approx(float(encoder.encode([g["query"]], "query")[0] @ qvec), abs=1e-3)
    assert by_doc["p0"][0]["query"] == q  # the passage's own generated query is the question: best, score ~1


@pytest.mark.parametrize(("params", "status", "message"), [
    ({"q": "", "k": 3}, 422, "query is empty"),
    ({"q": "   ", "k": 3}, 422, "query is empty"),
    ({"k": 3}, 422, "q: Field required"),
    ({"q": "Nil", "k": 0}, 422, "k must be at least 1"),
    ({"q": "Nil", "k": 101}, 422, "at most 100"),
    ({"q": "Nil", "k": "many"}, 422, "k: Input should be a valid integer"),
    ({"q": "x" * 1001}, 422, "the limit is 1000"),
    ({"q": "Nil", "nprobe": 4}, 422, "nprobe applies to IVF indexes"),
    ({"q": "Nil", "efSearch": 4}, 422, "efSearch applies to HNSW indexes"),
    ({"q": "Nil", "rerank": "true"}, 422, "needs a max-sim store"),
    ({"q": "Nil", "explain": "true"}, 422, "needs the generated queries"),
    ({"q": "Nil", "beta": "nan"}, 422, "beta"),
])
def test_bad_requests_get_a_json_error_that_says_what_is_wrong(
    data: Corpus, encoder, params: dict, status: int, message: str
) -> None:
    with client(data, encoder) as c:
        r = c.get("/search", params=params)
    assert r.status_code == status
    assert message in r.json()["error"]


def test_bad_bodies_unknown_passages_and_the_passage_endpoint(data: Corpus, encoder) -> None:
    with client(data, encoder, max_batch_queries=2) as c:
        bad_json = c.post("/search", content=b'{"queries": [', headers={"content-type": "application/json"})
        assert bad_json.status_code == 400 and "malformed JSON" in bad_json.json()["error"]
        extra = c.post("/search", json={"queries": ["a"], "kk": 3})
        assert extra.status_code == 422 and "kk" in extra.json()["error"]
        empty = c.post("/search", json={"queries": []})
        assert empty.status_code == 422 and "queries" in empty.json()["error"]
        assert c.post("/search", json={"queries": ["a", "b", "c"]}).status_code == 422  # over max_batch_queries
        assert c.post("/search", json={"queries": ["a", ""]}).json()["error"] == "q: the query is empty"
        missing = c.get("/passages/nope")
        assert missing.status_code == 404 and missing.json()["error"] == "unknown passage id 'nope'"
        assert c.get("/passages/p2").json() == {"docid": "p2", "title": "Tokyo", "text": PASSAGES[2][2]}
        assert c.get("/healthz").json()["status"] == "ok"
        assert c.get("/readyz").status_code == 200
        assert "/search" in c.get("/openapi.json").json()["paths"]
        assert c.get("/").headers["content-type"].startswith("text/html")


def test_metrics_count_requests_latency_and_batch_sizes(data: Corpus, encoder) -> None:
    with client(data, encoder) as c:
        c.get("/search", params={"q": "Nil"})
        c.post("/search", json={"queries": ["a", "b", "c"]})
        c.get("/search", params={"q": ""})
        text = c.get("/metrics").text
    assert 'xdr_requests_total{route="/search",status="200"} 2.0' in text
    assert 'xdr_requests_total{route="/search",status="422"} 1.0' in text
    assert 'xdr_request_seconds_count{route="/search",status="200"} 2.0' in text
    assert "xdr_batch_size_count 2.0" in text and "xdr_batch_size_sum 4.0" in text  # 1 + 3 questions
    assert "xdr_queue_depth 0.0" in text


def test_the_batcher_gathers_concurrent_requests_into_one_call() -> None:
    calls: list[int] = []

    def fn(items: list[int]) -> list[int]:
        calls.append(len(items))
        return [i * 10 for i in items]

    async def go() -> list[int]:
        b = MicroBatcher(fn, BatchSettings(max_batch=8, max_wait_ms=50, max_queue=100))
        b.start()
        out = await asyncio.gather(*(b.submit(i) for i in range(20)))
        await b.stop()
        return list(out)

    assert asyncio.run(go()) == [i * 10 for i in range(20)]
    assert calls == [8, 8, 4]


def test_a_full_queue_is_refused_at_once_and_errors_reach_every_caller() -> None:
    gate = threading.Event()

    def slow(items: list[int]) -> list[int]:
        gate.wait(5)
        if 13 in items:
            raise ValueError("bad item")
        return items

    async def go() -> None:
        b = MicroBatcher(slow, BatchSettings(max_batch=1, max_wait_ms=0, max_queue=2))
        b.start()
        first = asyncio.ensure_future(b.submit(1))  # taken by the worker
        await asyncio.sleep(0.05)
        queued = [asyncio.ensure_future(b.submit(i)) for i in (2, 3)]
        await asyncio.sleep(0.05)
        start = time.perf_counter()
        with pytest.raises(Overloaded):
            await b.submit(4)
        assert time.perf_counter() - start < 0.05
        gate.set()
        assert [await first, *[await q for q in queued]] == [1, 2, 3]
        with pytest.raises(ValueError, match="bad item"):
            await b.submit(13)
        await b.stop()
        with pytest.raises(Overloaded, match="shutting down"):
            await b.submit(5)

    asyncio.run(go())


def test_overload_is_shed_with_429_and_retry_after(data: Corpus, encoder) -> None:
    class Slow:
        spec, dim = encoder.spec, encoder.dim

        def encode(self, texts, kind, **kw):
            time.sleep(0.3)
            return encoder.encode(texts, kind, **kw)

    settings = ServeSettings(index=data.plain, corpus=data.corpus,
                             batch=BatchSettings(max_batch=2, max_wait_ms=0, max_queue=3))
    app = create_app(settings, Service(settings, Slow()))

    async def go() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                return await asyncio.gather(*(c.get("/search", params={"q": f"Nil {i}"}) for i in range(12)))

    start = time.perf_counter()
    responses = asyncio.run(go())
    codes = [r.status_code for r in responses]
    assert set(codes) == {200, 429} and codes.count(200) >= 3
    shed = [r for r in responses if r.status_code == 429]
    assert all(r.headers["Retry-After"] == "1" and "overloaded" in r.json()["error"] for r in shed)
    assert time.perf_counter() - start < 6  # shed at once, not queued behind the slow encoder


def test_a_query_encoder_from_another_space_is_refused(data: Corpus, encoder, tiny_bert_dir: Path) -> None:
    from xdr.models.encoder import Encoder

    other = Encoder.load(ModelSpec(name="other", path=str(tiny_bert_dir), fingerprint="x"), device="cpu")
    with pytest.raises(MismatchError, match="index vs query encoder"):
        Service(ServeSettings(index=data.plain, corpus=data.corpus), other)
    with pytest.raises(XdrError, match="not an index"):
        Service.load(ServeSettings(index=data.corpus.parent, corpus=data.corpus))


def test_text_store_looks_up_by_id_refuses_duplicates_and_is_cached(tmp_path: Path) -> None:
    ps = [Passage(f"d{i}", f"text {i}", f"title {i}") for i in range(25_000)]
    path = build_text_store(ps, tmp_path / "t.sqlite", generated=[("d1", "de", "Frage"), ("d1", "ja", "質問")],
                            progress=False)
    store = TextStore(path)
    assert len(store) == 25_000 and store.get("d24999") == ps[24999] and store.get("x") is None
    assert store.passages(["d3", "nope", "d3", "d7"]) == {"d3": ps[3], "d7": ps[7]}
    assert store.generated("d1") == [("de", "Frage"), ("ja", "質問")] and store.generated("d2") == []
    with pytest.raises(XdrError, match="duplicate passage id 'd9'"):  # across chunks of 10k rows
        build_text_store([*ps[:10_005], ps[9]], tmp_path / "dup.sqlite", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.sqlite"]  # nothing half-written left
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"id": "a", "text": "x"}\n')
    built: list[int] = []

    def read() -> list[Passage]:
        built.append(1)
        return [Passage("a", "x")]

    for _ in range(2):
        assert open_text_store(corpus, read, cache_dir=tmp_path / "cache", progress=False).get("a") == Passage("a", "x")
    assert built == [1]  # the second open used the cached store
    corpus.write_text('{"id": "a", "text": "y"}\n')
    open_text_store(corpus, read, cache_dir=tmp_path / "cache", progress=False)
    assert built == [1, 1]  # a changed corpus gets a new store


def test_sigterm_finishes_the_request_in_flight(data: Corpus) -> None:
    args = [str(data.plain), "--corpus", str(data.corpus), "--max-wait-ms", "2500", "--max-batch", "64"]
    with Server(args) as server:
        result: dict[str, httpx.Response] = {}
        t = threading.Thread(target=lambda: result.update(r=httpx.get(f"{server.url}/search",
                                                                       params={"q": "Nil"}, timeout=30)))
        t.start()
        time.sleep(0.8)  # the request waits in the batcher for more questions
        code = server.stop()
        t.join(30)
        log = server.proc.stdout.read()
    assert result["r"].status_code == 200 and result["r"].json()["hits"]
    # uvicorn re-raises the signal once it has shut down cleanly, so the status is SIGTERM's
    assert code in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in log


def test_search_knobs_reach_the_index_and_are_reported(data: Corpus, encoder, tmp_path: Path) -> None:
    from xdr.index import build_index

    hnsw = build_index(Path(read_meta(data.plain)["params"]["embeddings"]["path"]), tmp_path / "hnsw", "HNSW8",
                       use_gpu=False, progress=False)
    q = "Какая столица России?"
    expected = search(load_index(hnsw, ef_search=2, use_gpu=False), [q], encoder, k=8)
    with client(data, encoder, hnsw) as c:
        default = c.get("/search", params={"q": q, "k": 8}).json()
        narrow = c.get("/search", params={"q": q, "k": 8, "efSearch": 2}).json()
        again = c.get("/search", params={"q": q, "k": 8}).json()
        assert c.get("/search", params={"q": q, "nprobe": 2}).status_code == 422  # no IVF lists here
    assert default["settings"]["efSearch"] == 128 and narrow["settings"]["efSearch"] == 2
    assert [(h["docid"], h["score"]) for h in narrow["hits"]] == [(d, round(s, 5)) for d, s in expected["q0"]]
    assert again["hits"] == default["hits"] and again["settings"]["efSearch"] == 128  # the default is restored
