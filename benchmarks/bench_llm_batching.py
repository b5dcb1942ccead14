"""Throughput of the offline LLM: concurrent requests into llama-server's parallel slots, against one at a time.

Both arms send the same requests to the same server (``experiments/llm_server.sh``: llama.cpp's
llama-server with SLOTS parallel slots and continuous batching) through xdr's own client,
:class:`xdr.generate.llm.OpenAIChatBackend`, exactly as ``xdr generate run --generator openai`` does: the
summarize-then-ask prompts of :class:`xdr.generate.llm.LLMGenerator` for ``--passages`` passages of the
corpus in each of ``--langs``, ``--n`` samples each (one request per sample, each with its own seed),
one ``complete`` call per language as the run makes per shard and language.

  serial    ``concurrency=1``: one request at a time, the way the server was used before
  batched   ``concurrency=--concurrency`` (default: the server's slot count): as many passages decoded
            together, each passage's n samples one after another in its slot (the client keeps a
            prompt on one worker, so the slot's cached prompt serves every sample after the first)

Before each arm every slot is emptied (``POST /slots/ID?action=erase``) and then given the shared part of
the prompt (system turn and exemplars, identical for every passage and language) with a one-token
request pinned to it (``id_slot``), so neither arm starts with the other's passages cached and both pay
the same per-passage prompt work a long run pays. Arms run back to back, ``--rounds`` times, alternating
which goes first (serial-batched, batched-serial, ...), so contention from other processes on the machine
reaches both arms alike; each arm's rate is its generations over its total seconds. The server's
Prometheus counters (``--metrics``) give the prompt tokens evaluated and the tokens generated per arm.
Identity: for every (passage, language, k) the two arms' answers are compared; the share that is
byte-identical says whether a seed gives the same output with and without batching.

Writes benchmarks/results/llm_batching_cpu.json (``--out``) with the machine, its load and the server's
build and settings (``GET /props``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from xdr.data import read_passages
from xdr.data.schema import Passage
from xdr.generate.llm import LLMGenerator, OpenAIChatBackend, Prompt
from xdr.generate.prompts import parse_answer
from xdr.langs import parse_langs
from xdr.runtime import machine_info

ROOT = Path(__file__).resolve().parents[1]
ARMS = ("serial", "batched")
COUNTERS = {  # llama-server's Prometheus counters, as the parser names them (without the _total suffix)
    "prompt_tokens": "llamacpp:prompt_tokens",
    "generated_tokens": "llamacpp:tokens_predicted",
}
TARGET = 2.0


def server_root(base_url: str) -> str:
    """The server's own routes (/slots, /metrics, /props) sit beside the OpenAI /v1 ones."""
    return base_url.rstrip("/").removesuffix("/v1")


def counters(client: httpx.Client, root: str) -> dict[str, float]:
    families = {f.name: f for f in text_string_to_metric_families(client.get(f"{root}/metrics").text)}
    return {key: sum(s.value for s in families[name].samples) for key, name in COUNTERS.items()}


def reset_slots(client: httpx.Client, root: str, shared: Prompt, model: str) -> int:
    """Empty every slot, then cache the prompt part all requests share in each of them; the slot count."""
    slots = client.get(f"{root}/slots").json()
    for slot in slots:
        client.post(f"{root}/slots/{slot['id']}", params={"action": "erase"}).raise_for_status()
    for slot in slots:
        body = {"model": model, "messages": shared.messages, "max_tokens": 1, "id_slot": slot["id"]}
        client.post(f"{root}/v1/chat/completions", json=body).raise_for_status()
    return len(slots)


