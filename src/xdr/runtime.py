"""Where xdr runs: one device rule, one dtype rule, one cache root, and the machine record.

Every stage that loads a model (encoder, generators, trainers) asks here, so that ``--device`` and
``--dtype`` mean the same thing everywhere. torch is imported inside the functions that need it: the
cache root is also used by torch-free code (dataset registry, CLI start-up), and ``import xdr`` must
stay fast.
"""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xdr.errors import XdrError

if TYPE_CHECKING:
    import torch


def cache_root() -> Path:
    """The xdr cache directory (not created here): ``$XDR_CACHE``, else ``$XDG_CACHE_HOME/xdr``, else
    ``~/.cache/xdr``. ``$XDR_CACHE`` wins so that tests and shared machines can point at one place."""
    env = os.environ.get("XDR_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "xdr"


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device a model runs on: the one asked for, else CUDA when torch sees a GPU, else the CPU."""
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise XdrError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise XdrError(f"device {device!r}: this torch sees no CUDA GPU (a CPU build, or no driver); use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise XdrError(f"device {device!r}: only {torch.cuda.device_count()} CUDA GPU(s) are visible")
    return dev


def resolve_dtype(dtype: str, device: torch.device, *, fp16_problem: str | None = None) -> torch.dtype:
    """The weights' dtype: ``auto`` is bfloat16 on a GPU that supports it and float32 elsewhere (bf16
    matmuls are slow on CPUs). ``fp16_problem`` names why a caller's model breaks in float16, which is
    then refused rather than left to produce NaNs."""
    import torch

    if dtype == "float16" and fp16_problem:
        raise XdrError(f"dtype float16 is not supported: {fp16_problem}; use bfloat16 (GPU) or float32")
    if dtype == "auto":
        bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if bf16 else torch.float32
    if dtype not in ("float32", "bfloat16", "float16"):
        raise XdrError(f"unknown dtype {dtype!r}; choose auto, float32, bfloat16 or float16")
    return getattr(torch, dtype)


def machine_info() -> dict[str, Any]:
    """The hardware and library versions a measured figure belongs to (benchmarks and experiments)."""
    import numpy as np
    import torch

    cpu = platform.machine()
    with contextlib.suppress(OSError, StopIteration), open("/proc/cpuinfo") as f:
        cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1m_at_start": os.getloadavg()[0],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    for name in ("faiss", "transformers", "sentence_transformers"):
        with contextlib.suppress(ImportError):
            info[name] = __import__(name).__version__
    return info
