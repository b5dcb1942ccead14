"""benchmarks/bench_llm_batching.py against a stub llama-server on 127.0.0.1: the bookkeeping, not the speed."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import load_script

from xdr.data.generic import write_passages
from xdr.data.schema import Passage

SLOTS = 2
DECODE_SECONDS = 0.1


class StubLlamaServer(ThreadingHTTPServer):
    """llama-server's routes the benchmark uses: /props, /slots (list, erase), /metrics, chat completions.

    A completion takes DECODE_SECONDS and answers from its seed alone, so both arms agree; the stub counts
    the requests in flight, the slots erased and the tokens (one prompt token per character, 5 generated).
    """

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), StubHandler)
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0
        self.prompt_tokens = self.generated_tokens = 0
        self.erased: list[int] = []
        self.pinned: list[int] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class StubHandler(BaseHTTPRequestHandler):
    server: StubLlamaServer

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/props":
            return self._json({"build_info": "stub", "model_path": "/m/qwen.gguf",
                               "default_generation_settings": {"n_ctx": 4096}})
        if path == "/slots":
            return self._json([{"id": i} for i in range(SLOTS)])
        if path == "/metrics":
            s = self.server
            text = (f"# TYPE llamacpp:prompt_tokens_total counter\nllamacpp:prompt_tokens_total {s.prompt_tokens}\n"
                    f"# TYPE llamacpp:tokens_predicted_total counter\n"
                    f"llamacpp:tokens_predicted_total {s.generated_tokens}\n")
            return self._send(text.encode(), "text/plain")
        self.send_error(404)

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if url.path.startswith("/slots/"):
            assert url.query == "action=erase"
            with self.server.lock:
                self.server.erased.append(int(url.path.rsplit("/", 1)[1]))
            return self._json({"n_erased": 0})
        s = self.server
        if "id_slot" in body:  # the benchmark's warm-up: one token, pinned to a slot
            with s.lock:
                s.pinned.append(body["id_slot"])
            return self._json({"choices": [{"message": {"content": "S"}}]})
        with s.lock:
            s.in_flight += 1
            s.max_in_flight = max(s.max_in_flight, s.in_flight)
            s.prompt_tokens += sum(len(m["content"]) for m in body["messages"])
            s.generated_tokens += 5
        time.sleep(DECODE_SECONDS)
        with s.lock:
            s.in_flight -= 1
        self._json({"choices": [{"message": {"content": f"Summary: s\nQuestion: Q{body['seed']}?"}}]})

    def _json(self, payload: Any) -> None:
        self._send(json.dumps(payload).encode(), "application/json")

    def _send(self, payload: bytes, kind: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[StubLlamaServer]:
    srv = StubLlamaServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script("benchmarks/bench_llm_batching.py", "bench_llm_batching")


def test_both_arms_same_requests_counted_and_compared(
    bench: ModuleType, server: StubLlamaServer, tmp_path: Path
) -> None:
    corpus = tmp_path / "corpus.jsonl"
    write_passages(corpus, [Passage(f"p{i}", f"Passage number {i} about bees.") for i in range(4)])
    out = tmp_path / "r.json"
    bench.main(["--base-url", server.url, "--corpus", str(corpus), "--passages", "2", "--langs", "de,es",
                "--n", "2", "--rounds", "2", "--out", str(out)])
    record = json.loads(out.read_text())
    result, workload = record["result"], record["workload"]
    assert workload["passages"] == ["p0", "p2"]  # spread over the corpus
    assert workload["concurrency"] == {"serial": 1, "batched": SLOTS} and record["server"]["slots"] == SLOTS
    for arm in ("serial", "batched"):
        assert result[arm]["generations"] == 2 * 2 * 2 * 2  # passages x langs x n x rounds
        assert result[arm]["generated_tokens"] == 5 * result[arm]["generations"]
        assert result[arm]["parsed"] == 1.0
    # the same prompts in both arms: the same prompt tokens, and the seed-determined answers all agree
    assert result["serial"]["prompt_tokens"] == result["batched"]["prompt_tokens"] > 0
    assert result["same_output_for_a_seed"] == {"identical": 16, "of": 16}
    assert record["answers"]["serial"] == record["answers"]["batched"]
    # every arm starts from emptied slots, each warmed by a pinned request; the batched arm overlaps
    assert sorted(server.erased) == sorted(server.pinned) == sorted(list(range(SLOTS)) * 4)
    assert server.max_in_flight == SLOTS
    rounds = [r["seconds"] for r in result["serial"]["rounds"]]
    assert len(rounds) == 2 and min(rounds) >= 8 * DECODE_SECONDS  # one at a time: no overlap
