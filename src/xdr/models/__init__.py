"""The models stage: offline-built me5-small, the model registry and the batch encoder.

``Encoder`` is imported lazily: it pulls in torch (seconds), which registry look-ups do not need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xdr.models.registry import ModelInfo, build, list_models, resolve_spec, verify

if TYPE_CHECKING:
    from xdr.models.encoder import Encoder

__all__ = ["Encoder", "ModelInfo", "build", "list_models", "resolve_spec", "verify"]


def __getattr__(name: str) -> Any:
    if name == "Encoder":
        from xdr.models.encoder import Encoder

        return Encoder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
