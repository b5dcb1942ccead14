"""Building an index from an embedding store without loading the store whole.

The build streams the store: an index that needs training (IVF, PQ) is trained on a uniform sample drawn
shard by shard, then the shards are added one at a time. Peak memory is the final index plus one shard:
FAISS grows a flat index's (or an HNSW index's vector storage's) buffer by doubling, which at the last
reallocation holds the old and the new buffer together (1.6x the final size, measured), so the buffer is
sized once up front. IVF lists grow one list at a time and need no help.

``shards`` > 1 writes N FAISS indexes over contiguous row ranges, all sharing one trained quantizer:
each is built (and held in memory) alone, and a killed build resumes with the first missing shard.
:func:`xdr.index.dense.load_index` opens them as one :class:`faiss.IndexShards` that searches every
shard and merges the results. What stays hand-written: the sample-size rule, the up-front buffer and
the shard loop; training, adding and merging are FAISS's.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from xdr.artifacts import Stage, atomic_path, input_identity, is_done, mark_done, start_artifact, update_meta
from xdr.config import DEFAULT_BETA, ModelSpec
from xdr.embeddings import embeddings_meta, iter_shard_ids, iter_shards, open_ids, training_sample, write_ids
from xdr.errors import XdrError
from xdr.index.dense import (
    IDS_FILE,
    Metric,
    _check_metric,
    _new_index,
    _reason,
    _to_gpu,
    _train,
    default_train_sample,
    index_files,
)
from xdr.index.multivector import add_generated
from xdr.maxsim.store import GeneratedVectorStore
from xdr.progress import row_progress

TRAINED_FILE = "trained.faiss"  # the trained, empty index every shard starts from (sharded builds only)
def _reserve(index: faiss.Index, rows: int) -> None:
    """Size a flat index's code buffer (or an HNSW index's vector storage) for ``rows`` before adding.

    FAISS exposes no ``reserve``; growing the vector to its final size and back to empty keeps the
    capacity (C++ never shrinks on ``resize``), so the adds that follow never reallocate.
    """
    index = faiss.downcast_index(index)
    flat = faiss.downcast_index(index.storage) if isinstance(index, faiss.IndexHNSW) else index
    if isinstance(flat, faiss.IndexFlatCodes) and flat.ntotal == 0:
        flat.codes.resize(rows * flat.code_size)
        flat.codes.resize(0)


def _groups(rows_per_shard: list[int], shards: int) -> list[int]:
    """The index shard of each store shard: contiguous groups of about equal rows."""
    if shards > len(rows_per_shard):
        raise XdrError(f"cannot cut an embedding store of {len(rows_per_shard)} shards into {shards} index shards")
    starts = np.cumsum([0, *rows_per_shard[:-1]])
    group = (starts * shards // max(sum(rows_per_shard), 1)).astype(int).tolist()
    if sorted(set(group)) != list(range(shards)):
        raise XdrError(f"cannot cut the embedding store into {shards} non-empty index shards; use fewer")
    return group


def _write(index: faiss.Index, path: Path, on_gpu: bool) -> None:
    index = faiss.index_gpu_to_cpu(index) if on_gpu else index
    with atomic_path(path) as tmp:
        try:
            faiss.write_index(index, str(tmp))
        except RuntimeError as e:  # FAISS reports a full disk or an I/O error as a RuntimeError
            raise XdrError(f"{path}: cannot write the index ({_reason(e)})") from None


def _write_ids(emb_dir: Path, out: Path) -> list[int]:
    """Write ``ids.txt`` (all rows, in order) and return the rows of each store shard."""
    rows = []
    with atomic_path(out / IDS_FILE) as tmp, open_ids(tmp) as f:
        for ids in iter_shard_ids(emb_dir):
            write_ids(f, ids)
            rows.append(len(ids))
    return rows


def _trained(
    emb_dir: Path, out: Path, factory: str, sample: int, seed: int, *, metric: Metric, use_gpu: bool, sharded: bool,
    ef_construction: int | None,
) -> faiss.Index:
    """The trained empty index, on the CPU; a sharded build keeps it on disk so a resumed build reuses it
    (k-means is not bit-reproducible across thread counts, and every shard must share one quantizer)."""
    path = out / TRAINED_FILE
    if sharded and path.exists():
        return faiss.read_index(str(path))
    index = _new_index(embeddings_meta(emb_dir)["params"]["dim"], factory, metric, ef_construction)
    if sample:
        index, on_gpu = _to_gpu(index, use_gpu)
        _train(index, training_sample(emb_dir, sample, seed), factory)
        index = faiss.index_gpu_to_cpu(index) if on_gpu else index
    if sharded:
        _write(index, path, False)
    return index


def build_index(
    emb_dir: str | Path,
    out_dir: str | Path,
    factory: str = "Flat",
    *,
    metric: Metric = "ip",
    train_sample: int | None = None,
    seed: int = 0,
    use_gpu: bool = True,
    progress: bool = True,
    generated: str | Path | None = None,
    beta: float = DEFAULT_BETA,
    shards: int = 1,
    ef_construction: int | None = None,
) -> Path:
    """Build a FAISS index over an embedding store, streaming it shard by shard.

    ``factory`` is a FAISS index_factory string: "Flat" is exact search, "IVF4096,PQ64" or "HNSW32" trade
    recall for speed and memory. Indexes that need training (IVF, PQ) are trained on a uniform sample of
    ``train_sample`` rows (default :func:`default_train_sample`). ``shards`` > 1 writes that many FAISS
    indexes over contiguous row ranges (see the module docstring), searched and merged as one.
    ``ef_construction`` sets an HNSW graph's build-time beam (FAISS's default, 40, when None).
    ``generated``, a max-sim store (`xdr maxsim-store`), adds the passages' generated-query vectors as rows
    of their own: a multi-vector index whose search groups rows back into passages, scored
    ``s + beta * max`` (see :mod:`xdr.index.multivector`).
    """
    emb_dir, out = Path(emb_dir), Path(out_dir)
    emb_meta = embeddings_meta(emb_dir)
    _check_metric(metric)
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise XdrError(f"shards must be a positive integer, not {shards!r}")
    if train_sample is not None and train_sample < 1:
        raise XdrError(f"train_sample must be positive, not {train_sample}")
    store = None
    if generated is not None:
        if not beta >= 0:
            raise XdrError(f"beta must be >= 0, got {beta}")
        if shards > 1:
            raise XdrError("a multi-vector index (generated queries) is built as one shard; leave shards at 1")
        store = GeneratedVectorStore(generated)
        store.check_space(ModelSpec(**emb_meta["params"]["model"]), f"the passage embeddings {emb_dir}")
        if metric != "ip":
            raise XdrError("a multi-vector index adds inner products of passages and generated queries; use ip")
    enc = emb_meta["params"]
    empty = _new_index(enc["dim"], factory, metric, ef_construction)
    sample = default_train_sample(empty, emb_meta["rows"])
    if train_sample is not None and not empty.is_trained:
        sample = min(train_sample, emb_meta["rows"])
    params = {
        "factory": factory,
        "metric": metric,
        "train_sample": sample,
        "seed": seed,
        "dim": enc["dim"],
        "shards": shards,
        "model": enc["model"],
        "embeddings": {**input_identity(emb_dir), "kind": enc["kind"], "rows": emb_meta["rows"],
                       "source": enc["source"]},
    }
    if ef_construction is not None:
        params["ef_construction"] = ef_construction
    if store is not None:
        params["generated"] = {**input_identity(store.path), "vectors": store.vectors, "dtype": store.dtype}
        params["beta"] = beta
    start_artifact(out, Stage.INDEX, params)
    if is_done(out):
        return out
    rows = [len(i) for i in iter_shard_ids(emb_dir)] if (out / IDS_FILE).exists() else _write_ids(emb_dir, out)
    group = _groups(rows, shards)
    files = [out / name for name in index_files(shards)]
    trained = _trained(emb_dir, out, factory, sample, seed, metric=metric, use_gpu=use_gpu, sharded=shards > 1,
                       ef_construction=ef_construction)
    with row_progress(progress) as bar:
        task = bar.add_task(f"index {factory}", total=sum(rows))
        index = on_gpu = None
        for i, (_, emb) in enumerate(iter_shards(emb_dir)):
            g = group[i]
            if files[g].exists():  # finished by an earlier, killed build
                bar.advance(task, len(emb))
                continue
            if index is None:
                index, on_gpu = _to_gpu(faiss.clone_index(trained), use_gpu)
                if not on_gpu:
                    _reserve(index, sum(r for r, gg in zip(rows, group, strict=True) if gg == g))
            index.add(emb)
            bar.advance(task, len(emb))
            if i + 1 == len(group) or group[i + 1] != g:
                if store is not None:
                    add_generated(index, store, emb_dir, out, bar)
                _write(index, files[g], bool(on_gpu))
                index = None
    (out / TRAINED_FILE).unlink(missing_ok=True)
    update_meta(out, ntotal=sum(rows) + (store.vectors if store is not None else 0))
    mark_done(out)
    return out
