"""The index stage's reader: a FAISS index with its row ids and model spec, searched as passages.

Layout of an index directory (written by :func:`xdr.index.build.build_index`)::

    meta.json     stage "index"; params: factory, metric, train_sample, seed, dim, shards, the model spec
                  and the embedding store it came from; after the build also "ntotal"
    index.faiss   the CPU FAISS index (moved to a GPU at load time when one is there); or, for
    part-00000.faiss ...   ``shards`` > 1, one FAISS index per contiguous range of rows
    ids.txt       the passage id of each index row, one per line, in row order
    generated_offsets.npy   multi-vector indexes only (`--with-generated`), see
                  :mod:`xdr.index.multivector`
    _DONE

Every file appears under its final name only when complete. A sharded index loads as one
:class:`faiss.IndexShards` (each shard searched, the top k merged), behind the same :class:`DenseIndex`.
"""

from __future__ import annotations

import contextlib
import math
import sys
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import faiss
import numpy as np
import pyarrow as pa

from xdr.artifacts import Stage, open_artifact, shard_name
from xdr.config import ModelSpec
from xdr.embeddings import read_ids
from xdr.errors import MismatchError, XdrError, XdrWarning
from xdr.index.multivector import OFFSETS_FILE, MultiVector

Metric = Literal["ip", "l2"]
INDEX_FILE = "index.faiss"
IDS_FILE = "ids.txt"
IN_MEMORY = "<in memory>"  # the path of an index made by DenseIndex.from_vectors
GPU_MAX_K = 2048  # GPU FAISS (flat, IVF) returns at most this many results per query
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


MIN_PER_LIST, PER_LIST = 39, 64  # FAISS warns below 39 training points per IVF list and uses at most 256
MAX_DEFAULT_SAMPLE = 1 << 20  # the default stops growing here unless MIN_PER_LIST needs more
PQ_SAMPLE = 1 << 16  # 256 points per centroid of an 8-bit product quantizer's 256 centroids


def default_train_sample(index: faiss.Index, rows: int) -> int:
    """Rows to train ``index`` on when the user does not say: 64 per IVF list (within FAISS's guidance of
    30-256), at least 39 per list, up to about a million rows, and 65,536 for an index without lists
    that still trains (PQ, SQ); 0 for one that needs no training (Flat, HNSW)."""
    if index.is_trained:
        return 0
    ivf = faiss.try_extract_index_ivf(index)
    nlist = int(ivf.nlist) if ivf is not None else 0
    return min(rows, max(MIN_PER_LIST * nlist, min(PER_LIST * nlist, MAX_DEFAULT_SAMPLE), PQ_SAMPLE))


def index_files(shards: int) -> list[str]:
    """The FAISS files of an index of ``shards`` shards: ``index.faiss`` alone, or ``part-NNNNN.faiss``."""
    return [INDEX_FILE] if shards == 1 else [shard_name(i, ".faiss") for i in range(shards)]


def _ivf_lists(index: faiss.Index) -> int | None:
    """IVF lists of an index, or of the shards of a sharded one (they share one quantizer)."""
    if isinstance(index, faiss.IndexShards):
        index = index.at(0)
    ivf = faiss.try_extract_index_ivf(index)
    return int(ivf.nlist) if ivf is not None else None


def _check_metric(metric: str) -> None:
    if metric not in _METRICS:
        raise XdrError(f"unknown metric {metric!r}; choose one of {', '.join(_METRICS)}")


def _new_index(dim: int, factory: str, metric: Metric, ef_construction: int | None = None) -> faiss.Index:
    """An empty index from a factory string, without polysemous training.

    FAISS's factory turns on polysemous training for PQ codes (unless the string ends in "np"): an
    annealing of the PQ centroid order that only polysemous (Hamming-filtered) search uses, which xdr
    never enables; it made training an IVF-PQ index take minutes of CPU per sub-quantizer.
    ``ef_construction`` is an HNSW graph's build-time beam (FAISS's default 40); the factory string cannot
    carry it, and a graph built with too small a beam caps recall whatever efSearch is.
    """
    try:
        index = faiss.index_factory(dim, factory, _METRICS[metric])
    except RuntimeError as e:
        raise XdrError(f"bad FAISS factory string {factory!r}: {_reason(e)}") from e
    ivf = faiss.try_extract_index_ivf(index)
    for part in (faiss.downcast_index(ivf) if ivf is not None else None, faiss.downcast_index(index)):
        if hasattr(part, "do_polysemous_training"):
            part.do_polysemous_training = False
    if ef_construction is not None:
        graph = faiss.downcast_index(index)
        if not hasattr(graph, "hnsw"):
            raise XdrError(f"efConstruction applies to HNSW indexes (e.g. HNSW32); this one is {factory!r}")
        if ef_construction < 1:
            raise XdrError(f"efConstruction must be positive, not {ef_construction}")
        graph.hnsw.efConstruction = ef_construction
    return index


