"""The cost of an xQG pipeline before anything runs: per stage, GPU-hours, wall time, disk and peak memory.

Times come only from measured rates (:mod:`xdr.plan.rates`); a stage whose model and device have no
measured rate says so instead of guessing. Sizes are arithmetic on xdr's own formats (float32 vectors,
FAISS codes, id files), with the index's bytes per vector and its build's peak memory taken from the
index benchmark where it measured them. What stays hand-written: these formulas, which mirror the
artifacts' layouts documented in their modules.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from xdr.data import read_passages
from xdr.errors import XdrError
from xdr.models.registry import resolve_spec
from xdr.plan.rates import Rate, bundled_rates

ENCODER_DIMS = {"me5-small": 384, "bert-base": 768}
GENERATED_QUERY_TOKENS = 32  # generated queries are encoded at this length (GENERATED_QUERY_MAX_LENGTH)
SHARD_ROWS = 100_000  # xdr encode's default shard size
GB = 1e9
TARGET_RECALL = 0.9  # an approximate index is planned at the fastest measured knob with this recall@k


class Workload(BaseModel):
    """What is to be run, and on what."""

    model_config = ConfigDict(frozen=True)

    passages: int = Field(gt=0)
    passage_tokens: float = Field(gt=0, description="mean tokens per passage (encoder tokenizer)")
    langs: tuple[str, ...] = ()
    n: int = Field(5, ge=0, description="generated queries per passage and language")
    generator: str = "mt5-base"
    encoder: str = "me5-small"
    gpu: str | None = Field("H200", description="GPU kind matched against the rates' devices; None: CPU")
    gpus: int = Field(1, gt=0)
    queries: int = Field(0, ge=0, description="queries to search")
    query_tokens: float = Field(16, gt=0)
    factory: str = "Flat"
    maxsim: bool = Field(False, description="also store generated-query vectors (int8) for max-sim")

    @property
    def generations(self) -> int:
        return self.passages * len(self.langs) * self.n

    @property
    def dim(self) -> int:
        if self.encoder not in ENCODER_DIMS:
            raise XdrError(f"unknown encoder {self.encoder!r} for planning; known: {', '.join(ENCODER_DIMS)}")
        return ENCODER_DIMS[self.encoder]


class StageCost(BaseModel):
    """One stage's cost; ``None`` where no measured rate covers it (``note`` says what is missing)."""

    model_config = ConfigDict(frozen=True)

    stage: str
    work: str
    gpu_hours: float | None
    wall_hours: float | None
    disk_gb: float
    peak_memory: str
    rate: str
    note: str = ""


class Plan(BaseModel):
    model_config = ConfigDict(frozen=True)

    workload: Workload
    stages: tuple[StageCost, ...]

    @property
    def disk_gb(self) -> float:
        return sum(s.disk_gb for s in self.stages)

    def to_markdown(self) -> str:
        def num(x: float | None, unit: str = "") -> str:
            return "no rate" if x is None else f"{x:,.1f}{unit}" if x >= 10 else f"{x:,.2f}{unit}"

        rows = ["| stage | work | GPU-hours | wall | disk | peak memory | rate (device; source) |",
                "|---|---|---:|---:|---:|---|---|"]
        for s in self.stages:
            rate = s.rate + (f" — {s.note}" if s.note else "")
            rows.append(f"| {s.stage} | {s.work} | {num(s.gpu_hours)} | {num(s.wall_hours, ' h')} | "
                        f"{num(s.disk_gb, ' GB')} | {s.peak_memory} | {rate} |")
        rows.append(f"| **total** | | {num(_sum(s.gpu_hours for s in self.stages))} | "
                    f"{num(_sum(s.wall_hours for s in self.stages), ' h')} | **{num(self.disk_gb, ' GB')}** | | |")
        return "\n".join(rows)


def _sum(xs: Any) -> float | None:
    xs = list(xs)
    return None if any(x is None for x in xs) else sum(xs)


def _on_device(rates: list[Rate], stage: str, model: str, w: Workload) -> list[Rate]:
    if w.gpu is None:
        return [r for r in rates if r.stage == stage and r.model == model and r.device.startswith("CPU")]
    return [r for r in rates if r.stage == stage and r.model == model and w.gpu.lower() in r.device.lower()]


