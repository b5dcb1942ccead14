"""A compact transport form for a model directory: one safetensors file, int8 where it matters.

Together with vocabulary trimming (:mod:`xdr.models.trim`) it makes a model small enough to travel to a
remote machine. The pack holds vocabulary-sized matrices as int8 rows with a float32 scale per row
(symmetric, ``scale = max|row| / 127``), other tensors float16 (or bfloat16, or int8 rows for 2-D ones),
and every non-weight file of the directory as a uint8 tensor ``file:<relpath>``. :func:`unpack_model`
dequantises to the original dtypes and writes a loadable directory. The pack records
:func:`rebuilt_sha256` of what the sender's own unpack produces, and :func:`unpack_model` checks it, so the
receiving side proves it rebuilt exactly the weights the sender validated.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xdr.artifacts import atomic_dir, atomic_path
from xdr.errors import XdrError
from xdr.models.weights import WEIGHT_DESCRIPTIONS, WEIGHTS, is_weight_file, load_weights, save_weights

if TYPE_CHECKING:
    import torch

PACK_FORMAT = 1
PACK_KEY = "xdr_pack"
_FILE_PREFIX = "file:"
_Q_SUFFIX, _SCALE_SUFFIX = ".q8", ".scale"
_FLOATS = ("float16", "bfloat16")


def _weights_digest(weights: dict[str, torch.Tensor]) -> str:
    import torch

    h = hashlib.sha256()
    for name in sorted(weights):
        t = weights[name]
        h.update(f"{name}\t{str(t.dtype).removeprefix('torch.')}\t{list(t.shape)}\n".encode())
        h.update(t.contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def rebuilt_sha256(model_dir: str | Path) -> str:
    """A hash of the weights' contents: every tensor's name, dtype, shape and bytes, in name order.

    Independent of how the safetensors file was serialised, so it identifies the numbers themselves; two
    directories with equal hashes hold bit-identical weights.
    """
    return _weights_digest(load_weights(Path(model_dir)))


def _quantize_rows(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per row: ``t ≈ q * scale[:, None]``."""
    import torch

    x = t.float().reshape(t.shape[0], -1)
    scale = x.abs().amax(dim=1) / 127.0
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.clamp(torch.round(x / safe[:, None]), -127, 127).to(torch.int8)
    return q.reshape(t.shape), scale.to(torch.float32)


