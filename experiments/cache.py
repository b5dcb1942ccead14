"""Embedding caches shared by the experiment scripts: rerunning an experiment should not re-encode."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np


def cached(path: Path, make: Callable[[], np.ndarray]) -> np.ndarray:
    """``np.load(path)`` if it exists, else ``make()`` saved there."""
    if path.exists():
        return np.load(path)
    arr = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, arr)
    return arr
