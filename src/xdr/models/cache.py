"""Where xdr keeps the models it builds itself.

``$XDR_CACHE`` wins so that tests and shared machines can point at one place; otherwise the usual
per-user cache directory. Nothing here downloads anything.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The xdr cache directory (not created here)."""
    env = os.environ.get("XDR_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "xdr"


def models_dir() -> Path:
    return cache_root() / "models"
