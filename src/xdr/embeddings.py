"""The embedding store: the one on-disk format for vectors, written by encode and augment, read by index,
maxsim-store and mine.

Layout::

    meta.json            stage "encode" or "augment"; params: model spec, kind, shard_size, dim, dtype,
                         normalized, source (+ the writing stage's own settings); after the run also
                         "rows" and "shards"
    part-00000.ids.txt   the ids of the shard's rows, one per line, in row order
    part-00000.npy       float32 [rows, dim]; written after its ids, so a shard is complete when this exists
    ...
    _DONE

Shard ``i`` holds input rows ``[i * shard_size, (i + 1) * shard_size)``. A killed writer leaves only
complete shards; :class:`EmbeddingWriter` lets a rerun check them against its input and carry on with
the first missing one. Id files are read with numpy into one Arrow array rather than ``str.split``,
because an index over 18M passages would otherwise hold 18M Python strings (~1.5 GB).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pyarrow as pa

from xdr.artifacts import (
    Stage,
    atomic_path,
    input_identity,
    is_done,
    mark_done,
    open_artifact,
    shard_name,
    start_artifact,
    update_meta,
)
from xdr.config import ModelSpec
from xdr.errors import MismatchError, XdrError
from xdr.models.base import Kind
from xdr.progress import row_progress

IDS_SUFFIX = ".ids.txt"
VECTORS_SUFFIX = ".npy"
EMBEDDING_STAGES = (Stage.ENCODE, Stage.AUGMENT)  # the stages that write this layout
_NEWLINE = 10


def check_ids(ids: Sequence[str]) -> None:
    """Ids end up in TREC files, whose columns are split on whitespace: an id with a space, a tab or a
    newline is refused when it is first read, not after hours of encoding when search writes the run."""
    bad = next((i for i in ids if not i or any(c.isspace() for c in i)), None)
    if bad is not None:
        raise XdrError(f"id {bad!r} is empty or contains whitespace, which TREC run files cannot hold; "
                       "rename it (e.g. spaces to '_')")


def write_ids(f: TextIO, ids: Sequence[str]) -> None:
    """Append one id per line to a file from :func:`open_ids`: the format of all id lists in xdr."""
    bad = next((i for i in ids if "\n" in i), None)
    if bad is not None:
        raise XdrError(f"id {bad!r} contains a newline; ids must be single-line strings")
    f.write("".join(f"{i}\n" for i in ids))


def open_ids(path: Path) -> TextIO:
    """Open an id file for writing: UTF-8, with newlines left untranslated on every platform."""
    return open(path, "w", encoding="utf-8", newline="")


def read_ids(path: str | Path) -> pa.LargeStringArray:
    """Read an id file written by :func:`write_ids` into one Arrow array."""
    data = np.fromfile(path, dtype=np.uint8)
    ends = np.flatnonzero(data == _NEWLINE)
    starts = np.concatenate(([0], ends[:-1] + 1))
    offsets = np.concatenate(([0], np.cumsum(ends - starts))).astype(np.int64)
    chars = data[data != _NEWLINE]
    ids = pa.LargeStringArray.from_buffers(len(ends), pa.py_buffer(offsets), pa.py_buffer(chars))
    ids.validate(full=True)
    return ids


def write_ids_file(path: Path, ids: Sequence[str]) -> None:
    """Write a whole id file atomically."""
    with atomic_path(path) as tmp, open_ids(tmp) as f:
        write_ids(f, ids)


def store_params(
    spec: ModelSpec, kind: Kind, dim: int, shard_size: int, *, normalized: bool, source: Any
) -> dict[str, Any]:
    """The meta parameters every embedding store has, whichever stage wrote it."""
    if isinstance(source, str | Path):
        source = input_identity(source)
    return {
        "model": spec.model_dump(), "kind": kind, "shard_size": shard_size, "dim": dim, "dtype": "float32",
        "normalized": normalized, "source": source,
    }


class IdGuard:
    """Finds ids repeated anywhere in the input while holding 8 bytes per id, not a set of 18M strings.

    Ids are compared by 64-bit hash (``hash`` is stable within the process, which is all we need: the
    earlier shards are re-read in this process on resume); a hash hit is confirmed against the strings
    in the earlier shards' id files before it is reported, so a collision is never a false error.
    """

    def __init__(self, out_dir: Path) -> None:
        self._out = out_dir
        self._shards = 0
        self._seen = np.empty(0, dtype=np.int64)  # sorted

    def add(self, ids: list[str]) -> None:
        check_ids(ids)
        dup = next((i for i, n in Counter(ids).items() if n > 1), None)
        if dup is not None:
            raise XdrError(f"duplicate id {dup!r} in shard {self._shards} of the input")
        hashes = np.sort(np.fromiter(map(hash, ids), dtype=np.int64, count=len(ids)))
        pos = np.searchsorted(self._seen, hashes)
        hit = np.zeros(len(hashes), dtype=bool)
        inside = pos < len(self._seen)
        hit[inside] = self._seen[pos[inside]] == hashes[inside]
        if hit.any():
            hits = set(hashes[hit].tolist())
            self._confirm({i for i in ids if hash(i) in hits})
        self._seen = np.insert(self._seen, pos, hashes)
        self._shards += 1

    def _confirm(self, candidates: set[str]) -> None:
        for j in range(self._shards):
            dup = next((i for i in read_ids(self._out / shard_name(j, IDS_SUFFIX)).to_pylist()
                        if i in candidates), None)
            if dup is not None:
                raise XdrError(f"duplicate id {dup!r}: in shard {j} and again in shard {self._shards}")


def write_shard(out_dir: Path, i: int, ids: Sequence[str], vectors: np.ndarray) -> None:
    """Shard ``i`` of a store: its ids, then its vectors (the completion mark), each atomically. Called by
    :class:`EmbeddingWriter` and by the workers of a parallel run, which write shards the driver opened."""
    if len(ids) != len(vectors):
        raise XdrError(f"shard {i}: {len(ids)} ids but {len(vectors)} vectors")
    write_ids_file(out_dir / shard_name(i, IDS_SUFFIX), ids)
    with atomic_path(out_dir / shard_name(i, VECTORS_SUFFIX)) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(vectors, dtype=np.float32))


class EmbeddingWriter:
    """The one writer of embedding stores: opens (or resumes) the artifact and writes shard by shard.

    ``kept`` shards, from the first, were finished by a killed run; the caller checks each against its
    input with :meth:`check_kept` instead of recomputing it, and writes the others with :meth:`write`.
    """

    def __init__(self, out_dir: str | Path, stage: Stage, params: dict[str, Any]) -> None:
        self.out = Path(out_dir)
        start_artifact(self.out, stage, params)
        self.finished = is_done(self.out)
        if not self.finished:
            for stale in self.out.glob(".part-*.tmp"):  # temp files of a killed run
                stale.unlink()
        n = 0
        while all((self.out / shard_name(n, s)).exists() for s in (IDS_SUFFIX, VECTORS_SUFFIX)):
            n += 1
        self.kept = n

    def check_kept(self, i: int, ids: Sequence[str]) -> None:
        """Refuse to resume when a finished shard holds other rows than the input gives it now."""
        if list(ids) != read_ids(self.out / shard_name(i, IDS_SUFFIX)).to_pylist():
            raise MismatchError(
                f"{self.out}: the input differs from the one the interrupted run was writing (shard {i} has "
                "other ids); remove the directory or choose another --out"
            )

    def write(self, i: int, ids: Sequence[str], vectors: np.ndarray) -> None:
        write_shard(self.out, i, ids, vectors)

    def shard_done(self, i: int) -> bool:
        """Whether shard ``i`` is complete (shards written by parallel workers may finish out of order)."""
        return (self.out / shard_name(i, VECTORS_SUFFIX)).exists()

    def finish(self, rows: int, shards: int, **fields: Any) -> Path:
        if shards < self.kept:
            raise MismatchError(
                f"{self.out}: the input is shorter than the one the interrupted run was writing "
                f"({shards} shards now, {self.kept} done before); remove the directory or choose another --out"
            )
        missing = [i for i in range(shards) if not self.shard_done(i)]
        if missing:  # never mark done over shards a worker wrote somewhere else
            raise XdrError(
                f"{self.out}: {len(missing)} of {shards} shards are not there (first: {missing[0]}); a worker "
                "wrote them elsewhere: on a cluster, --out must be on a filesystem every node shares"
            )
        update_meta(self.out, rows=rows, shards=shards, **fields)
        mark_done(self.out)
        return self.out


def embeddings_meta(emb_dir: str | Path) -> dict[str, Any]:
    """The meta of a finished embedding store; anything else (unfinished, another stage) is refused."""
    return open_artifact(emb_dir, *EMBEDDING_STAGES, what="an embedding store")


def iter_shards(emb_dir: str | Path) -> Iterator[tuple[list[str], np.ndarray]]:
    """Yield ``(ids, vectors)`` shard by shard from a finished store, so readers stay memory-bounded."""
    d = Path(emb_dir)
    for i in range(embeddings_meta(d)["shards"]):
        ids = read_ids(d / shard_name(i, IDS_SUFFIX)).to_pylist()
        emb = np.load(d / shard_name(i, VECTORS_SUFFIX))
        if len(ids) != len(emb):
            raise XdrError(f"{d}: shard {i} has {len(ids)} ids but {len(emb)} vectors; encode it again")
        yield ids, emb


def iter_shard_ids(emb_dir: str | Path) -> Iterator[list[str]]:
    """The ids of each shard of a finished store, without loading its vectors."""
    d = Path(emb_dir)
    for i in range(embeddings_meta(d)["shards"]):
        yield read_ids(d / shard_name(i, IDS_SUFFIX)).to_pylist()


def load_embeddings(emb_dir: str | Path) -> tuple[list[str], np.ndarray]:
    """All ids and vectors of a store at once; for stores that fit in memory."""
    ids: list[str] = []
    parts = []
    for shard_ids, emb in iter_shards(emb_dir):
        ids.extend(shard_ids)
        parts.append(emb)
    return ids, np.concatenate(parts)


def training_sample(emb_dir: str | Path, size: int, seed: int) -> np.ndarray:
    """A uniform sample of ``size`` rows (for training IVF/PQ), gathered shard by shard so that only the
    sample is held in memory."""
    rows = embeddings_meta(emb_dir)["rows"]
    pick = np.sort(np.random.default_rng(seed).choice(rows, size=min(size, rows), replace=False))
    parts, offset = [], 0
    for _, emb in iter_shards(emb_dir):
        lo, hi = np.searchsorted(pick, [offset, offset + len(emb)])
        parts.append(emb[pick[lo:hi] - offset])
        offset += len(emb)
    return np.concatenate(parts)


def write_embeddings(
    ids: Sequence[str], vectors: np.ndarray, spec: ModelSpec, out_dir: str | Path, *,
    kind: Kind = "passage", shard_size: int = 100_000, source: Any = None, progress: bool = True,
) -> Path:
    """Store vectors computed elsewhere (another toolkit, a benchmark) as an embedding store of ``spec``."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(ids) != len(vectors):
        raise XdrError(f"need one vector per id: {len(ids)} ids, vectors of shape {vectors.shape}")
    if not len(ids):
        raise XdrError(f"empty corpus: no {kind} records to encode into {out_dir}")
    if shard_size <= 0:
        raise XdrError(f"shard_size must be positive (got {shard_size})")
    if spec.normalize and not np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3):
        raise XdrError(f"model {spec.name} normalizes its vectors but these are not unit length")
    params = store_params(spec, kind, vectors.shape[1], shard_size, normalized=spec.normalize, source=source)
    writer = EmbeddingWriter(out_dir, Stage.ENCODE, params)
    if writer.finished:
        return writer.out
    guard = IdGuard(writer.out)
    n = 0
    with row_progress(progress) as bar:
        task = bar.add_task(f"store {kind} vectors", total=len(ids))
        for n, lo in enumerate(range(0, len(ids), shard_size), 1):
            shard = list(ids[lo:lo + shard_size])
            if n - 1 < writer.kept:
                writer.check_kept(n - 1, shard)
            guard.add(shard)
            if n - 1 >= writer.kept:
                writer.write(n - 1, shard, vectors[lo:lo + shard_size])
            bar.advance(task, len(shard))
    return writer.finish(rows=len(ids), shards=n)