def pick_passages(corpus: Path, count: int) -> list[Passage]:
    """``count`` passages spread evenly over the corpus (so not one article's paragraphs)."""
    pool = list(read_passages(corpus))
    if count > len(pool):
        sys.exit(f"{corpus} has {len(pool)} passages, fewer than --passages {count}")
    return [pool[i * len(pool) // count] for i in range(count)]


def run_arm(
    backend: OpenAIChatBackend, prompts: dict[str, list[Prompt]], client: httpx.Client, root: str, shared: Prompt
) -> dict[str, Any]:
    reset_slots(client, root, shared, backend.model)
    before, load = counters(client, root), os.getloadavg()[0]
    t0 = time.perf_counter()
    answers = {lang: backend.complete(ps) for lang, ps in prompts.items()}  # one call per language, as a run
    seconds = time.perf_counter() - t0
    after = counters(client, root)
    return {
        "seconds": seconds,
        "load_average_1m_at_start": load,
        **{key: after[key] - before[key] for key in COUNTERS},
        "answers": answers,
    }


def summarize(arms: dict[str, list[dict[str, Any]]], generations: int) -> dict[str, Any]:
    """Rates per arm over all rounds, the speed-up, and how far the two arms' answers agree."""
    out: dict[str, Any] = {}
    for arm, runs in arms.items():
        seconds = sum(r["seconds"] for r in runs)
        flat = [a for r in runs for per_prompt in r["answers"].values() for answers in per_prompt for a in answers]
        out[arm] = {
            "generations": generations * len(runs),
            "seconds": round(seconds, 2),
            "generations_per_hour": round(generations * len(runs) / seconds * 3600, 1),
            "seconds_per_generation": round(seconds / (generations * len(runs)), 3),
            "prompt_tokens": sum(r["prompt_tokens"] for r in runs),
            "generated_tokens": sum(r["generated_tokens"] for r in runs),
            "parsed": sum(parse_answer(a) is not None for a in flat) / len(flat),
            "rounds": [
                {k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items() if k != "answers"}
                for r in runs
            ],
        }
    out["speedup"] = round(out["batched"]["generations_per_hour"] / out["serial"]["generations_per_hour"], 3)
    pairs = [
        (a, b)
        for rs, rb in zip(arms["serial"], arms["batched"], strict=True)
        for lang in rs["answers"]
        for ps, pb in zip(rs["answers"][lang], rb["answers"][lang], strict=True)
        for a, b in zip(ps, pb, strict=True)
    ]
    out["same_output_for_a_seed"] = {"identical": sum(a == b for a, b in pairs), "of": len(pairs)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", default="http://127.0.0.1:8080/v1")
    ap.add_argument("--model", default="qwen")
    ap.add_argument("--corpus", type=Path, default=ROOT / "runs/xquad-r/data/corpus.parquet",
                    help="the passages (default: XQuAD-R as `xdr data prepare xquad-r` writes it)")
    ap.add_argument("--passages", type=int, default=3)
    ap.add_argument("--langs", default="de,hi")
    ap.add_argument("--n", type=int, default=4, help="samples per passage and language")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--concurrency", type=int, default=None, help="requests in flight (default: the slot count)")
    ap.add_argument("--rounds", type=int, default=1, help="times each arm runs, alternating which goes first")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per request")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/llm_batching_cpu.json")
    args = ap.parse_args(argv)

    langs = parse_langs(args.langs)
    passages = pick_passages(args.corpus, args.passages)
    root = server_root(args.base_url)
    with httpx.Client(timeout=args.timeout) as client:
        props = client.get(f"{root}/props").json()
        slots = len(client.get(f"{root}/slots").json())
        concurrency = args.concurrency or slots
        backends = {arm: OpenAIChatBackend(args.model, args.base_url, timeout=args.timeout, retries=0,
                                           concurrency=1 if arm == "serial" else concurrency) for arm in ARMS}
        generator = LLMGenerator(backends["serial"])
        prompts = {lang: generator.prompts(passages, lang, args.n, args.seed) for lang in langs}
        first = prompts[langs[0]][0].messages
        shared = Prompt([*first[:-1], {"role": "user", "content": "Language: English\nPassage: -"}], [0])
        generations = args.passages * len(langs) * args.n
        arms: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
        for r in range(args.rounds):
            for arm in ARMS if r % 2 == 0 else reversed(ARMS):
                run = run_arm(backends[arm], prompts, client, root, shared)
                arms[arm].append(run)
                print(f"round {r + 1} {arm}: {generations} generations in {run['seconds']:.1f} s "
                      f"(load {run['load_average_1m_at_start']:.1f})", flush=True)
    result = summarize(arms, generations)
    record = {
        "command": shlex.join(["python", "benchmarks/bench_llm_batching.py", *(argv or sys.argv[1:])]),
        "machine": machine_info(),
        "server": {
            "slots": slots,
            "build_info": props.get("build_info"),
            "n_ctx": props.get("default_generation_settings", {}).get("n_ctx"),
            "model_path": Path(props.get("model_path", "")).name,
        },
        "workload": {
            "passages": [p.id for p in passages],
            "langs": langs,
            "n": args.n,
            "seed": args.seed,
            "generations_per_arm_and_round": generations,
            "concurrency": {"serial": 1, "batched": concurrency},
            "rounds": args.rounds,
            "sampling": backends["serial"].config,
        },
        "result": result,
        "target_speedup": TARGET,
        "answers": {arm: [r["answers"] for r in runs] for arm, runs in arms.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    s, b = result["serial"], result["batched"]
    print(f"serial {s['generations_per_hour']:.0f}/h, batched {b['generations_per_hour']:.0f}/h: "
          f"{result['speedup']:.2f}x (target {TARGET}x); same output for a seed: "
          f"{result['same_output_for_a_seed']['identical']} of {result['same_output_for_a_seed']['of']}")
    return 0 if result["speedup"] >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
