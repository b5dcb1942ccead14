"""The encode stage: texts in, a sharded embedding store out.

Layout of an embedding store::

    meta.json            stage "encode"; params: model spec, kind, shard_size, dim, dtype, normalized,
                         source; after the run also "rows" and "shards"
    part-00000.ids.txt   the ids of the shard's rows, one per line, in row order
    part-00000.npy       float32 [rows, dim]; written after its ids, so a shard is complete when this exists
    ...
    _DONE

Shard ``i`` holds input rows ``[i * shard_size, (i + 1) * shard_size)``. A killed run leaves only complete
shards; the rerun streams the input again, checks the ids of the complete shards against it without
encoding them, and carries on with the first missing shard.
"""

from __future__ import annotations

import itertools
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence, Sized
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TextIO, TypedDict

import numpy as np
import pyarrow as pa
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from xdr.artifacts import (
    atomic_path,
    input_fingerprint,
    is_done,
    mark_done,
    require_done,
    shard_name,
    start_artifact,
    update_meta,
)
from xdr.config import ModelSpec
from xdr.data.schema import Passage, Query
from xdr.errors import MismatchError, XdrError

if TYPE_CHECKING:
    from typing_extensions import Unpack

Kind = Literal["query", "passage"]
IDS_SUFFIX = ".ids.txt"
VECTORS_SUFFIX = ".npy"
EMBEDDING_STAGES = ("encode", "augment")  # stages whose output has the embedding-store layout
_NEWLINE = 10


class TextEncoder(Protocol):
    """What the encode and search stages need from a model (``xdr.models.encoder.Encoder`` is one)."""

    @property
    def spec(self) -> ModelSpec: ...

    @property
    def dim(self) -> int: ...

    def encode(
        self, texts: Sequence[str], kind: Kind, batch_size: int = ..., progress: bool = False
    ) -> np.ndarray:
        """float32 [len(texts), dim], in input order."""
        ...


class _RateColumn(ProgressColumn):
    """Rows per second: the throughput figure that decides how long an 18M-row corpus takes."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed or (task.completed / task.elapsed if task.elapsed else 0.0)
        return Text(f"{speed:,.0f} rows/s", style="progress.data.speed")


def row_progress(enabled: bool) -> Progress:
    """A progress bar on stderr, so that stdout stays clean for piping."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        console=Console(file=sys.stderr),
        disable=not enabled,
    )


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
    """Read an id file written by :func:`write_ids` into one Arrow array.

    Done with numpy rather than ``str.split`` because an index over 18M passages would otherwise hold
    18M Python strings (~1.5 GB) where the Arrow array needs only the bytes.
    """
    data = np.fromfile(path, dtype=np.uint8)
    ends = np.flatnonzero(data == _NEWLINE)
    starts = np.concatenate(([0], ends[:-1] + 1))
    offsets = np.concatenate(([0], np.cumsum(ends - starts))).astype(np.int64)
    chars = data[data != _NEWLINE]
    ids = pa.LargeStringArray.from_buffers(len(ends), pa.py_buffer(offsets), pa.py_buffer(chars))
    ids.validate(full=True)
    return ids


class _IdGuard:
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


def _complete_shards(out_dir: Path) -> int:
    """How many shards, from the first, have both files; anything after a gap is rewritten."""
    n = 0
    while all((out_dir / shard_name(n, suffix)).exists() for suffix in (IDS_SUFFIX, VECTORS_SUFFIX)):
        n += 1
    return n


def _encode_shard(
    rows: list[tuple[str, str]], encoder: TextEncoder, kind: Kind, batch_size: int, chunk_size: int,
    progress: Progress, task: TaskID,
) -> np.ndarray:
    emb = np.empty((len(rows), encoder.dim), dtype=np.float32)
    for start in range(0, len(rows), chunk_size):
        texts = [text for _, text in rows[start:start + chunk_size]]
        vecs = encoder.encode(texts, kind, batch_size=batch_size, progress=False)
        if not np.isfinite(vecs).all():
            raise XdrError(
                f"the model produced non-finite vectors for rows {start}..{start + len(texts) - 1} of this "
                "shard; a float16 model can overflow, try dtype float32 or bfloat16"
            )
        emb[start:start + len(texts)] = vecs
        progress.advance(task, len(texts))
    return emb


