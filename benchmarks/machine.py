"""Machine record that every benchmark result carries, so a figure is never quoted without its hardware."""

from __future__ import annotations

import contextlib
import os
import platform
from typing import Any


def machine_info() -> dict[str, Any]:
    import numpy as np
    import torch

    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
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
