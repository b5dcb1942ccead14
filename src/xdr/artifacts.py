"""Artifacts: the on-disk contracts between pipeline stages, and how every file reaches disk.

Each long stage writes a directory with ``meta.json`` (what made it), data shards ``part-NNNNN.*`` that
are each written under a temp name and renamed when complete, and ``_DONE`` when the whole stage
finished. A killed stage therefore leaves only complete shards, and resuming means skipping them.
Single-file outputs (mined or synthesized training files) carry a sidecar ``<file>.meta.json`` instead.
Whole directories that are produced in one go (models, converted checkpoints, datasets) are built in a
temp directory and renamed into place (:func:`atomic_dir`).

Lineage: ``_DONE`` holds a run id made when the stage finished, so a later stage records *which* run of
its input it read (:func:`input_identity`): a rebuilt input has a new run id, and a stage resumed or
skipped over it refuses instead of mixing two inputs. Plain files are identified by a hash of their
content, not by size and mtime, which an edit in place can leave unchanged. A directory being written is
locked (``.lock`` holds the writer's PID; a lock whose process is gone is taken over), and temp files a
killed writer left are removed when the next writer starts.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Any

from xdr.errors import MismatchError, XdrError
from xdr.version import __version__

META = "meta.json"
DONE = "_DONE"
LOCK = ".lock"
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
    SEARCH = "search"
    EXPAND = "expand"
    BM25 = "bm25"

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


def ensure_writable(directory: str | Path, *, create: bool = False) -> Path:
    """Prove a file can be written at ``directory`` before any work is done (a read-only or full disk, or
    an ``--out`` that is a file, fails in the first second, not after hours). Nothing is left behind
    unless ``create`` asks for the directory itself."""
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise XdrError(f"{d}: exists and is not a directory; choose another --out")
    probe_dir = d if d.exists() else next(p for p in d.absolute().parents if p.exists())
    if not probe_dir.is_dir():
        raise XdrError(f"{probe_dir}: is not a directory; choose another --out")
    try:
        fd, probe = tempfile.mkstemp(prefix=".probe.", suffix=".tmp", dir=probe_dir)
        os.close(fd)
        os.unlink(probe)
        if create:
            d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise XdrError(f"{d}: cannot write here ({e.strerror or e})") from None
    return d


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


def file_hash(path: str | Path, chunk: int = 1 << 22) -> str:
    """blake2b of a file's content (128 bits): the identity of inputs and of a search's output files."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def input_fingerprint(path: str | Path) -> dict[str, Any]:
    """Identity of an input file or directory by content (blake2b; about 30 s for a 13 GB corpus, small
    next to encoding it). Size and mtime alone miss an edit in place that keeps both."""
    if str(path).startswith("irds:"):  # an ir_datasets id names a fixed, versioned release
        return {"path": str(path)}
    p = Path(path)
    if not p.exists():
        raise XdrError(f"{p}: no such file or directory")
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
        h = hashlib.blake2b(digest_size=16)
        for f in files:
            h.update(f"{f.relative_to(p)}\0{file_hash(f)}\0".encode())
        return {"path": str(p), "files": len(files), "bytes": sum(f.stat().st_size for f in files),
                "blake2b": h.hexdigest()}
    return {"path": str(p), "bytes": p.stat().st_size, "blake2b": file_hash(p)}


def run_id(directory: str | Path) -> str:
    """The id a finished artifact's ``_DONE`` holds; artifacts finished before run ids existed get one
    derived from their meta and ``_DONE`` time, which a rebuild changes too."""
    done = Path(directory) / DONE
    text = done.read_text(encoding="utf-8").strip()
    if text:
        return json.loads(text)["run_id"]
    legacy = (Path(directory) / META).read_bytes() + str(done.stat().st_mtime_ns).encode()
    return hashlib.blake2b(legacy, digest_size=16).hexdigest()