def _train(index: faiss.Index, sample: np.ndarray, factory: str) -> None:
    try:
        index.train(sample)
    except RuntimeError as e:
        raise XdrError(f"cannot train {factory!r} on {len(sample)} vectors: {_reason(e)}") from e


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
        self.nlist = _ivf_lists(index)
        self._cpu: faiss.Index | None = None  # a CPU copy for k beyond GPU_MAX_K, made when first needed
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
        train_sample: int | None = None,
        seed: int = 0,
        use_gpu: bool = True,
        nprobe: int | None = None,
        ef_search: int | None = None,
        ef_construction: int | None = None,
    ) -> DenseIndex:
        """An index in memory over ``vectors`` (row ``i`` is passage ``ids[i]``), with no files written.

        For notebooks, tests and corpora that fit in RAM; ``spec`` is the model the vectors came from
        (``encoder.spec``), checked against the query encoder at search time. Factories, training (on a
        uniform sample of ``train_sample`` rows, default :func:`default_train_sample`) and the search knobs
        are those of :func:`xdr.index.build.build_index` and :func:`load_index`. ``path`` is
        ``"<in memory>"``, for messages and the run's settings.
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
        index, on_gpu = _to_gpu(_new_index(vectors.shape[1], factory, metric, ef_construction), use_gpu)
        if not index.is_trained:
            size = default_train_sample(index, len(ids)) if train_sample is None else min(train_sample, len(ids))
            pick = np.sort(np.random.default_rng(seed).choice(len(ids), size=size, replace=False))
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
            if self._cpu is not None:
                faiss.ParameterSpace().set_index_parameter(self._cpu, name, value)
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
        kk = min(k, self.ntotal, GPU_MAX_K if self._on_gpu else k)  # an estimate: no CPU copy for it
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

    def _faiss_search(self, q: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
        """FAISS's search for ``kk`` rows. GPU FAISS returns at most :data:`GPU_MAX_K` per query (and fails
        past it), so a deeper search runs on a CPU copy of the index, made once, with a warning: slower,
        but the same answer (a multi-vector index asks for k times its rows per passage)."""
        if not self._on_gpu or kk <= GPU_MAX_K:
            return self.index.search(q, kk)
        if self._cpu is None:
            warnings.warn(XdrWarning(
                f"{self.path}: GPU FAISS returns at most {GPU_MAX_K} rows per query; searching {kk} on a CPU "
                "copy of the index"), stacklevel=3)
            self._cpu = faiss.index_gpu_to_cpu(self.index)
            for name, value in self.settings.items():
                faiss.ParameterSpace().set_index_parameter(self._cpu, name, value)
        return self._cpu.search(q, kk)

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
            scores, labels = self._faiss_search(q, min(k * self.multi.rows_per_passage, self.ntotal))
            scores, labels = self.multi.group(scores, labels, k)
        else:
            scores, labels = self._faiss_search(q, min(k, self.ntotal))
        if self.metric == "l2":
            np.negative(scores, out=scores)
        missing = labels < 0
        rows = pa.array(labels.ravel(), mask=missing.ravel())
        ids = self._ids.take(rows).to_numpy(zero_copy_only=False).reshape(labels.shape)
        scores[missing] = -np.inf
        return scores, ids


def _read(path: Path, use_gpu: bool, mmap: bool, factory: str) -> tuple[faiss.Index, bool]:
    """Read one FAISS file. FAISS maps IVF lists (``IO_FLAG_MMAP``) and flat codes (``IO_FLAG_MMAP_IFC``)
    by different readers that do not combine, so the flag follows the index type."""
    flags = 0
    if mmap:
        flags = faiss.IO_FLAG_MMAP if "IVF" in factory.upper() else faiss.IO_FLAG_MMAP_IFC
    return _to_gpu(faiss.read_index(str(path), flags), use_gpu and not mmap)


def load_index(
    index_dir: str | Path, *, use_gpu: bool = True, nprobe: int | None = None, ef_search: int | None = None,
    mmap: bool = False,
) -> DenseIndex:
    """Open a finished index directory; refuses one whose build did not finish. Knobs left as None get
    xdr's defaults (``DenseIndex.use_defaults``); the ones in force are in ``DenseIndex.settings``.

    A sharded index opens as one: its shards are searched in turn and their results merged. ``mmap``
    leaves IVF lists and flat vectors on disk, paged in by the OS as searches touch them, for an index
    larger than memory (on the CPU only)."""
    d = Path(index_dir)
    meta = open_artifact(d, Stage.INDEX, what="an index (`xdr index`)")
    params = meta["params"]
    parts = [_read(d / name, use_gpu, mmap, params["factory"]) for name in index_files(params.get("shards", 1))]
    on_gpu = any(g for _, g in parts)
    index = parts[0][0]
    if len(parts) > 1:
        index = faiss.IndexShards(params["dim"], on_gpu, True)  # threads per shard only for GPUs
        for part, _ in parts:
            index.add_shard(part)
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
