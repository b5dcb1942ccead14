"""What the service tests share: a small corpus with generated queries, its three kinds of index, a server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from xdr.config import ModelSpec

PASSAGES = [
    ("p0", "Nile", "The Nile is the longest river in Africa and flows into the Mediterranean Sea."),
    ("p1", "Everest", "Mount Everest is the highest mountain on Earth, in the Himalayas."),
    ("p2", "Tokyo", "Tokyo is the capital of Japan and its largest city."),
    ("p3", "Moscow", "Moscow is the capital of Russia, on the Moskva river."),
    ("p4", "Pyramids", "The pyramids of Giza were built as tombs for the pharaohs of Egypt."),
    ("p5", "Photosynthesis", "Plants turn light, water and carbon dioxide into sugar by photosynthesis."),
    ("p6", "Moon", "The Moon orbits the Earth about once every twenty-seven days."),
    ("p7", "Coffee", "Coffee is brewed from roasted beans of the coffea plant."),
]
GENERATED = {
    "p0": {"de": ["Wie lang ist der Nil?", "Wohin fließt der Nil?"], "ja": ["ナイル川はどこに流れますか？"]},
    "p1": {"de": ["Wie hoch ist der Mount Everest?"], "ru": ["Какая гора самая высокая?"]},
    "p2": {"ja": ["日本の首都はどこですか？"]},
    "p3": {"ru": ["Какая столица России?", "На какой реке стоит Москва?"]},
    "p5": {"de": ["Was ist Photosynthese?"]},
}


@dataclass
class Corpus:
    corpus: Path
    generated: Path
    spec: ModelSpec
    plain: Path
    fused: Path
    multi: Path
    store: Path


def build_corpus(root: Path, encoder) -> Corpus:
    """The corpus, its generate artifact (ingested), and plain, xQG-fused and multi-vector indexes."""
    from xdr.augment import augment
    from xdr.data.schema import Passage
    from xdr.encode import encode_passages, encode_queries
    from xdr.generate.artifact import generated_as_queries
    from xdr.generate.ingest import ingest_xqg
    from xdr.index import build_index
    from xdr.maxsim import build_vector_store

    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": i, "title": t, "text": x}) + "\n" for i, t, x in PASSAGES))
    released = root / "xqg.jsonl"
    rows = [{"docid": i, "title": t, "text": x, "generated_queries": GENERATED.get(i, {})} for i, t, x in PASSAGES]
    released.write_text("".join(json.dumps(r) + "\n" for r in rows))
    gen = ingest_xqg(released, root / "gen", filters=None)
    passages = [Passage(i, x, t) for i, t, x in PASSAGES]
    p_dir = encode_passages(passages, encoder, root / "emb", progress=False)
    q_dir = encode_queries(list(generated_as_queries(gen)), encoder, root / "gen-emb", progress=False)
    store = build_vector_store(q_dir, root / "store", progress=False)
    fused_emb = augment(p_dir, q_dir, root / "fused-emb", progress=False)
    return Corpus(
        corpus, gen, encoder.spec,
        plain=build_index(p_dir, root / "plain", use_gpu=False, progress=False),
        fused=build_index(fused_emb, root / "fused", use_gpu=False, progress=False),
        multi=build_index(p_dir, root / "multi", use_gpu=False, progress=False, generated=store),
        store=store,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``xdr serve`` in a child process on 127.0.0.1; stopped by PID (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, timeout: float = 180) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        src = str(Path(__file__).resolve().parents[1] / "src")
        full_env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""),
                    "OMP_NUM_THREADS": "1", **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "xdr", "serve", *args, "--port", str(self.port)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=full_env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"xdr serve exited with {self.proc.returncode}:\n{self.proc.stdout.read()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise AssertionError("xdr serve did not become ready in time")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