def input_identity(path: str | Path) -> dict[str, Any]:
    """What a stage records about an input: a finished artifact's path, stage and run id, or a file's
    content fingerprint."""
    p = Path(path)
    if (p / META).exists() and (p / DONE).exists():
        return {"path": str(p.resolve()), "stage": read_meta(p).get("stage"), "run_id": run_id(p)}
    return input_fingerprint(p)


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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


_held: set[Path] = set()


def _release_locks() -> None:
    for lock in list(_held):
        release_lock(lock.parent)


atexit.register(_release_locks)


def take_lock(directory: str | Path) -> None:
    """Hold ``directory`` for this process: a second writer is refused while the holder lives; a lock
    whose process is gone (killed) is taken over. Re-entrant within one process."""
    lock = Path(directory) / LOCK
    mine = str(os.getpid())
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        holder = lock.read_text(encoding="utf-8").strip()
        if holder != mine:
            if holder.isdigit() and _pid_alive(int(holder)):
                raise XdrError(f"{directory}: another xdr process (PID {holder}) is writing it; wait for it to "
                               "finish or stop it") from None
            write_text_atomic(lock, mine)  # stale: its writer was killed
    else:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(mine)
    _held.add(lock)


def release_lock(directory: str | Path) -> None:
    lock = Path(directory) / LOCK
    _held.discard(lock)
    with contextlib.suppress(FileNotFoundError):
        if lock.read_text(encoding="utf-8").strip() == str(os.getpid()):
            lock.unlink()


def remove_stale_temps(directory: str | Path) -> None:
    """Remove the temp files and directories (``.NAME.XXXX.tmp``) a killed writer left in ``directory``."""
    for tmp in Path(directory).glob(".*.tmp"):
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def _input_keys(params: dict[str, Any]) -> set[str]:
    """Top-level parameters that identify an input (hold a run id or content hash somewhere inside)."""
    return {k for k, v in params.items() if '"run_id"' in json.dumps(v, default=str)
            or '"blake2b"' in json.dumps(v, default=str)}


def start_artifact(directory: str | Path, stage: str, params: dict[str, Any]) -> dict[str, Any]:
    """Create ``directory`` for ``stage`` or reopen it for a resume, holding its lock.

    Resuming (or skipping a finished artifact) is only allowed when the earlier run had the same
    parameters, inputs included; otherwise its shards would silently mix two configurations or two
    inputs, so we refuse and say how to start over. Temp files of a killed run are removed.
    """
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise XdrError(f"{d}: exists and is not a directory; choose another --out")
    meta = {"stage": str(stage), "xdr_version": __version__, "params": params}
    if (d / META).exists():
        old = read_meta(d)
        if old.get("stage") != str(stage) or old.get("params") != params:
            before = old.get("params", {})
            changed = sorted(k for k in set(params) | set(before) if params.get(k) != before.get(k))
            if changed and set(changed) <= _input_keys(params) | _input_keys(before):
                raise MismatchError(
                    f"{d}: was made from other inputs than now (changed: {', '.join(changed)}: rebuilt or edited "
                    "since); remove it or choose another --out"
                )
            raise MismatchError(
                f"{d}: holds a {old.get('stage')} artifact made with other settings "
                f"(differs in: {', '.join(changed) or 'stage'}); remove it or choose another --out"
            )
        if not is_done(d):  # a finished artifact is only read: no lock, nothing to clean
            take_lock(d)
            remove_stale_temps(d)
        return old
    d.mkdir(parents=True, exist_ok=True)
    take_lock(d)
    remove_stale_temps(d)
    write_json_atomic(d / META, meta)
    return meta


def update_meta(directory: str | Path, **fields: Any) -> None:
    meta = read_meta(directory)
    meta.update(fields)
    write_json_atomic(Path(directory) / META, meta)


def is_done(directory: str | Path) -> bool:
    return (Path(directory) / DONE).exists()


def mark_done(directory: str | Path) -> str:
    """Mark the stage finished under a new run id (which later stages record as this input's identity)
    and release the directory."""
    rid = uuid.uuid4().hex
    write_text_atomic(Path(directory) / DONE, json.dumps({"run_id": rid}) + "\n")
    release_lock(directory)
    return rid


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
