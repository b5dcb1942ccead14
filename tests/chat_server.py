"""A fake OpenAI-compatible chat server on 127.0.0.1 for the LLM back ends' tests (generate and expand).

Canned chat completions; a keyword in the last message picks a failure mode (counted per mode), and
``answer`` (a function of the request body) gives the text of a good answer. :func:`running` starts one
on a free port and stops it, whatever the test did.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODES = ("MALFORMED", "FLAKY", "SLOW", "DOWN", "REFUSED", "GARBAGE", "BUSY")
BUSY_FAILURES, BUSY_RETRY_AFTER = 3, 0.3  # an overloaded server: 503 for its first requests, asking for a pause


def summary_answer(body: dict[str, Any]) -> str:
    """A summarize-then-ask answer that names the request's seed."""
    return f"Summary: s\nQuestion: Q{body['seed']}?"


class FakeChatServer(ThreadingHTTPServer):
    """Canned chat completions; the last message's text picks the behaviour, counted per behaviour."""

    daemon_threads = True

    def __init__(self, answer: Callable[[dict[str, Any]], str] = summary_answer) -> None:
        super().__init__(("127.0.0.1", 0), ChatHandler)
        self.answer = answer
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class ChatHandler(BaseHTTPRequestHandler):
    server: FakeChatServer

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = body["messages"][-1]["content"]
        mode = next((m for m in MODES if m in text), "OK")
        with self.server.lock:
            self.server.requests.append((dict(self.headers), body))
            self.server.hits[mode] += 1
            first = self.server.hits[mode] == 1
            busy = mode == "BUSY" and self.server.hits[mode] <= BUSY_FAILURES
        if mode == "SLOW" and first:
            time.sleep(1.0)  # past the client's timeout
        if (mode == "FLAKY" and first) or mode == "DOWN":
            return self._send(500, b"internal error")
        if mode == "REFUSED":
            return self._send(400, b'{"error": "bad model"}')
        if busy:
            return self._send(503, b"overloaded", {"Retry-After": str(BUSY_RETRY_AFTER)})
        if mode == "GARBAGE" and first:
            return self._send(200, b"<html>proxy</html>")
        content = "As an AI, here is a question" if mode == "MALFORMED" else self.server.answer(body)
        self._send(200, json.dumps({"choices": [{"message": {"content": content}}]}).encode())

    def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def running(answer: Callable[[dict[str, Any]], str] = summary_answer) -> Iterator[FakeChatServer]:
    """A server serving on a thread for the block; shut down and closed afterwards."""
    srv = FakeChatServer(answer)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)