def encode_records(
    records: Iterable[tuple[str, str]],
    encoder: TextEncoder,
    out_dir: str | Path,
    kind: Kind,
    *,
    shard_size: int = 100_000,
    batch_size: int = 64,
    chunk_size: int = 8192,
    source: str | Path | dict[str, Any] | None = None,
    total: int | None = None,
    progress: bool = True,
) -> Path:
    """Encode ``(id, text)`` records into an embedding store at ``out_dir``, resuming an unfinished one.

    ``chunk_size`` rows go to the encoder per call: many batches, so the encoder can bucket by length,
    yet few enough that the progress bar moves. Memory is bounded by one shard of texts and vectors.
    ``source`` identifies the input in the meta; a path is fingerprinted (size, mtime), so that a changed
    input file is refused on resume instead of being mixed with the shards of the old one.
    """
    if shard_size <= 0 or chunk_size <= 0:
        raise XdrError(f"shard_size and chunk_size must be positive (got {shard_size}, {chunk_size})")
    out = Path(out_dir)
    it = iter(records)
    first = next(it, None)
    if first is None:
        raise XdrError(f"empty corpus: no {kind} records to encode into {out}")
    if isinstance(source, str | Path):
        source = input_fingerprint(source)
    spec = encoder.spec
    params = {
        "model": spec.model_dump(),
        "kind": kind,
        "shard_size": shard_size,
        "dim": encoder.dim,
        "dtype": "float32",
        "normalized": spec.normalize,
        "source": source,
    }
    start_artifact(out, "encode", params)
    if is_done(out):
        return out
    for stale in out.glob(".part-*.tmp"):  # temp files of a killed run
        stale.unlink()

    kept = _complete_shards(out)
    guard = _IdGuard(out)
    rows_total = n_shards = 0
    with row_progress(progress) as bar:
        task = bar.add_task(f"encode {kind}s", total=total)
        shards = _batched(itertools.chain([first], it), shard_size)
        for i, rows in enumerate(shards):
            ids = [rid for rid, _ in rows]
            if i < kept:
                if ids != read_ids(out / shard_name(i, IDS_SUFFIX)).to_pylist():
                    raise MismatchError(
                        f"{out}: the input differs from the one the interrupted run was encoding (shard {i} "
                        "has other ids); remove the directory or choose another --out"
                    )
                bar.update(task, description=f"encode {kind}s (kept {i + 1} done shards)")
                bar.advance(task, len(rows))
            guard.add(ids)
            if i >= kept:
                emb = _encode_shard(rows, encoder, kind, batch_size, chunk_size, bar, task)
                with atomic_path(out / shard_name(i, IDS_SUFFIX)) as tmp, open_ids(tmp) as id_file:
                    write_ids(id_file, ids)
                with atomic_path(out / shard_name(i, VECTORS_SUFFIX)) as tmp, open(tmp, "wb") as vec_file:
                    np.save(vec_file, emb)
            rows_total += len(rows)
            n_shards += 1
    if n_shards < kept:
        raise MismatchError(
            f"{out}: the input is shorter than the one the interrupted run was encoding "
            f"({n_shards} shards now, {kept} done before); remove the directory or choose another --out"
        )
    update_meta(out, rows=rows_total, shards=n_shards)
    mark_done(out)
    return out


def _batched(it: Iterator[tuple[str, str]], n: int) -> Iterator[list[tuple[str, str]]]:
    while batch := list(itertools.islice(it, n)):
        yield batch


