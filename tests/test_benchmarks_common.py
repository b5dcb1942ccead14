"""benchmarks/common.py: the peak an MFU divides by."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from conftest import load_script

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def common() -> ModuleType:
    """benchmarks/common.py, which the benchmarks import as ``common`` (benchmarks/ is not a package)."""
    return load_script("benchmarks/common.py", "benchmarks_common")


@pytest.mark.parametrize(("gpu", "peak"), [
    ("NVIDIA H100 80GB HBM3", 989.0),
    ("NVIDIA H200", 989.0),
    ("NVIDIA H100 PCIe", 756.0),
    ("NVIDIA A100-SXM4-80GB", 312.0),
    ("NVIDIA GeForce RTX 4090", None),  # not in the table: no MFU rather than a guessed one
    (None, None),  # a CPU run
])
def test_peak_by_device_name(common: ModuleType, gpu: str | None, peak: float | None) -> None:
    assert common.peak_tflops(gpu) == peak


def test_peak_override_wins(common: ModuleType) -> None:
    assert common.peak_tflops("NVIDIA H200", 500.0) == 500.0
    assert common.peak_tflops(None, 100.0) == 100.0
