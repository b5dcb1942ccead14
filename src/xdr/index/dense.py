"""The index stage: an embedding store in, a FAISS index out.

Layout of an index directory::

    meta.json     stage "index"; params: factory, metric, train_sample, seed, dim, the model spec and
                  the embedding store it came from; after the build also "ntotal"
    index.faiss   the CPU FAISS index (moved to a GPU at load time when one is there)
    ids.txt       the passage id of each index row, one per line, in row order
    generated_offsets.npy   multi-vector indexes only (`--with-generated`), see
                  :mod:`xdr.index.multivector`
    _DONE

The index is one file rather than shards, so a killed build simply starts over; both files appear
under their final names only when complete.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import faiss
import numpy as np
import pyarrow as pa

from xdr.artifacts import (
    Stage,
    atomic_path,
    input_identity,
    is_done,
    mark_done,
    open_artifact,
    start_artifact,
    update_meta,
)
from xdr.config import DEFAULT_BETA, ModelSpec
from xdr.embeddings import embeddings_meta, iter_shards, open_ids, read_ids, training_sample, write_ids
from xdr.errors import MismatchError, XdrError
from xdr.index.multivector import OFFSETS_FILE, MultiVector, add_generated
from xdr.maxsim.store import GeneratedVectorStore
from xdr.progress import row_progress

Metric = Literal["ip", "l2"]
INDEX_FILE = "index.faiss"
IDS_FILE = "ids.txt"
IN_MEMORY = "<in memory>"  # the path of an index made by DenseIndex.from_vectors
_METRICS = {"ip": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}


def _reason(e: RuntimeError) -> str:
    """The useful tail of a FAISS error, without the C++ function signature and source line."""
    return str(e).rsplit(": ", 1)[-1]


def _to_gpu(index: faiss.Index, use_gpu: bool) -> tuple[faiss.Index, bool]:
    """Move ``index`` to all GPUs when asked and FAISS sees one; say whether it moved.

    Falling back to the CPU (with a note) rather than failing keeps one command line working on laptops,
    CPU CI and GPU boxes alike; HNSW, which has no GPU implementation, stays on the CPU too.
    """
    if not use_gpu or faiss.get_num_gpus() == 0:
        return index, False
    try:
        return faiss.index_cpu_to_all_gpus(index), True
    except RuntimeError as e:
        print(f"xdr: keeping the index on the CPU ({_reason(e)})", file=sys.stderr)
        return index, False


def _check_metric(metric: str) -> None:
    if metric not in _METRICS:
        raise XdrError(f"unknown metric {metric!r}; choose one of {', '.join(_METRICS)}")


def _new_index(dim: int, factory: str, metric: Metric) -> faiss.Index:
    try:
        return faiss.index_factory(dim, factory, _METRICS[metric])
    except RuntimeError as e:
        raise XdrError(f"bad FAISS factory string {factory!r}: {_reason(e)}") from e


def _train(index: faiss.Index, sample: np.ndarray, factory: str) -> None:
    try:
        index.train(sample)
    except RuntimeError as e:
        raise XdrError(f"cannot train {factory!r} on {len(sample)} vectors: {_reason(e)}") from e


def build_index(
    emb_dir: str | Path,
    out_dir: str | Path,
    factory: str = "Flat",
    *,
    metric: Metric = "ip",
    train_sample: int = 300_000,
    seed: int = 0,
    use_gpu: bool = True,
    progress: bool = True,
    generated: str | Path | None = None,
    beta: float = DEFAULT_BETA,
) -> Path:
    """Build a FAISS index over an embedding store, adding it shard by shard.

    ``factory`` is a FAISS index_factory string: "Flat" is exact search, "IVF4096,PQ64" or "HNSW32" trade
    recall for speed and memory. Indexes that need training (IVF, PQ) are trained on a uniform sample of
    ``train_sample`` rows; FAISS wants at least 39 per IVF list. ``generated``, a max-sim store
    (`xdr maxsim-store`), adds the passages' generated-query vectors as rows of their own: a multi-vector
    index whose search groups rows back into passages, scored ``s + beta * max`` (see
    :mod:`xdr.index.multivector`).
    """
    emb_dir, out = Path(emb_dir), Path(out_dir)
    emb_meta = embeddings_meta(emb_dir)
    _check_metric(metric)
    store = None
    if generated is not None:
        if not beta >= 0:
            raise XdrError(f"beta must be >= 0, got {beta}")
        store = GeneratedVectorStore(generated)
        store.check_space(ModelSpec(**emb_meta["params"]["model"]), f"the passage embeddings {emb_dir}")
        if metric != "ip":
            raise XdrError("a multi-vector index adds inner products of passages and generated queries; use ip")
    enc = emb_meta["params"]
    dim = enc["dim"]
    params = {
        "factory": factory,
        "metric": metric,
        "train_sample": train_sample,
        "seed": seed,
        "dim": dim,
        "model": enc["model"],
        "embeddings": {**input_identity(emb_dir), "kind": enc["kind"], "rows": emb_meta["rows"],
                       "source": enc["source"]},
    }
    if store is not None:
        params["generated"] = {**input_identity(store.path), "vectors": store.vectors, "dtype": store.dtype}
        params["beta"] = beta
    start_artifact(out, Stage.INDEX, params)
    if is_done(out):
        return out
    index, on_gpu = _to_gpu(_new_index(dim, factory, metric), use_gpu)
    if not index.is_trained:
        _train(index, training_sample(emb_dir, train_sample, seed), factory)

    with atomic_path(out / IDS_FILE) as ids_tmp, atomic_path(out / INDEX_FILE) as index_tmp:
        with open_ids(ids_tmp) as id_file, row_progress(progress) as bar:
            task = bar.add_task(f"index {factory}", total=emb_meta["rows"])
            for ids, emb in iter_shards(emb_dir):
                index.add(emb)
                write_ids(id_file, ids)
                bar.advance(task, len(ids))
            if store is not None:
                add_generated(index, store, emb_dir, out, bar)
        index = faiss.index_gpu_to_cpu(index) if on_gpu else index
        try:
            faiss.write_index(index, str(index_tmp))
        except RuntimeError as e:  # FAISS reports a full disk or an I/O error as a RuntimeError
            raise XdrError(f"{out / INDEX_FILE}: cannot write the index ({_reason(e)})") from None
    update_meta(out, ntotal=index.ntotal)
    mark_done(out)
    return out


def default_nprobe(nlist: int) -> int:
    """IVF lists probed when the user does not say: all of a small index (scanning it is cheap), about
    sqrt(nlist) of a large one, the usual starting point on FAISS's speed/recall curve. FAISS's own
    default of 1 probes 1/nlist of the data and cost a small IVF8 index a third of its MRR@10."""
    return min(nlist, max(16, round(math.sqrt(nlist))))


DEFAULT_EF_SEARCH = 128  # HNSW beam width; FAISS's default of 16 loses recall at k = 100


class DenseIndex:
    """A FAISS index together with the ids of its rows and the model spec its vectors came from.

    ``settings`` holds the speed/recall knobs in force (``nprobe`` for IVF, ``efSearch`` for HNSW), so a
    run can record how it was searched.
    """

    def __init__(
        self, index: faiss.Index, ids: pa.LargeStringArray, spec: ModelSpec, metric: Metric, factory: str,
        path: Path | str, on_gpu: bool, multi: MultiVector | None = None,
    ) -> None:
        rows = len(ids) + (int(multi.offsets[-1]) if multi is not None else 0)
        if rows != index.ntotal:
            raise XdrError(f"{path}: {IDS_FILE} and {OFFSETS_FILE} give {rows} rows for {index.ntotal} vectors; "
                           "rebuild it")
        self.index, self.spec, self.metric, self.factory, self.path = index, spec, metric, factory, path
        self._ids, self._on_gpu, self.multi = ids, on_gpu, multi
        ivf = faiss.try_extract_index_ivf(index)
        self.nlist: int | None = int(ivf.nlist) if ivf is not None else None
        self.settings: dict[str, int] = {}
        self.defaulted: set[str] = set()  # knobs set by use_defaults, not by the user
        self.recall_checked = False  # the defaulted nprobe was compared with exhaustive probing once

    @classmethod
    def from_vectors(
        cls,
        ids: Sequence[str],
        vectors: np.ndarray,
        spec: ModelSpec,
        factory: str = "Flat",
        metric: Metric = "ip",
        *,
        train_sample: int = 300_000,
        seed: int = 0,
        use_gpu: bool = True,
        nprobe: int | None = None,
        ef_search: int | None = None,
    ) -> DenseIndex:
        """An index in memory over ``vectors`` (row ``i`` is passage ``ids[i]``), with no files written.

        For notebooks, tests and corpora that fit in RAM; ``spec`` is the model the vectors came from
        (``encoder.spec``), checked against the query encoder at search time. Factories, training (on the
        same uniform sample of ``train_sample`` rows that :func:`build_index` draws) and the search knobs
        are those of :func:`build_index` and :func:`load_index`. ``path`` is ``"<in memory>"``, for
        messages and the run's settings.
        """
        ids = list(ids)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(ids) != len(vectors):
            raise XdrError(f"need one vector per id: {len(ids)} ids, vectors of shape {vectors.shape}")
        if not ids:
            raise XdrError("no vectors to index")
        _check_metric(metric)
        if len(set(ids)) != len(ids):
            dup = next(i for i, n in Counter(ids).items() if n > 1)
            raise XdrError(f"duplicate passage id {dup!r}: a search result must name one passage")
        try:
            id_array = pa.array(ids, type=pa.large_string())
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise XdrError(f"passage ids must be strings ({e})") from e
        index, on_gpu = _to_gpu(_new_index(vectors.shape[1], factory, metric), use_gpu)
        if not index.is_trained:
            pick = np.sort(np.random.default_rng(seed).choice(len(ids), size=min(train_sample, len(ids)),
                                                              replace=False))
            _train(index, vectors[pick], factory)
        index.add(vectors)
        dense = cls(index, id_array, spec, metric, factory, IN_MEMORY, on_gpu)
        dense.configure(nprobe=nprobe, ef_search=ef_search)
        dense.use_defaults()
        return dense

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def configure(
        self, *, nprobe: int | None = None, ef_search: int | None = None, beta: float | None = None,
        rows_per_passage: int | None = None,
    ) -> None:
        """Set the speed/recall knobs: IVF lists probed (``nprobe``), HNSW beam width (``ef_search``) and,
        for a multi-vector index, the max-sim weight ``beta`` and the rows retrieved per passage wanted."""
        if beta is not None or rows_per_passage is not None:
            if self.multi is None:
                raise XdrError(f"{self.path}: beta and rows_per_passage apply to multi-vector indexes only")
            self.multi = self.multi.with_settings(beta, rows_per_passage)
        space = self._space()
        for name, value in (("nprobe", nprobe), ("efSearch", ef_search)):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise XdrError(f"{name} must be a positive integer, not {value!r}")
            if name == "nprobe" and self.nlist is not None and value > self.nlist:
                raise XdrError(f"nprobe {value} exceeds the index's {self.nlist} IVF lists")
            try:
                space.set_index_parameter(self.index, name, value)
            except RuntimeError as e:
                raise XdrError(f"{self.path}: a {self.factory!r} index has no {name} setting") from e
            self.settings[name] = value

    def use_defaults(self) -> None:
        """Set the knobs the user left alone to xdr's defaults (see :func:`default_nprobe`)."""
        if self.nlist is not None and "nprobe" not in self.settings:
            self.configure(nprobe=default_nprobe(self.nlist))
            self.defaulted.add("nprobe")
        if "efSearch" not in self.settings:
            with contextlib.suppress(XdrError):  # raised for an index without HNSW
                self.configure(ef_search=DEFAULT_EF_SEARCH)
                self.defaulted.add("efSearch")

    def _space(self) -> faiss.ParameterSpace:
        return faiss.GpuParameterSpace() if self._on_gpu else faiss.ParameterSpace()

    def exact_recall(self, query_emb: np.ndarray, k: int, sample: int = 32) -> float | None:
        """Overlap of this IVF index's top ``k`` with exhaustive probing, on up to ``sample`` queries; None
        for an index with no IVF lists. Probing every list costs one scan of the codes per query."""
        if self.nlist is None or self.settings.get("nprobe", 1) >= self.nlist:
            return None if self.nlist is None else 1.0
        q = np.ascontiguousarray(query_emb[:sample], dtype=np.float32)
        kk = min(k, self.ntotal)
        _, approx = self.index.search(q, kk)
        space = self._space()
        space.set_index_parameter(self.index, "nprobe", self.nlist)
        try:
            _, exact = self.index.search(q, kk)
        finally:
            space.set_index_parameter(self.index, "nprobe", self.settings.get("nprobe", 1))
        hits = [len(set(a[a >= 0].tolist()) & set(e[e >= 0].tolist())) / max(1, (e >= 0).sum())
                for a, e in zip(approx, exact, strict=True)]
        return float(np.mean(hits))

    def search(self, query_emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` rows per query: scores float32 [n, k'] (higher is better; -L2² for metric "l2") and
        ids, an object array of the same shape, with k' = min(k, ntotal).

        A slot FAISS leaves empty (an IVF probe or HNSW beam that found fewer than k) has id None and
        score -inf, so callers can drop it without a second lookup.
        """
        q = np.ascontiguousarray(query_emb, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise MismatchError(
                f"query vectors have dim {q.shape[-1] if q.ndim else None} (shape {q.shape}) but the index "
                f"at {self.path} has dim {self.dim}; were they made by the index's model?"
            )
        if k <= 0:
            raise XdrError(f"k must be positive (got {k})")
        if self.multi is not None:  # rows to passages
            scores, labels = self.index.search(q, min(k * self.multi.rows_per_passage, self.ntotal))
            scores, labels = self.multi.group(scores, labels, k)
        else:
            scores, labels = self.index.search(q, min(k, self.ntotal))
        if self.metric == "l2":
            np.negative(scores, out=scores)
        missing = labels < 0
        rows = pa.array(labels.ravel(), mask=missing.ravel())
        ids = self._ids.take(rows).to_numpy(zero_copy_only=False).reshape(labels.shape)
        scores[missing] = -np.inf
        return scores, ids


def load_index(
    index_dir: str | Path, *, use_gpu: bool = True, nprobe: int | None = None, ef_search: int | None = None
) -> DenseIndex:
    """Open a finished index directory; refuses one whose build did not finish. Knobs left as None get
    xdr's defaults (``DenseIndex.use_defaults``); the ones in force are in ``DenseIndex.settings``."""
    d = Path(index_dir)
    meta = open_artifact(d, Stage.INDEX, what="an index (`xdr index`)")
    params = meta["params"]
    index, on_gpu = _to_gpu(faiss.read_index(str(d / INDEX_FILE)), use_gpu)
    multi = None
    if "generated" in params:
        multi = MultiVector(np.load(d / OFFSETS_FILE), params["beta"])
    dense = DenseIndex(
        index, read_ids(d / IDS_FILE), ModelSpec(**params["model"]), params["metric"], params["factory"], d,
        on_gpu, multi,
    )
    dense.configure(nprobe=nprobe, ef_search=ef_search)
    dense.use_defaults()
    return dense
