"""Load on `xdr serve`: micro-batching against one encoder call per request, in the same run, on 127.0.0.1.

Starts `xdr serve` on the demo index (me5-small over examples/demo; `make demo` builds it) twice, as child
processes with ``--threads`` torch threads: one micro-batching (``--max-batch 32 --max-wait-ms 5``) and one
with ``--max-batch 1`` (each request encoded alone). An asyncio + httpx load generator sends a fixed number
of GET /search requests (the demo's 72 questions in 7 languages, cycled) from 1, 8, 32 and 64 concurrent
clients to each in turn, level by level, so that a change in the machine's load hits both alike, and
reports throughput and p50/p95/p99 latency. Then an overload check: 128 clients against a queue of 8, where
every answer must be 200 or a quick 429/503, with no timeout and a service still ready afterwards.

Targets: at 32 clients micro-batching gives >= 3x the throughput of per-request encoding; p99 under 3x the
single-client p50; overload answered with 429/503 quickly, never a timeout or a crash. Two bounds are
measured in the same run to read the first two against: the encoder's own gain from batching on this
device (32 questions in one call against one call each, in-process, the service's threads), which caps
the speedup; and Little's law (32 clients always waiting wait 32 / throughput on average), which says
what throughput the p99 target needs. Writes
benchmarks/results/serve_load_cpu.json with the machine and its load; exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import torch
from prometheus_client.parser import text_string_to_metric_families

from xdr.models.encoder import Encoder
from xdr.models.registry import resolve_spec
from xdr.runtime import machine_info

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = (1, 8, 32, 64)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: argparse.Namespace, *options: str) -> tuple[subprocess.Popen[bytes], str]:
    """`xdr serve` with ``options`` in a child process; returns it and its URL once it is ready."""
    port = _port()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "xdr", "serve", str(args.index), "--corpus", str(args.corpus), "--port", str(port),
           "--texts-cache", str(args.work / "texts"), *options]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"xdr serve exited with {proc.returncode}: {shlex.join(cmd)}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("xdr serve did not become ready in 300 s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def load(url: str, questions: list[str], clients: int, requests: int, timeout: float) -> dict[str, Any]:
    """``requests`` GET /search from ``clients`` concurrent clients; latencies of each status."""
    todo = itertools.count()
    lat: dict[str, list[float]] = {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(c: httpx.AsyncClient) -> None:
        while (i := next(todo)) < requests:
            t = time.perf_counter()
            try:
                r = await c.get("/search", params={"q": questions[i % len(questions)], "k": 10})
                key = str(r.status_code)
            except httpx.TimeoutException:
                key = "timeout"
            except httpx.TransportError:
                key = "connection error"
            lat.setdefault(key, []).append(time.perf_counter() - t)

    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as c:
        await c.get("/search", params={"q": "warm-up", "k": 10})
        start = time.perf_counter()
        await asyncio.gather(*(client(c) for _ in range(clients)))
        elapsed = time.perf_counter() - start
    ok = sorted(lat.get("200", []))
    out: dict[str, Any] = {"clients": clients, "requests": requests, "seconds": round(elapsed, 3),
                           "status": {k: len(v) for k, v in sorted(lat.items())},
                           "throughput_rps": round(len(ok) / elapsed, 2)}
    if ok:
        q = statistics.quantiles(ok, n=100, method="inclusive")
        out |= {"p50_ms": round(q[49] * 1000, 1), "p95_ms": round(q[94] * 1000, 1), "p99_ms": round(q[98] * 1000, 1)}
    shed = sorted(lat.get("429", []) + lat.get("503", []))
    if shed:
        q = statistics.quantiles(shed, n=100, method="inclusive")
        out |= {"shed_p50_ms": round(q[49] * 1000, 1), "shed_p99_ms": round(q[98] * 1000, 1)}
    return out


def batch_sizes(url: str) -> float | None:
    """Mean questions per encoder call since the service started (all levels so far), from its metrics."""
    text = httpx.get(f"{url}/metrics").text
    vals = {line.split()[0]: float(line.split()[1]) for line in text.splitlines() if line.startswith("xdr_batch_size_")}
    n = vals.get("xdr_batch_size_count", 0)
    return round(vals["xdr_batch_size_sum"] / n, 2) if n else None


def shed_within(url: str, seconds: float = 0.25) -> float | None:
    """Share of the 429s the service itself answered within ``seconds`` (its latency histogram, server side,
    apart from the load generator's own waiting)."""
    samples = [x for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text)
               if family.name == "xdr_request_seconds" for x in family.samples
               if x.labels.get("route") == "/search" and x.labels.get("status") == "429"]
    total = next((x.value for x in samples if x.name.endswith("_count")), 0)
    within = next((x.value for x in samples if x.name.endswith("_bucket") and float(x.labels["le"]) == seconds), 0)
    return round(within / total, 4) if total else None


