"""The generated-query vector store: each passage's generated-query vectors, compressed and memory-mapped.

It feeds the max-sim score (:mod:`xdr.maxsim.rerank`, and multi-vector indexes in
:mod:`xdr.index.multivector`)::

    score(q, p) = s(q, p) + beta * max_i s(q, g_i)

where ``g_i`` are the vectors of the queries generated for passage ``p``. A passage without generated
queries uses ``s(q, p)`` in place of the max term, so it is neither rewarded nor punished for having
none. Where fusion (`xdr augment`) averages the queries into one vector, max-sim lets the single
generated query closest to the test query speak, which is what a same-language paraphrase gives.

Layout of a store (`xdr maxsim-store`)::

    meta.json              stage "maxsim-store"; params: model spec, dim, dtype, pq_m, train_sample,
                           seed, source; after the build also passages, vectors, duplicates_dropped,
                           bytes_per_vector
    pq.faiss               the trained product quantizer (dtype "pq" only), written before any shard
    part-00000.ids.txt     docids of the shard's passages, in the input (corpus) order
    part-00000.counts.npy  int32 [passages]: vectors per passage
    part-00000.scales.npy  float32 [vectors]: each vector's scale (dtype "int8" only)
    part-00000.codes.npy   float16 [vectors, dim] | int8 [vectors, dim] | uint8 PQ codes [vectors, pq_m];
                           written last, so a shard is complete when it exists
    keys.npy, rows.npy     sorted 64-bit hashes of the docids and their passage numbers: the lookup
    _DONE

Store shard ``i`` comes from input shard ``i`` of a ``--kind generated`` embedding artifact (ids
``docid::lang::k``), so memory is bounded by one shard; a passage whose queries run on into the next
input shard is carried over to that shard's output. Codes are memory-mapped when read, so a store of
630M vectors costs the reader only the pages it touches.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np

from xdr.artifacts import (
    Stage,
    atomic_path,
    input_identity,
    is_done,
    mark_done,
    open_artifact,
    read_meta,
    shard_name,
    start_artifact,
    update_meta,
)
from xdr.config import ModelSpec
from xdr.embeddings import IDS_SUFFIX, VECTORS_SUFFIX, embeddings_meta, read_ids, training_sample, write_ids_file
from xdr.engine import Advance, EngineSettings, ShardTask, worker_pool
from xdr.errors import DataError, MismatchError, XdrError
from xdr.generate.artifact import split_generated_id

STAGE = Stage.MAXSIM_STORE
StoreDType = Literal["float16", "int8", "pq"]
DTYPES: tuple[str, ...] = ("float16", "int8", "pq")
PQ_FILE = "pq.faiss"
KEYS_FILE, ROWS_FILE = "keys.npy", "rows.npy"
COUNTS, SCALES, CODES = ".counts.npy", ".scales.npy", ".codes.npy"
DUPLICATE_COSINE = 1.0 - 1e-5  # the same text encoded twice; distinct paraphrases sit far below


def docid_keys(docids: Iterable[str]) -> np.ndarray:
    """Stable 64-bit hashes (blake2b) of docids: the store's lookup holds 8 bytes per passage, not a string."""
    return np.array(
        [int.from_bytes(hashlib.blake2b(d.encode(), digest_size=8).digest(), "little") for d in docids],
        dtype=np.uint64,
    )


