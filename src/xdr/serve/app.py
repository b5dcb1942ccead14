"""The HTTP layer: a FastAPI app over a :class:`~xdr.serve.service.Service` and its micro-batcher.

Endpoints follow Pyserini's REST API and vector databases: ``GET /search?q=&k=``, ``POST /search`` with a
batch, ``GET /passages/{id}``, ``/healthz``, ``/readyz``, ``/metrics`` (Prometheus) and the OpenAPI page at
``/docs``; ``/`` is the search page (``static/``). Every refusal is a JSON body ``{"error": "..."}`` that
says what is wrong: 400 for malformed JSON, 404 for an unknown passage, 422 for a bad value, 429 with
``Retry-After`` when the queue is full, 503 while shutting down. FastAPI, uvicorn and prometheus-client do
the work; the routes, the error shape and the metrics' names are ours.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from xdr.errors import XdrError
from xdr.serve.batcher import MicroBatcher, Overloaded
from xdr.serve.service import SearchRequest, ServeSettings, Service
from xdr.version import __version__

STATIC = Path(__file__).parent / "static"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class QueryItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    q: str
    lang: str | None = None


class SearchBody(BaseModel):
    """``POST /search``: a batch of questions (strings or ``{"q", "lang"}``) sharing the options."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    queries: list[str | QueryItem] = Field(min_length=1)
    k: int = 10
    nprobe: int | None = Field(default=None, ge=1)
    ef_search: int | None = Field(default=None, ge=1, alias="efSearch")
    rerank: bool = False
    beta: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    explain: bool = False