def _len_or_none(x: object) -> int | None:
    return len(x) if isinstance(x, Sized) else None


class EncodeOptions(TypedDict, total=False):
    """The keyword options of :func:`encode_records` that its wrappers pass through."""

    shard_size: int
    batch_size: int
    chunk_size: int
    source: str | Path | dict[str, Any] | None
    progress: bool


def encode_passages(
    passages: Iterable[Passage], encoder: TextEncoder, out_dir: str | Path, **options: Unpack[EncodeOptions]
) -> Path:
    """Encode a corpus; each passage is seen as title + separator + text, per the model spec."""
    sep = encoder.spec.title_separator
    records = ((p.id, p.joined(sep)) for p in passages)
    return encode_records(records, encoder, out_dir, "passage", total=_len_or_none(passages), **options)


def encode_queries(
    queries: Iterable[Query], encoder: TextEncoder, out_dir: str | Path, **options: Unpack[EncodeOptions]
) -> Path:
    """Encode queries into the same store layout, e.g. generated queries that are searched later."""
    records = ((q.id, q.text) for q in queries)
    return encode_records(records, encoder, out_dir, "query", total=_len_or_none(queries), **options)


def store_meta(emb_dir: str | Path) -> dict[str, Any]:
    """The meta of a finished embedding store; anything else (unfinished, another stage) is refused."""
    meta = require_done(emb_dir)
    if meta.get("stage") not in EMBEDDING_STAGES:
        raise XdrError(f"{emb_dir}: is a {meta.get('stage')} artifact, not an embedding store")
    return meta


def iter_shards(emb_dir: str | Path) -> Iterator[tuple[list[str], np.ndarray]]:
    """Yield ``(ids, vectors)`` shard by shard from a finished store, so readers stay memory-bounded."""
    d = Path(emb_dir)
    for i in range(store_meta(d)["shards"]):
        ids = read_ids(d / shard_name(i, IDS_SUFFIX)).to_pylist()
        emb = np.load(d / shard_name(i, VECTORS_SUFFIX))
        if len(ids) != len(emb):
            raise XdrError(f"{d}: shard {i} has {len(ids)} ids but {len(emb)} vectors; encode it again")
        yield ids, emb


def load_embeddings(emb_dir: str | Path) -> tuple[list[str], np.ndarray]:
    """All ids and vectors of a store at once; for stores that fit in memory."""
    ids: list[str] = []
    parts = []
    for shard_ids, emb in iter_shards(emb_dir):
        ids.extend(shard_ids)
        parts.append(emb)
    return ids, np.concatenate(parts)


class _RowEncoder:
    """Encodes the text ``"i"`` as row ``i`` of a matrix: how precomputed vectors enter the one writer."""

    def __init__(self, spec: ModelSpec, vectors: np.ndarray) -> None:
        self.spec, self.dim, self._vectors = spec, vectors.shape[1], vectors

    def encode(
        self, texts: Sequence[str], kind: Kind, batch_size: int = 0, progress: bool = False
    ) -> np.ndarray:
        return self._vectors[np.fromiter(map(int, texts), dtype=np.int64, count=len(texts))]


def write_embeddings(
    ids: Sequence[str], vectors: np.ndarray, spec: ModelSpec, out_dir: str | Path, *,
    kind: Kind = "passage", **options: Unpack[EncodeOptions],
) -> Path:
    """Store vectors computed elsewhere (another toolkit, a benchmark) as an embedding store of ``spec``."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(ids) != len(vectors):
        raise XdrError(f"need one vector per id: {len(ids)} ids, vectors of shape {vectors.shape}")
    if spec.normalize and not np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3):
        raise XdrError(f"model {spec.name} normalizes its vectors but these are not unit length")
    records = zip(ids, map(str, range(len(ids))), strict=True)
    return encode_records(records, _RowEncoder(spec, vectors), out_dir, kind, total=len(ids), **options)