def _dequantize_rows(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    import torch

    x = q.to(torch.float32).reshape(q.shape[0], -1) * scale.to(torch.float32)[:, None]
    return x.reshape(q.shape).to(dtype)


def _dtype(name: str) -> torch.dtype:
    import torch

    return getattr(torch, name)


def _rebuild(packed: dict[str, torch.Tensor], info: dict[str, Any]) -> dict[str, torch.Tensor]:
    out = {}
    for name, spec in info["tensors"].items():
        dtype = _dtype(spec["dtype"])
        if spec["as"] == "int8":
            out[name] = _dequantize_rows(packed[name + _Q_SUFFIX], packed[name + _SCALE_SUFFIX], dtype)
        else:
            out[name] = packed[name].to(dtype)
    return out


def pack_model(
    model_dir: str | Path, out_file: str | Path, *, embedding: str = "int8", other: str = "float16"
) -> Path:
    """Write ``model_dir`` as one compact safetensors file (see the module docstring).

    ``embedding`` applies to tensors with ``vocab_size`` rows (``int8``, ``float16`` or ``bfloat16``);
    ``other`` to the rest (``float16``, ``bfloat16``, or ``int8``: per-row for 2-D tensors, float16 for the
    rest). Returns ``out_file``.
    """
    import torch
    from safetensors.torch import save_file

    if embedding not in ("int8", *_FLOATS):
        raise XdrError(f"embedding must be int8, float16 or bfloat16, not {embedding!r}")
    if other not in ("int8", *_FLOATS):
        raise XdrError(f"other must be int8, float16 or bfloat16, not {other!r}")
    src = Path(model_dir)
    if not (src / "config.json").is_file():
        raise XdrError(f"{src}: no config.json; not a transformers model directory")
    weights = load_weights(src)
    vocab = json.loads((src / "config.json").read_text(encoding="utf-8")).get("vocab_size")
    packed: dict[str, torch.Tensor] = {}
    tensors: dict[str, dict[str, str]] = {}
    for name in sorted(weights):
        t = weights[name]
        mode = embedding if (t.dim() >= 1 and t.shape[0] == vocab) else other
        if not t.is_floating_point():
            mode = "raw"  # integer buffers (e.g. position ids) travel as they are
        elif mode == "int8" and t.dim() < 2:
            mode = "float16"
        tensors[name] = {"dtype": str(t.dtype).removeprefix("torch."), "as": mode}
        if mode == "int8":
            packed[name + _Q_SUFFIX], packed[name + _SCALE_SUFFIX] = _quantize_rows(t)
        elif mode == "raw":
            packed[name] = t.contiguous()
        else:
            packed[name] = t.to(_dtype(mode)).contiguous()
    files = {}
    for p in sorted(src.rglob("*")):
        rel = p.relative_to(src)
        if (not p.is_file() or rel.parts[0].startswith(".") or is_weight_file(p.name)
                or p.name in WEIGHT_DESCRIPTIONS):
            continue
        data = p.read_bytes()
        files[rel.as_posix()] = hashlib.sha256(data).hexdigest()
        packed[_FILE_PREFIX + rel.as_posix()] = torch.frombuffer(bytearray(data), dtype=torch.uint8) \
            if data else torch.zeros(0, dtype=torch.uint8)
    info: dict[str, Any] = {"format": PACK_FORMAT, "embedding": embedding, "other": other,
                            "tensors": tensors, "files": files}
    info["rebuilt_sha256"] = _weights_digest(_rebuild(packed, info))
    info["source_sha256"] = rebuilt_sha256(src)
    with atomic_path(out_file) as tmp:
        save_file(packed, str(tmp), metadata={PACK_KEY: json.dumps(info, sort_keys=True)})
    return Path(out_file)


def read_pack_info(file: str | Path) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(file), framework="pt") as f:
        meta = f.metadata() or {}
    if PACK_KEY not in meta:
        raise XdrError(f"{file}: not an xdr model pack (no {PACK_KEY} metadata)")
    info = json.loads(meta[PACK_KEY])
    if info.get("format") != PACK_FORMAT:
        raise XdrError(f"{file}: pack format {info.get('format')}, this xdr reads {PACK_FORMAT}")
    return info


def unpack_model(file: str | Path, out_dir: str | Path, *, verify: bool = True) -> Path:
    """Rebuild a loadable model directory from :func:`pack_model`'s file.

    With ``verify`` (the default) the rebuilt weights must hash (:func:`rebuilt_sha256`) to what the
    sender's own unpack gave, and every file to its recorded sha256; otherwise XdrError.
    """
    from safetensors.torch import load_file

    info = read_pack_info(file)
    packed = load_file(str(file))
    out = Path(out_dir)
    with atomic_dir(out) as tmp:  # refuses a non-empty ``out`` before the slow part
        rebuilt = _rebuild(packed, info)
        for rel, digest in info["files"].items():
            data = packed[_FILE_PREFIX + rel].numpy().tobytes()
            if verify and hashlib.sha256(data).hexdigest() != digest:
                raise XdrError(f"{file}: {rel} does not match its recorded sha256 (pack corrupted)")
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_bytes(data)
        save_weights(rebuilt, tmp / WEIGHTS)
        if verify:
            got = rebuilt_sha256(tmp)
            if got != info["rebuilt_sha256"]:
                raise XdrError(f"{file}: rebuilt weights hash {got[:16]}…, the sender's unpack gave "
                               f"{info['rebuilt_sha256'][:16]}…; not the model that was packed")
    return out
