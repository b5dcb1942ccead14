"""Model weight files: which files hold weights, a model directory's fingerprint, reading and writing them.

The registry, the me5 build, trimming and packing all tell weights from a model directory's other files,
identify a directory by its weights, and read or write tensors; they share these rules so that a copy
made by one is recognised by the others.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xdr.artifacts import atomic_path, sha256_file
from xdr.errors import XdrError

if TYPE_CHECKING:
    import torch

WEIGHTS = "model.safetensors"  # what xdr writes
_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert")  # their positions start after the padding index


def max_positions(config: dict[str, Any]) -> int | None:
    """The longest input a model's position table takes (a transformers ``config.json`` as a dict), or None
    when it does not say: a longer max length fails deep inside the model, not at load."""
    positions = config.get("max_position_embeddings")
    if not isinstance(positions, int):
        return None
    return positions - (2 if config.get("model_type") in _OFFSET_POSITIONS else 0)
WEIGHT_FILES = (WEIGHTS, "pytorch_model.bin")  # single-file checkpoints xdr reads, in order of preference
SHARD_INDEX = "model.safetensors.index.json"
HUB_WEIGHT_FILES = (WEIGHTS, SHARD_INDEX, "pytorch_model.bin")  # any one in the hub cache: weights are there
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack")
MANIFEST = "manifest.json"  # checksums of a model xdr built (see xdr.models.me5)
# Files that describe the source's weights (checksums, shard index): wrong for any copy whose weights differ.
WEIGHT_DESCRIPTIONS = frozenset({MANIFEST, SHARD_INDEX})


def is_weight_file(name: str) -> bool:
    return name.endswith(WEIGHT_SUFFIXES)


def fingerprint(d: Path) -> str:
    """What :func:`~xdr.models.registry.resolve_spec` records for a local model directory.

    Config bytes plus weight file names and sizes: cheap, yet changes whenever the weights do.
    """
    h = hashlib.sha256((d / "config.json").read_bytes())
    for p in sorted(d.iterdir()):
        if p.is_file() and is_weight_file(p.name):
            h.update(f"\n{p.name}\t{p.stat().st_size}".encode())
    return h.hexdigest()


def weights_file(d: Path) -> Path | None:
    """The single-file checkpoint of ``d`` that :func:`load_weights` reads, if any."""
    return next((d / name for name in WEIGHT_FILES if (d / name).is_file()), None)


def weights_sha256(d: Path) -> str | None:
    """Checksum of the weight file's bytes (what me5's manifest records for ``model.safetensors``)."""
    path = weights_file(d)
    return sha256_file(path) if path is not None else None


def load_weights(d: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a single-file checkpoint, on the CPU."""
    import torch
    from safetensors.torch import load_file

    path = weights_file(d)
    if path is None:
        raise XdrError(f"{d}: no {WEIGHTS} or pytorch_model.bin (sharded checkpoints are not supported)")
    if path.name == WEIGHTS:
        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def save_weights(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Write ``tensors`` as safetensors with the metadata transformers expects of a PyTorch checkpoint."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata={"format": "pt"})