def encoder_ceiling(questions: list[str], threads: int, size: int = 32, rounds: int = 3) -> dict[str, float]:
    """What batching can save at most on this device: me5-small encoding ``size`` questions one call each
    against one call for all, in this process with the service's torch threads (best of ``rounds``)."""
    torch.set_num_threads(threads)
    enc = Encoder.load(resolve_spec("me5-small"))
    qs = questions[:size]
    enc.encode(qs, "query")  # warm-up

    def best(fn: Any) -> float:
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    alone = best(lambda: [enc.encode([q], "query") for q in qs])
    together = best(lambda: enc.encode(qs, "query"))
    return {"questions": len(qs), "one_call_each_ms_per_question": round(alone / len(qs) * 1000, 2),
            "one_call_ms_per_question": round(together / len(qs) * 1000, 2), "gain": round(alone / together, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", type=Path, default=ROOT / "runs" / "demo" / "index")
    ap.add_argument("--corpus", type=Path, default=ROOT / "examples" / "demo" / "corpus.jsonl")
    ap.add_argument("--queries", type=Path, default=ROOT / "examples" / "demo" / "queries.jsonl")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-serve")
    ap.add_argument("--requests", type=int, default=96, help="requests per concurrency level")
    ap.add_argument("--single-requests", type=int, default=12, help="requests of the single client")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the service")
    ap.add_argument("--timeout", type=float, default=30.0, help="client timeout per request, seconds")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve_load_cpu.json")
    a = ap.parse_args()
    if not (a.index / "_DONE").exists():
        raise SystemExit(f"{a.index}: no finished index; run `make demo` first")
    questions = [json.loads(line)["text"] for line in a.queries.read_text(encoding="utf-8").splitlines() if line]
    modes = {"micro_batching": ["--max-batch", "32", "--max-wait-ms", "5", "--max-queue", "256"],
             "per_request": ["--max-batch", "1", "--max-wait-ms", "0", "--max-queue", "256"]}
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    ceiling = encoder_ceiling(questions, a.threads)
    print("encoder", json.dumps(ceiling), flush=True)
    servers = {mode: start(a, *options) for mode, options in modes.items()}
    try:
        for clients in CLIENTS:
            for mode, (_, url) in servers.items():
                n = a.single_requests if clients == 1 else a.requests
                r = asyncio.run(load(url, questions, clients, n, a.timeout))
                r["mean_batch"] = batch_sizes(url)
                runs[mode].append(r)
                print(mode, json.dumps(r), flush=True)
    finally:
        for proc, _ in servers.values():
            stop(proc)
    proc, url = start(a, "--max-batch", "32", "--max-wait-ms", "5", "--max-queue", "8")
    try:
        overload = asyncio.run(load(url, questions, 128, 384, a.timeout))
        overload["ready_after"] = httpx.get(f"{url}/readyz", timeout=10).status_code == 200
        overload["server_shed_within_250ms"] = shed_within(url)
    finally:
        stop(proc)
    overload["exit_status"] = proc.returncode
    print("overload", json.dumps(overload), flush=True)

    at = {m: {r["clients"]: r for r in rs} for m, rs in runs.items()}
    speedup = at["micro_batching"][32]["throughput_rps"] / at["per_request"][32]["throughput_rps"]
    single_p50 = at["micro_batching"][1]["p50_ms"]
    p99_ratio = at["micro_batching"][32]["p99_ms"] / single_p50
    # Little's law: 32 clients always waiting means a mean latency of 32 / throughput, whatever the order.
    mean_floor = 32 / at["micro_batching"][32]["throughput_rps"] * 1000
    bad = {k: v for k, v in overload["status"].items() if k not in ("200", "429", "503")}
    targets = {
        "speedup_at_32_clients": {"value": round(speedup, 2), "target": ">= 3", "met": speedup >= 3},
        "p99_at_32_over_single_p50": {"value": round(p99_ratio, 2), "target": "< 3", "met": p99_ratio < 3},
        "overload_only_200_429_503": {"value": overload["status"], "met": not bad and overload["ready_after"]},
        "overload_shed_p99_ms": {"value": overload.get("shed_p99_ms"), "target": "< 250",
                                 "met": overload.get("shed_p99_ms", 0) < 250},
    }
    result = {
        "benchmark": "serve_load",
        "command": shlex.join(["python", "benchmarks/bench_serve_load.py", *sys.argv[1:]]),
        "index": str(a.index), "model": "me5-small", "service_threads": a.threads,
        "encoder_batching_gain": ceiling,
        "bounds": {"speedup_ceiling": ceiling["gain"],
                   "mean_latency_at_32_clients_ms": round(mean_floor, 1),
                   "mean_latency_at_32_over_single_p50": round(mean_floor / single_p50, 2),
                   "throughput_for_p99_target_rps": round(32 / (3 * single_p50 / 1000), 1)},
        "runs": runs, "overload": overload, "targets": targets, "machine": machine_info(),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(targets, indent=2))
    sys.exit(0 if all(t["met"] for t in targets.values()) else 1)


if __name__ == "__main__":
    main()
