"""Artifacts: the on-disk contracts between pipeline stages, and how every file reaches disk.

Each long stage writes a directory with ``meta.json`` (what made it), data shards ``part-NNNNN.*`` that
are each written under a temp name and renamed when complete, and ``_DONE`` when the whole stage
finished. A killed stage therefore leaves only complete shards, and resuming means skipping them.
Single-file outputs (mined or synthesized training files) carry a sidecar ``<file>.meta.json`` instead.
Whole directories that are produced in one go (models, converted checkpoints, datasets) are built in a
temp directory and renamed into place (:func:`atomic_dir`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Any

from xdr.errors import MismatchError, XdrError
from xdr.version import __version__

META = "meta.json"
DONE = "_DONE"
SIDECAR_SUFFIX = ".meta.json"
_UMASK = os.umask(0)
os.umask(_UMASK)


class Stage(str, Enum):
    """The name each stage records in its artifact's meta: readers check it before using an artifact."""

    ENCODE = "encode"
    AUGMENT = "augment"
    INDEX = "index"
    GENERATE = "generate"
    MAXSIM_STORE = "maxsim-store"
    TRAIN = "train"
    TRAIN_GENERATOR = "train-generator"
    MINE = "mine"
    SYNTHESIZE = "synthesize"

    def __str__(self) -> str:
        return self.value


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``final``; rename it onto ``final`` only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it private; outputs get the usual permissions
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(final: str | Path, *, replace: bool = False) -> Iterator[Path]:
    """Yield a temp directory beside ``final`` that becomes ``final`` only if the block succeeds.

    Entries are made world-readable (mkdtemp and some writers create owner-only files; a shared cache
    must stay readable). An existing ``final`` is swapped out when ``replace``; otherwise it must be
    absent or empty. A killed writer leaves only a dot-named temp directory, never a half-written
    ``final`` that a loader would take for complete.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() and not replace and any(final.iterdir()):
        raise XdrError(f"{final}: exists and is not empty; choose another output directory")
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        for p in [tmp, *tmp.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        if final.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
            os.replace(final, trash / final.name)
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def input_fingerprint(path: str | Path) -> dict[str, Any]:
    """Cheap identity of an input file or directory (size and mtime, not a full hash of 18M rows)."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file())
        return {"path": str(p), "files": len(files), "bytes": sum(f.stat().st_size for f in files)}
    st = p.stat()
    return {"path": str(p), "bytes": st.st_size, "mtime": int(st.st_mtime)}


def sidecar_path(path: str | Path) -> Path:
    """Where a single-file output records how it was made: ``<file>.meta.json``."""
    p = Path(path)
    return p.with_name(p.name + SIDECAR_SUFFIX)


def write_sidecar_meta(path: str | Path, stage: Stage, params: dict[str, Any], **fields: Any) -> Path:
    """Write the sidecar of a finished single-file output, in the same shape as a directory's meta."""
    meta = {"stage": str(stage), "xdr_version": __version__, "params": params, **fields}
    out = sidecar_path(path)
    write_json_atomic(out, meta)
    return out


def shard_name(i: int, suffix: str) -> str:
    return f"part-{i:05d}{suffix}"


def read_meta(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / META
    if not path.exists():
        raise XdrError(f"{directory}: not an xdr artifact (no {META})")
    return json.loads(path.read_text(encoding="utf-8"))


def start_artifact(directory: str | Path, stage: str, params: dict[str, Any]) -> dict[str, Any]:
    """Create ``directory`` for ``stage`` or reopen it for a resume.

    Resuming is only allowed when the earlier run had the same parameters; otherwise its shards would
    silently mix two configurations, so we refuse and say how to start over.
    """
    d = Path(directory)
    meta = {"stage": stage, "xdr_version": __version__, "params": params}
    if (d / META).exists():
        old = read_meta(d)
        if old.get("stage") != stage or old.get("params") != params:
            changed = sorted(
                k for k in set(params) | set(old.get("params", {}))
                if params.get(k) != old.get("params", {}).get(k)
            )
            raise MismatchError(
                f"{d}: holds a {old.get('stage')} artifact made with other settings "
                f"(differs in: {', '.join(changed) or 'stage'}); remove it or choose another --out"
            )
        return old
    d.mkdir(parents=True, exist_ok=True)
    write_json_atomic(d / META, meta)
    return meta


def update_meta(directory: str | Path, **fields: Any) -> None:
    meta = read_meta(directory)
    meta.update(fields)
    write_json_atomic(Path(directory) / META, meta)


def is_done(directory: str | Path) -> bool:
    return (Path(directory) / DONE).exists()


def mark_done(directory: str | Path) -> None:
    write_text_atomic(Path(directory) / DONE, "")


def require_done(directory: str | Path) -> dict[str, Any]:
    """Read the meta of a finished artifact; an unfinished one is refused rather than half-used."""
    meta = read_meta(directory)
    if not is_done(directory):
        raise XdrError(f"{directory}: the {meta.get('stage')} stage did not finish; run it again to resume")
    return meta


def open_artifact(directory: str | Path, *stages: Stage, what: str | None = None) -> dict[str, Any]:
    """The meta of a finished artifact made by one of ``stages``: the one check every reader makes.

    ``what`` names the expected artifact in the error ("an embedding store"), for when a user passed
    the output of another stage.
    """
    meta = require_done(directory)
    if stages and meta.get("stage") not in {str(s) for s in stages}:
        expected = what or " or ".join(f"a {s} artifact" for s in stages)
        raise XdrError(f"{directory}: is a {meta.get('stage')} artifact, not {expected}")
    return meta
