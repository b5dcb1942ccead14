"""The cost planner: its rates come from the benchmark records, a missing rate is said, and the arithmetic
follows the workload."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from xdr.errors import XdrError
from xdr.plan import Workload, bundled_rates, plan, rates_from_results
from xdr.plan.estimate import corpus_stats
from xdr.plan.rates import Rate

ROOT = Path(__file__).resolve().parents[1]
XOR = dict(passages=18_200_000, passage_tokens=128, langs=("ar", "bn", "fi", "ja", "ko", "ru", "te"), n=5)


def test_the_bundled_table_agrees_with_the_benchmark_records() -> None:
    """`benchmarks/make_rates.py` after a new record keeps this true; a stale table fails here."""
    assert bundled_rates() == rates_from_results(ROOT / "benchmarks" / "results")


def test_every_rate_names_its_device_and_source() -> None:
    rates = bundled_rates()
    assert {r.stage for r in rates} >= {"generate", "encode", "flat_search"}
    for r in rates:
        assert (ROOT / "benchmarks" / "results" / r.source).exists()
        record = json.loads((ROOT / "benchmarks" / "results" / r.source).read_text())
        assert r.device.startswith("CPU") or r.device == record["machine"]["gpu"]
        assert r.value > 0


def test_smoke_runs_and_unknown_models_give_no_rates(tmp_path: Path) -> None:
    tiny = json.loads((ROOT / "benchmarks" / "results" / "generate_speed_cpu_tiny.json").read_text())
    (tmp_path / "g.json").write_text(json.dumps(tiny))
    assert rates_from_results(tmp_path) == []


def _rate(stage: str, model: str, device: str, value: float, unit: str, **workload: object) -> Rate:
    return Rate(stage=stage, model=model, device=device, value=value, unit=unit, workload=workload, source="t.json")


RATES = [
    _rate("generate", "mt5-base", "NVIDIA H200", 1000.0, "queries/s", which="xdr", system="x", input_tokens=128,
          new_tokens=32, samples_per_passage=5, batch_passages=256, peak_gpu_memory_gib=42.0),
    _rate("generate", "mt5-base", "NVIDIA H200", 2000.0, "queries/s", which="best", system="fast", input_tokens=128,
          new_tokens=32, samples_per_passage=5, batch_passages=256, peak_gpu_memory_gib=60.0),
    _rate("encode", "bert-base", "NVIDIA H200", 1e6, "tokens/s", mean_tokens=60.0),
    _rate("encode", "me5-small", "CPU x, 2 threads", 3000.0, "tokens/s", mean_tokens=40.0),
    _rate("flat_search", "Flat", "CPU x, 2 threads", 1e11, "query-dims/s"),
    _rate("index_build", "Flat", "CPU x, 2 threads", 1e6, "rows/s", rows=1000, dim=384, bytes_per_vector=1536,
          peak_rss_mb=10, index_mb=1),
]


def test_arithmetic_of_a_gpu_plan() -> None:
    w = Workload(**XOR, encoder="bert-base", gpu="H200", gpus=8, queries=1000)
    p = {s.stage: s for s in plan(w, RATES).stages}
    g = 18_200_000 * 7 * 5
    assert p["generate"].gpu_hours == pytest.approx(g / 1000 / 3600)  # xdr's own path, not the best system
    assert p["generate"].wall_hours == pytest.approx(g / 1000 / 3600 / 8)
    assert "fast: 88 GPU-hours" in p["generate"].note
    assert p["encode passages"].gpu_hours == pytest.approx(18_200_000 * 128 / 1e6 / 3600)
    assert p["encode generated"].disk_gb == 0 and "1,957 GB" in p["encode generated"].note  # never stored
    assert p["augment"].gpu_hours == pytest.approx(g * 16 / 1e6 / 3600)  # encodes them on the fly
    assert p["index"].disk_gb == pytest.approx(18_200_000 * 768 * 4 / 1e9)  # bytes/vector scaled to dim 768
    assert p["search"].wall_hours == pytest.approx((1000 * 16 / 1e6 + 1000 * 18_200_000 * 768 / 1e11) / 3600)


def test_a_missing_rate_is_said_never_guessed() -> None:
    w = Workload(**XOR, encoder="me5-small", gpu="H200", gpus=1)
    p = plan(w, RATES)
    stages = {s.stage: s for s in p.stages}
    assert stages["encode passages"].gpu_hours is None
    assert "no measured encode rate for me5-small on H200 (measured: bert-base on NVIDIA H200; me5-small on CPU" in (
        stages["encode passages"].rate)
    assert "no rate" in p.to_markdown()
    cpu = {s.stage: s for s in plan(w.model_copy(update={"gpu": None}), RATES).stages}
    assert cpu["encode passages"].wall_hours == pytest.approx(18_200_000 * 128 / 3000 / 3600)
    assert cpu["generate"].gpu_hours is None and "mt5-base on CPU" in cpu["generate"].rate
    assert "no measured index_build rate for HNSW32" in plan(w.model_copy(update={"factory": "HNSW32"}), RATES).stages[
        4].rate


def test_maxsim_stores_the_generated_vectors_as_int8() -> None:
    w = Workload(passages=1000, passage_tokens=100, langs=("ja",), n=2, encoder="bert-base", maxsim=True)
    stages = {s.stage: s for s in plan(w, RATES).stages}
    assert stages["encode generated"].disk_gb == pytest.approx((2000 * 768 * 4 + 2000 * 772) / 1e9)
    assert stages["augment"].gpu_hours == 0  # reads the stored encodings


def test_unknown_encoder_is_a_user_error() -> None:
    with pytest.raises(XdrError, match="unknown encoder 'e5-huge'"):
        plan(Workload(passages=10, passage_tokens=10, encoder="e5-huge"), RATES)


def test_corpus_stats_counts_and_measures(tmp_path: Path) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"p{i}", "text": "a b c " * (i + 1)}) + "\n" for i in range(30)))
    count, mean = corpus_stats(str(corpus), sample=10)
    assert count == 30 and 4 < mean < 40


def test_cli_plan_prints_a_table_and_json(tmp_path: Path) -> None:
    def xdr(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "xdr", "plan", *args], capture_output=True, text=True,
                              check=False)

    r = xdr("--passages", "18200000", "--passage-tokens", "128", "--langs", "ar,bn,fi,ja,ko,ru,te", "--encoder",
            "bert-base", "--gpus", "8")
    assert r.returncode == 0, r.stderr
    assert "| generate | 637,000,000 queries" in r.stdout and "**total**" in r.stdout
    r = xdr("--passages", "100", "--passage-tokens", "50", "--cpu", "--json")
    assert json.loads(r.stdout)["workload"]["gpu"] is None
    r = xdr("--langs", "ja")
    assert r.returncode == 2 and "give a corpus, or --passages" in r.stderr