def _missing(rates: list[Rate], stage: str, model: str, w: Workload | None) -> str:
    """What is missing and what was measured instead; ``w`` None: a stage measured on any device."""
    seen = sorted({f"{r.model} on {r.device}" for r in rates if r.stage == stage})
    where = "any device" if w is None else w.gpu or "CPU"
    return f"no measured {stage} rate for {model} on {where} (measured: {'; '.join(seen) or 'none'})"


def _gpu_stage(stage: str, work: str, seconds_one: float | None, w: Workload, **kw: Any) -> StageCost:
    """A stage that splits over devices: GPU-hours on one, wall time with ideal scaling over ``w.gpus``."""
    if seconds_one is None:
        return StageCost(stage=stage, work=work, gpu_hours=None, wall_hours=None, **kw)
    hours = seconds_one / 3600
    devices = w.gpus if w.gpu is not None else 1
    return StageCost(stage=stage, work=work, gpu_hours=hours if w.gpu is not None else 0.0,
                     wall_hours=hours / devices, **kw)


def _encode_seconds(rates: list[Rate], w: Workload, rows: float, tokens: float) -> tuple[float | None, str]:
    """Seconds to encode ``rows`` texts of ``tokens`` mean length at the measured rate nearest that length."""
    found = _on_device(rates, "encode", w.encoder, w)
    if not found:
        return None, _missing(rates, "encode", w.encoder, w)
    r = min(found, key=lambda r: abs(r.workload["mean_tokens"] - tokens))
    return rows * tokens / r.value, f"{r.describe()}, measured at {r.workload['mean_tokens']} tokens mean"


def _index_rates(rates: list[Rate], w: Workload) -> tuple[Rate | None, Rate | None]:
    build = [r for r in rates if r.stage == "index_build" and r.model == w.factory]
    search = [r for r in rates if r.stage == "index_search" and r.model == w.factory]
    good = [r for r in search if r.workload["recall"] >= TARGET_RECALL]  # the fastest knob that reaches it,
    point = min(good, key=lambda r: r.value) if good else max(search, key=lambda r: r.workload["recall"],
                                                                    default=None)  # else the best recall
    return max(build, key=lambda r: r.workload["rows"], default=None), point


