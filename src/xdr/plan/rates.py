"""Measured rates: read from the benchmark records (`benchmarks/results/*.json`) into one table, which
ships with xdr as ``rates.yaml`` (an installed xdr has no ``benchmarks/``).

Every rate names the device and the workload it was measured on and the file it came from. Only what a
record measured is taken: a stage, model or device without a record has no rate, and the planner says so.
Smoke runs (records whose ``status`` says their rates are not a speed comparison) are left out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

from xdr.errors import XdrError

RATES_FILE = Path(__file__).with_name("rates.yaml")
HEADER = "# Measured rates, made from benchmarks/results/*.json by benchmarks/make_rates.py; do not edit by hand.\n"
GENERATOR_SIZES = {"base": "mt5-base"}  # bench_generate_speed's --size for the released mT5 shapes
ENCODER_NAMES = {"random-bert-base": "bert-base", "me5-small": "me5-small"}  # bench_encode_speed's model field


class Rate(BaseModel):
    """One measured throughput: ``value`` ``unit`` for ``stage`` with ``model`` on ``device``."""

    model_config = ConfigDict(frozen=True)

    stage: str  # generate, encode, index_build, index_search, flat_search
    model: str  # generator / encoder name, or the FAISS factory for index rates
    device: str  # "NVIDIA H200", or "CPU <name>, <n> threads"
    value: float
    unit: str
    workload: dict[str, Any]  # what the rate was measured on (lengths, batch, sizes, knobs)
    source: str  # the benchmarks/results file

    def describe(self) -> str:
        value = f"{self.value:,.0f}" if self.value >= 100 else f"{self.value:.3g}"
        return f"{value} {self.unit} ({self.model}, {self.device}; {self.source})"


def _device(machine: dict[str, Any], threads: int | None) -> str:
    return machine["gpu"] or f"CPU {machine['cpu']}, {threads} thread{'' if threads == 1 else 's'}"


def _generate(name: str, rec: dict[str, Any]) -> list[Rate]:
    model = GENERATOR_SIZES.get(rec["model"]["size"])
    if model is None or not rec["machine"].get("gpu"):
        return []
    ok = {k: v for k, v in rec["results"].items() if v.get("status") == "ok" and v.get("queries_per_s")}
    picks = {"xdr": max((k for k in ok if k.startswith("xdr_seeded")), key=lambda k: ok[k]["queries_per_s"],
                        default=None),
             "best": max(ok, key=lambda k: ok[k]["queries_per_s"], default=None)}
    work = {k: rec["workload"][k] for k in ("input_tokens", "new_tokens", "samples_per_passage")}
    return [Rate(stage="generate", model=model, device=_device(rec["machine"], None), value=ok[k]["queries_per_s"],
                 unit="queries/s", source=name,
                 workload={**work, "system": k, "which": which, "batch_passages": ok[k]["batch_passages"],
                           "peak_gpu_memory_gib": ok[k].get("peak_memory_gib")})
            for which, k in picks.items() if k is not None]


def _encode(name: str, rec: dict[str, Any]) -> list[Rate]:
    model = ENCODER_NAMES.get(rec["model"])
    if model is None:
        return []
    xdr = rec["results"]["xdr"]
    work = {"mean_tokens": rec["texts"]["mean_tokens"], "max_length": rec["settings"]["max_length"],
            "batch_size": rec["settings"]["batch_size"], "passages_per_s": xdr["passages_per_s"]}
    return [Rate(stage="encode", model=model, device=_device(rec["machine"], rec["settings"]["threads"]),
                 value=xdr["tokens_per_s"], unit="tokens/s", workload=work, source=name)]


def _flat_search(name: str, rec: dict[str, Any]) -> list[Rate]:
    s = rec["setup"]
    value = s["queries"] * s["passages"] * s["dim"] / rec["seconds_best"]["xdr"]
    return [Rate(stage="flat_search", model="Flat", device=_device(rec["machine"], s["faiss_threads"]), value=value,
                 unit="query-dims/s", workload={k: s[k] for k in ("passages", "dim", "queries", "k")}, source=name)]


def _index(name: str, rec: dict[str, Any]) -> list[Rate]:
    out = []
    device = _device({**rec["machine"], "gpu": None}, rec["threads"])  # the benchmark builds and searches on CPU
    for r in rec["indexes"].values():
        work = {"rows": rec["size"], "dim": rec["dim"],
                "bytes_per_vector": round(r["index_mb"] * 2**20 / rec["size"], 2),
                "peak_rss_mb": round(r["peak_rss_mb"]), "index_mb": round(r["index_mb"]),
                "train_sample": r["train_sample"]}
        out.append(Rate(stage="index_build", model=r["factory"], device=device, value=rec["size"] / r["build_s"],
                        unit="rows/s", workload=work, source=name))
        for p in r["search"]["sweep"]:
            knob = next(k for k in p if k not in ("recall", "ms_per_query"))
            out.append(Rate(stage="index_search", model=r["factory"], device=device, value=p["ms_per_query"],
                            unit="ms/query", source=name,
                            workload={"rows": rec["size"], "dim": rec["dim"], "k": rec["k"], knob: p[knob],
                                      "recall": p["recall"]}))
    return out


READERS = {"generate_speed": _generate, "encode_speed": _encode, "search_overhead": _flat_search,
           "index_scale": _index}


def rates_from_results(results_dir: str | Path) -> list[Rate]:
    """Every rate the benchmark records in ``results_dir`` measured, in file order."""
    rates: list[Rate] = []
    for path in sorted(Path(results_dir).glob("*.json")):
        rec = json.loads(path.read_text(encoding="utf-8"))
        reader = READERS.get(rec.get("benchmark", ""))
        if reader is None or "smoke" in str(rec.get("status", "")).lower():
            continue
        rates.extend(reader(path.name, rec))
    return rates


def dump_rates(rates: list[Rate]) -> str:
    return HEADER + yaml.safe_dump({"rates": [r.model_dump() for r in rates]}, sort_keys=False, allow_unicode=True)


def bundled_rates(path: Path = RATES_FILE) -> list[Rate]:
    """The rates table shipped with xdr."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise XdrError(f"{path}: cannot read the rates table ({e.strerror})") from None
    return [Rate(**r) for r in data["rates"]]
