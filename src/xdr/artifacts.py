"""Artifact directories: the on-disk contracts between pipeline stages.

Each stage writes a directory with ``meta.json`` (what made it), data shards ``part-NNNNN.*`` that are
each written under a temp name and renamed when complete, and ``_DONE`` when the whole stage finished.
A killed stage therefore leaves only complete shards, and resuming means skipping them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from xdr import __version__
from xdr.errors import MismatchError, XdrError

META = "meta.json"
DONE = "_DONE"
_UMASK = os.umask(0)
os.umask(_UMASK)


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