def plan(w: Workload, rates: list[Rate] | None = None) -> Plan:
    """Every stage's cost for ``w`` from ``rates`` (default: the table shipped with xdr)."""
    rates = bundled_rates() if rates is None else rates
    d, g, n = w.dim, w.generations, w.passages
    stages = []

    gen = _on_device(rates, "generate", w.generator, w)
    xdr_rate = next((r for r in gen if r.workload.get("which") == "xdr"), gen[0] if gen else None)
    best = max(gen, key=lambda r: r.value, default=None)
    gen_bytes = g * (w.query_tokens * 4 + 24)  # text at ~4 bytes a token + an id docid::lang::k
    stages.append(_gpu_stage(
        "generate", f"{g:,} queries ({n:,} passages × {len(w.langs)} langs × {w.n})",
        g / xdr_rate.value if xdr_rate else None, w, disk_gb=gen_bytes / GB,
        peak_memory=f"{xdr_rate.workload['peak_gpu_memory_gib']} GiB GPU" if xdr_rate else "not measured",
        rate=xdr_rate.describe() if xdr_rate else _missing(rates, "generate", w.generator, w),
        note=(f"best measured system {best.workload['system']}: {g / best.value / 3600:,.0f} GPU-hours"
              if best and xdr_rate and best is not xdr_rate else "") + "; disk: Parquet text before compression"))

    secs, how = _encode_seconds(rates, w, g, min(w.query_tokens, GENERATED_QUERY_TOKENS))
    vec_g = g * d * 4
    if w.maxsim:
        stages.append(_gpu_stage("encode generated", f"{g:,} queries, stored for max-sim", secs, w,
                                 disk_gb=(vec_g + g * (d + 4)) / GB, peak_memory="one shard of vectors", rate=how,
                                 note=f"float32 store {vec_g / GB:,.0f} GB (removable) + int8 max-sim store"))
    else:
        stages.append(StageCost(stage="encode generated", work="none stored", gpu_hours=0, wall_hours=0, disk_gb=0,
                                peak_memory="-", rate="-",
                                note=f"augment encodes them on the fly; storing them would take {vec_g / GB:,.0f} GB"))

    p_secs, p_how = _encode_seconds(rates, w, n, w.passage_tokens)
    stages.append(_gpu_stage("encode passages", f"{n:,} passages × {w.passage_tokens:g} tokens", p_secs, w,
                             disk_gb=n * d * 4 / GB, peak_memory="one shard of vectors", rate=p_how))

    aug_secs = None if w.maxsim else secs
    stages.append(_gpu_stage(
        "augment", f"{n:,} passages fused with {g:,} queries", 0.0 if w.maxsim else aug_secs, w,
        disk_gb=n * d * 4 / GB, peak_memory="one chunk of passages and their queries",
        rate="reads the stored encodings" if w.maxsim else how,
        note="" if w.maxsim else "the cost of encoding the generated queries; fusion itself not measured"))

    build, search = _index_rates(rates, w)
    per_vector = d * 4  # float32 vectors (Flat); PQ codes keep their size whatever the dim
    if build:
        scale = 1 if "PQ" in w.factory.upper() else d / build.workload["dim"]
        per_vector = build.workload["bytes_per_vector"] * scale
    index_bytes = n * per_vector
    shard = 2 * SHARD_ROWS * d * 4  # the shard being added and the next one being read
    if build:
        overhead = build.workload["peak_rss_mb"] * 2**20 - build.workload["index_mb"] * 2**20
        peak = f"{(index_bytes + max(overhead, shard)) / GB:,.1f} GB (index + {max(overhead, shard) / GB:.2f} GB)"
    else:
        peak = f"{(index_bytes + shard) / GB:,.1f} GB (index + two shards)"
    stages.append(StageCost(
        stage="index", work=f"{w.factory} over {n:,} vectors", gpu_hours=0,
        wall_hours=n / build.value / 3600 if build else None, disk_gb=index_bytes / GB, peak_memory=peak,
        rate=f"{build.describe()}, {build.workload['rows']:,} × {build.workload['dim']} rows" if build
        else _missing(rates, "index_build", w.factory, None),
        note="CPU build; rows/s measured at the benchmark's size and dim" if build else ""))

    q_secs, q_how = _encode_seconds(rates, w, w.queries, w.query_tokens)
    flat = next((r for r in rates if r.stage == "flat_search"), None)
    if w.factory == "Flat" and flat:
        s_secs, s_how = w.queries * n * d / flat.value, flat.describe()
    elif search:
        s_secs = w.queries * search.value / 1000 * n / search.workload["rows"]
        knob = {k: v for k, v in search.workload.items() if k in ("nprobe", "ef_search")}
        s_how = (f"{search.describe()} at {knob}, recall@{search.workload['k']} {search.workload['recall']}, "
                 "scaled by rows")
    else:
        s_secs, s_how = None, _missing(rates, "index_search", w.factory, None)
    total = None if q_secs is None or s_secs is None else q_secs + s_secs
    stages.append(StageCost(
        stage="search", work=f"{w.queries:,} queries", gpu_hours=(q_secs or 0) / 3600 if w.gpu else 0,
        wall_hours=None if total is None else total / 3600, disk_gb=w.queries * 100 * 40 / GB,
        peak_memory=f"{index_bytes / GB:,.1f} GB (the index; less with mmap)",
        rate=f"encode: {q_how}; index: {s_how}", note="run files: 100 hits of ~40 bytes per query"))
    return Plan(workload=w, stages=tuple(stages))


def corpus_stats(corpus: str, tokenizer: str = "me5-small", sample: int = 2000) -> tuple[int, float]:
    """Passages in ``corpus`` (streamed once, never held) and their mean length in ``tokenizer``'s tokens,
    from the first ``sample`` passages as the encoder sees them (title and text)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_spec(tokenizer).path)
    count, lengths = 0, []
    for p in read_passages(corpus):
        if count < sample:
            lengths.append(len(tok(p.joined(), add_special_tokens=True)["input_ids"]))
        count += 1
    if not count:
        raise XdrError(f"{corpus}: no passages")
    return count, sum(lengths) / len(lengths)