class Metrics:
    """The service's Prometheus metrics, in a registry of its own (one per app, so tests can build many)."""

    def __init__(self, depth: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("xdr_requests", "HTTP requests by route and status", ["route", "status"],
                                registry=self.registry)
        self.latency = Histogram("xdr_request_seconds", "HTTP request latency by route and status", ["route", "status"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("xdr_batch_size", "questions per encoder call", buckets=BATCH_BUCKETS,
                                    registry=self.registry)
        self.batch_seconds = Histogram("xdr_batch_seconds", "time of one batch (encode, search, texts)",
                                       buckets=LATENCY_BUCKETS, registry=self.registry)
        self.shed = Counter("xdr_shed", "requests refused because the queue was full", registry=self.registry)
        self.queue = Gauge("xdr_queue_depth", "questions waiting for a batch", registry=self.registry)
        self.queue.set_function(depth)

    def on_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)


class _Measure:
    """Counts and times every request by route and status, so a 429's own latency shows apart from a 200's.
    Plain ASGI rather than ``@app.middleware``, which adds a task and a response stream to every request."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), "500"

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = str(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", "other")  # the router records the matched route
            self.metrics.requests.labels(route, status).inc()
            self.metrics.latency.labels(route, status).observe(time.perf_counter() - start)


def _error(status: int, message: str, retry_after: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _validation_message(e: RequestValidationError) -> tuple[int, str]:
    """400 for a body that is not JSON, else 422 with each bad field named."""
    errors = e.errors()
    if any(err.get("type") == "json_invalid" for err in errors):
        return 400, "malformed JSON body: " + "; ".join(str(err.get("ctx", {}).get("error", err["msg"]))
                                                          for err in errors)
    parts = [".".join(str(x) for x in err["loc"] if x != "body") + f": {err['msg']}" for err in errors]
    return 422, "; ".join(parts)


def create_app(settings: ServeSettings, service: Service | None = None) -> FastAPI:
    """The app; the service (model, index, texts) loads at start-up unless one is given (tests, Ray)."""
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = service or await asyncio.to_thread(Service.load, settings)
        batcher: MicroBatcher[SearchRequest, dict[str, Any]] = MicroBatcher(
            svc.search_batch, settings.batch, on_batch=lambda n, s: state["metrics"].on_batch(n, s))
        state.update(service=svc, batcher=batcher)
        batcher.start()
        try:
            yield
        finally:  # uvicorn has finished the requests in flight; the queue is empty or drains here
            await batcher.stop()

    app = FastAPI(title="xdr search", version=__version__, lifespan=lifespan,
                  description="Cross-lingual dense retrieval: questions in any language, passages ranked.")
    metrics = state["metrics"] = Metrics(lambda: state["batcher"].depth if "batcher" in state else 0)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        return _error(*_validation_message(e))

    app.add_middleware(_Measure, metrics=metrics)

    async def answer(reqs: list[SearchRequest]) -> list[dict[str, Any]] | JSONResponse:
        svc: Service = state["service"]
        batcher: MicroBatcher[SearchRequest, dict[str, Any]] = state["batcher"]
        for r in reqs:
            if not r.text.strip():
                return _error(422, "q: the query is empty")
            if len(r.text) > settings.max_query_chars:
                return _error(422, f"q: the query has {len(r.text)} characters; the limit is "
                                   f"{settings.max_query_chars}")
            if r.k < 1:
                return _error(422, f"k must be at least 1, not {r.k}")
            try:
                svc.check(r)
            except XdrError as e:
                return _error(422, str(e))
        if batcher.depth + len(reqs) > settings.batch.max_queue:
            metrics.shed.inc()
            return _error(429, f"overloaded: {batcher.depth} questions are waiting; retry shortly", 1)
        try:
            return list(await asyncio.gather(*(batcher.submit(r) for r in reqs)))
        except Overloaded as e:
            metrics.shed.inc()
            status = 503 if batcher.stopping else 429
            return _error(status, f"overloaded: {e}; retry shortly", e.retry_after)

    @app.get("/search", summary="One question; GET /search?q=...&k=10")
    async def search_get(
        q: Annotated[str, Query(description="the question, any language")],
        k: Annotated[int, Query(description="passages to return")] = 10,
        lang: Annotated[str | None, Query(description="the question's language; detected when absent")] = None,
        nprobe: Annotated[int | None, Query(ge=1, description="IVF lists probed")] = None,
        ef_search: Annotated[int | None, Query(alias="efSearch", ge=1, description="HNSW beam width")] = None,
        rerank: Annotated[bool, Query(description="max-sim re-ranking (needs --store)")] = False,
        beta: Annotated[float | None, Query(ge=0, allow_inf_nan=False, description="max-sim weight")] = None,
        explain: Annotated[bool, Query(description="matching generated queries per hit")] = False,
    ) -> Any:
        out = await answer([SearchRequest(q, k, lang, nprobe, ef_search, rerank, beta, explain)])
        return out if isinstance(out, JSONResponse) else out[0]

    @app.post("/search", summary="A batch of questions with shared options")
    async def search_post(body: SearchBody) -> Any:
        if len(body.queries) > settings.max_batch_queries:
            return _error(422, f"queries: {len(body.queries)} in one request; the limit is "
                               f"{settings.max_batch_queries}")
        reqs = [SearchRequest(q if isinstance(q, str) else q.q, body.k, None if isinstance(q, str) else q.lang,
                              body.nprobe, body.ef_search, body.rerank, body.beta, body.explain)
                for q in body.queries]
        out = await answer(reqs)
        return out if isinstance(out, JSONResponse) else {"results": out}

    @app.get("/passages/{docid:path}", summary="One passage by id")
    async def passage(docid: str) -> Any:
        p = state["service"].texts.get(docid)
        if p is None:
            return _error(404, f"unknown passage id {docid!r}")
        return {"docid": p.id, "title": p.title, "text": p.text}

    @app.get("/healthz", summary="The process is up")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "pid": os.getpid()}

    @app.get("/readyz", summary="Model and index loaded, accepting questions")
    async def readyz() -> Any:
        batcher = state.get("batcher")
        if batcher is None or not batcher.running:
            return _error(503, "not ready: loading or shutting down", 5)
        return {"status": "ready", "queue": batcher.depth}

    @app.get("/info", summary="The index, model and settings served")
    async def info() -> dict[str, Any]:
        return state["service"].info()

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


GRACE_SECONDS = 30  # longest wait for requests in flight after SIGTERM


def run_uvicorn(settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve until SIGTERM or Ctrl-C; both finish the requests in flight before the process exits."""
    import uvicorn

    uvicorn.run(create_app(settings), host=host, port=port, timeout_graceful_shutdown=GRACE_SECONDS,
                log_level="info", access_log=False)