class _Codec:
    """Turns float32 vectors into the store's codes and back."""

    def __init__(self, dtype: str, dim: int, pq: faiss.ProductQuantizer | None = None) -> None:
        if dtype not in DTYPES:
            raise XdrError(f"unknown store dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
        self.dtype, self.dim, self.pq = dtype, dim, pq

    @property
    def bytes_per_vector(self) -> int:
        if self.dtype == "float16":
            return 2 * self.dim
        if self.dtype == "int8":
            return self.dim + 4  # + the float32 scale
        assert self.pq is not None
        return int(self.pq.code_size)

    def encode(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if self.dtype == "float16":
            return v.astype(np.float16), None
        if self.dtype == "int8":  # one scale per vector: needs no pass over the data before the first shard
            scale = np.maximum(np.abs(v).max(axis=1), 1e-12).astype(np.float32) / 127.0
            return np.rint(v / scale[:, None]).astype(np.int8), scale
        assert self.pq is not None
        return self.pq.compute_codes(np.ascontiguousarray(v, dtype=np.float32)), None

    def decode(self, codes: np.ndarray, scales: np.ndarray | None) -> np.ndarray:
        if self.dtype == "float16":
            return codes.astype(np.float32)
        if self.dtype == "int8":
            assert scales is not None
            return codes.astype(np.float32) * scales[:, None]
        assert self.pq is not None
        return self.pq.decode(np.ascontiguousarray(codes))


def _owners(ids: list[str], path: Path) -> list[str]:
    """The passage of each generated-query id, or a DataError naming the id file and line."""
    owners = []
    for line, q in enumerate(ids, 1):
        try:
            owners.append(split_generated_id(q)[0])
        except ValueError:
            raise DataError(path, line, "id", f"{q!r} is not a generated-query id (docid::lang::k); encode the "
                            "generate artifact with `xdr encode GEN --kind generated`") from None
    return owners


def _distinct(v: np.ndarray) -> np.ndarray:
    """Mask of the vectors that repeat no earlier one (cosine >= 1 - 1e-5): duplicate queries change no
    max, so they only cost bytes (and rows of a multi-vector index)."""
    u = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    return ~np.triu(u @ u.T >= DUPLICATE_COSINE, k=1).any(axis=0)


def _train_pq(src: Path, out: Path, dim: int, m: int, train_sample: int, seed: int) -> faiss.ProductQuantizer:
    """Train the product quantizer on a uniform sample once; a resumed build reads it back."""
    path = out / PQ_FILE
    if path.exists():
        return faiss.read_ProductQuantizer(str(path))
    sample = training_sample(src, train_sample, seed)
    pq = faiss.ProductQuantizer(dim, m, 8)
    if len(sample) < 256:
        raise XdrError(f"{src}: PQ needs at least 256 vectors to train its 256 centroids; it has {len(sample)}")
    pq.train(np.ascontiguousarray(sample, dtype=np.float32))
    with atomic_path(path) as tmp:
        faiss.write_ProductQuantizer(pq, str(tmp))
    return pq


def build_vector_store(
    emb_dir: str | Path,
    out_dir: str | Path,
    *,
    dtype: StoreDType = "float16",
    pq_m: int | None = None,
    train_sample: int = 100_000,
    seed: int = 0,
    progress: bool = True,
    engine: EngineSettings | None = None,
) -> Path:
    """Compress a ``--kind generated`` embedding artifact into a max-sim store, resuming an unfinished one.

    Shards are written by the workers of ``engine`` (default: this process); the driver reads only ids.

    Identical queries of a passage are stored once. ``dtype`` "pq" keeps ``pq_m`` bytes per vector
    (default dim / 8; dim must be a multiple), trained on ``train_sample`` vectors.
    """
    src, out = Path(emb_dir), Path(out_dir)
    meta = embeddings_meta(src)
    p = meta["params"]
    if p["kind"] != "query":
        raise XdrError(f"{src}: holds {p['kind']} embeddings; generated queries must be encoded as queries "
                       "(`xdr encode GENERATED --kind generated`)")
    dim = int(p["dim"])
    if dtype not in DTYPES:
        raise XdrError(f"unknown store dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if dtype == "pq":
        pq_m = max(1, dim // 8) if pq_m is None else pq_m
        if pq_m < 1:
            raise XdrError(f"pq_m must be a positive number of bytes per vector, not {pq_m}")
        if dim % pq_m:
            raise XdrError(f"pq_m must divide the dimension {dim}; got {pq_m}")
    else:
        pq_m = None
    params = {
        "model": p["model"], "dim": dim, "dtype": dtype, "pq_m": pq_m,
        "train_sample": train_sample if dtype == "pq" else None, "seed": seed,
        "source": {**input_identity(src), "rows": meta["rows"], "source": p["source"]},
    }
    start_artifact(out, STAGE, params)
    if is_done(out):
        return out
    for stale in out.glob(".*.tmp"):  # temp files of a killed run
        stale.unlink()
    if pq_m:
        _train_pq(src, out, dim, pq_m, train_sample, seed)
    n_shards = meta["shards"]

    def tasks() -> Iterator[ShardTask[tuple[int, list[str], list[Segment]]]]:
        carry_docs: list[str] = []
        carry: list[Segment] = []
        for i in range(n_shards):
            ids_path = src / shard_name(i, IDS_SUFFIX)
            owners = _owners(read_ids(ids_path).to_pylist(), ids_path)
            n = len(np.load(src / shard_name(i, VECTORS_SUFFIX), mmap_mode="r"))
            if len(owners) != n:
                raise XdrError(f"{src}: shard {i} has {len(owners)} ids but {n} vectors")
            docs = carry_docs + owners
            # the last passage may go on in the next shard: hold it back, except after the last shard
            cut = len(docs)
            if i < n_shards - 1:
                while cut > 0 and docs[cut - 1] == docs[-1]:
                    cut -= 1
            head, carry = _split([*carry, (i, 0, n)], cut)
            done = (out / shard_name(i, CODES)).exists()
            if done and read_ids(out / shard_name(i, IDS_SUFFIX)).to_pylist() != list(dict.fromkeys(docs[:cut])):
                raise MismatchError(f"{out}: shard {i} came from other generated queries; remove the directory")
            yield ShardTask(i, n, None if done else (i, docs[:cut], head))
            carry_docs = docs[cut:]

    with worker_pool(engine, partial(_open_codec, out, dtype, dim)) as pool:
        pool.run(tasks(), partial(_store_shard, src, out), label=f"maxsim store ({dtype})", total_rows=meta["rows"],
                 total_shards=n_shards, progress=progress, out_dir=out)
    return _finish(out, meta["rows"], n_shards, _open_codec(out, dtype, dim))


Segment = tuple[int, int, int]  # rows [lo, hi) of input shard i


def _split(segments: list[Segment], cut: int) -> tuple[list[Segment], list[Segment]]:
    """The first ``cut`` rows of ``segments`` and the rest, as segments."""
    head: list[Segment] = []
    tail: list[Segment] = []
    for i, lo, hi in segments:
        take = max(0, min(hi - lo, cut))
        if take:
            head.append((i, lo, lo + take))
        if lo + take < hi:
            tail.append((i, lo + take, hi))
        cut -= take
    return head, tail


def _open_codec(out: Path, dtype: str, dim: int) -> _Codec:
    """A worker's codec; the product quantizer (trained by the driver before any shard) is read from disk."""
    pq = faiss.read_ProductQuantizer(str(out / PQ_FILE)) if dtype == "pq" else None
    return _Codec(dtype, dim, pq)


def _store_shard(src: Path, out: Path, codec: _Codec, shard: tuple[int, list[str], list[Segment]],
                 advance: Advance) -> int:
    """One output shard from its rows of the input (memory-mapped); runs on a worker."""
    i, docs, segments = shard
    parts = [np.load(src / shard_name(j, VECTORS_SUFFIX), mmap_mode="r")[lo:hi] for j, lo, hi in segments]
    rows = np.concatenate([np.asarray(p, np.float32) for p in parts]) if parts else np.empty((0, codec.dim), np.float32)
    _write_shard(out, i, docs, rows, codec)
    return len(docs)


def _write_shard(out: Path, i: int, docs: list[str], rows: np.ndarray, codec: _Codec) -> None:
    """One output shard: the passages' distinct vectors, their counts, then the codes (the completion mark)."""
    starts = [j for j in range(len(docs)) if j == 0 or docs[j] != docs[j - 1]]
    bounds = [*starts, len(docs)]
    passages, counts, keep = [], [], np.zeros(len(docs), bool)
    for a, b in itertools.pairwise(bounds):
        mask = _distinct(rows[a:b])
        keep[a:b] = mask
        passages.append(docs[a])
        counts.append(int(mask.sum()))
    codes, scales = codec.encode(rows[keep] if len(docs) else np.empty((0, codec.dim), np.float32))
    write_ids_file(out / shard_name(i, IDS_SUFFIX), passages)
    with atomic_path(out / shard_name(i, COUNTS)) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(counts, np.int32))
    if scales is not None:
        with atomic_path(out / shard_name(i, SCALES)) as tmp, open(tmp, "wb") as f:
            np.save(f, scales)
    with atomic_path(out / shard_name(i, CODES)) as tmp, open(tmp, "wb") as f:
        np.save(f, codes)


def _finish(out: Path, rows: int, n_shards: int, codec: _Codec) -> Path:
    """Write the docid lookup, refusing a passage whose queries are not contiguous, and mark the store done."""
    docids: list[str] = []
    vectors = 0
    for i in range(n_shards):
        docids.extend(read_ids(out / shard_name(i, IDS_SUFFIX)).to_pylist())
        vectors += int(np.load(out / shard_name(i, COUNTS)).sum())
    keys = docid_keys(docids)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    same = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
    if len(same):
        a, b = docids[order[same[0]]], docids[order[same[0] + 1]]
        what = f"passage {a!r} appears twice" if a == b else f"passages {a!r} and {b!r} share a 64-bit hash"
        raise XdrError(f"{out}: {what}; generated queries must be grouped by passage in corpus order")
    with atomic_path(out / KEYS_FILE) as tmp, open(tmp, "wb") as f:
        np.save(f, sorted_keys)
    with atomic_path(out / ROWS_FILE) as tmp, open(tmp, "wb") as f:
        np.save(f, order.astype(np.int64))
    update_meta(out, passages=len(docids), vectors=vectors, shards=n_shards, duplicates_dropped=rows - vectors,
                bytes_per_vector=codec.bytes_per_vector)
    mark_done(out)
    return out


class GeneratedVectorStore:
    """A finished store, memory-mapped: the generated-query vectors of each passage, decoded on demand."""

    def __init__(self, path: str | Path) -> None:
        d = Path(path)
        meta = open_artifact(d, STAGE, what="a max-sim store (`xdr maxsim-store`)")
        p = meta["params"]
        self.path, self.meta = d, meta
        self.spec = ModelSpec(**p["model"])
        self.dim: int = p["dim"]
        self.dtype: str = p["dtype"]
        pq = faiss.read_ProductQuantizer(str(d / PQ_FILE)) if self.dtype == "pq" else None
        self._codec = _Codec(self.dtype, self.dim, pq)
        n = meta["shards"]
        # plain arrays over the mapped files: np.memmap's own indexing costs more than the copy it makes
        self._codes = [np.asarray(np.load(d / shard_name(i, CODES), mmap_mode="r")) for i in range(n)]
        self._scales = [np.asarray(np.load(d / shard_name(i, SCALES), mmap_mode="r")) if self.dtype == "int8"
                        else None for i in range(n)]
        counts = [np.load(d / shard_name(i, COUNTS)) for i in range(n)]
        self.counts = np.concatenate(counts) if counts else np.empty(0, np.int32)
        self._shard = np.repeat(np.arange(n, dtype=np.int32), [len(c) for c in counts])
        local = [np.concatenate(([0], np.cumsum(c)[:-1])) if len(c) else np.empty(0, np.int64) for c in counts]
        self._local = np.concatenate(local).astype(np.int64) if local else np.empty(0, np.int64)
        self._keys = np.load(d / KEYS_FILE, mmap_mode="r")
        self._rows = np.load(d / ROWS_FILE, mmap_mode="r")

    @property
    def passages(self) -> int:
        return len(self.counts)

    @property
    def vectors(self) -> int:
        return int(self.counts.sum())

    @property
    def bytes_per_vector(self) -> int:
        return self._codec.bytes_per_vector

    def check_space(self, spec: ModelSpec, what: str) -> None:
        """Refuse vectors of another model: max-sim between two spaces ranks nothing."""
        self.spec.check_same_space(spec, f"the max-sim store at {self.path} ({what} vs store)")

    def lookup(self, docids: Sequence[str]) -> np.ndarray:
        """The passage number of each docid, -1 for a passage with no generated queries in the store."""
        keys = docid_keys(docids)
        if not len(self._keys):
            return np.full(len(keys), -1, np.int64)
        pos = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
        found = self._keys[pos] == keys
        return np.where(found, self._rows[pos], -1).astype(np.int64)

    def vectors_of(self, row: int) -> np.ndarray:
        """float32 [count, dim]: the decoded vectors of passage number ``row``."""
        return self.gather(np.array([row]))

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """float32 [sum of counts, dim]: the decoded vectors of passage numbers ``rows``, in that order,
        gathered with array indexing (no Python loop per passage: re-ranking calls this per query)."""
        rows = np.asarray(rows, np.int64)
        counts = self.counts[rows].astype(np.int64)
        seg = np.repeat(np.arange(len(rows)), counts)
        pos = self._local[rows][seg] + np.arange(len(seg)) - np.repeat(np.cumsum(counts) - counts, counts)
        shard = self._shard[rows][seg]
        out = np.empty((len(seg), self.dim), np.float32)
        for s in np.unique(shard):
            at = np.flatnonzero(shard == s)
            scales = self._scales[s]
            out[at] = self._codec.decode(self._codes[s][pos[at]], None if scales is None else scales[pos[at]])
        return out

    def max_scores(self, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``max_i <query, g_i>`` per passage number (NaN for -1 or a passage without vectors)."""
        rows = np.asarray(rows, np.int64)
        out = np.full(len(rows), np.nan, np.float32)
        have = np.flatnonzero(rows >= 0)
        have = have[self.counts[rows[have]] > 0]
        if not len(have):
            return out
        sims = self.gather(rows[have]) @ np.asarray(query, np.float32)
        counts = self.counts[rows[have]].astype(np.int64)
        out[have] = np.maximum.reduceat(sims, np.cumsum(counts) - counts)
        return out

    def iter_shards(self) -> Iterator[tuple[list[str], np.ndarray, np.ndarray]]:
        """``(docids, counts, decoded vectors)`` shard by shard, e.g. to build a multi-vector index."""
        for i, codes in enumerate(self._codes):
            ids = read_ids(self.path / shard_name(i, IDS_SUFFIX)).to_pylist()
            yield ids, np.load(self.path / shard_name(i, COUNTS)), self._codec.decode(codes, self._scales[i])


def open_vector_store(path: str | Path | GeneratedVectorStore) -> GeneratedVectorStore:
    return path if isinstance(path, GeneratedVectorStore) else GeneratedVectorStore(path)


def vector_store_info(path: str | Path) -> dict[str, Any]:
    """Counts and sizes of a store (for `xdr maxsim-store` output and the experiment's size table)."""
    d = Path(path)
    meta = read_meta(d)
    on_disk = sum(f.stat().st_size for f in d.iterdir() if f.is_file())
    return {"passages": meta.get("passages"), "vectors": meta.get("vectors"), "dtype": meta["params"]["dtype"],
            "bytes_per_vector": meta.get("bytes_per_vector"), "duplicates_dropped": meta.get("duplicates_dropped"),
            "bytes_on_disk": on_disk}
