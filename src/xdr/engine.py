"""The shard engine: a stage's shards run in this process, in order, or on a Ray cluster.

A stage keeps its per-shard computation and hands the engine two picklable pieces: a *setup* that builds a
worker's state (loads the model: once per worker, in the worker) and a *compute* that does one shard (reads
what it needs, writes its files atomically under the shard's own name, returns a small summary). The driver
streams its input into shard tasks, marks the shards a killed run finished as done (counted, not redone),
and writes ``meta.json`` and ``_DONE`` itself; it holds at most ``in_flight`` shards per worker, never the
corpus. Both engines run the same compute on the same shards, so their artifacts are the same bytes.

On Ray, each worker is an actor (``num_gpus=1`` where the cluster has GPUs; on CPU ``threads`` CPUs and
torch threads each). Scheduling, retries and restarts are Ray's: an actor whose process or node dies is
restarted (``max_restarts``) and its unfinished shards are retried (``max_task_retries``). What stays
hand-written is the small loop that keeps a bounded number of shards in flight and reports progress
(shards done of the total, rows/s, time left), because it is what bounds the driver's memory. Ray is
imported only when the Ray engine is used.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from rich.progress import Progress, TaskID

from xdr.artifacts import remove_stale_temps
from xdr.errors import XdrError
from xdr.progress import row_progress

S = TypeVar("S")
P = TypeVar("P")
R = TypeVar("R")
Advance = Callable[[float], None]
EngineKind = Literal["local", "ray"]


class EngineSettings(BaseModel):
    """Where a stage's shards run; recorded nowhere, because the artifact does not depend on it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: EngineKind = "local"
    address: str | None = Field(default=None, description="Ray cluster; None: $RAY_ADDRESS or a new local Ray")
    workers: int | None = Field(default=None, ge=1, description="default: one per GPU, else one per `threads` CPUs")
    threads: int | None = Field(default=None, ge=1, description="CPU threads per worker (local: torch's default)")
    gpus_per_worker: float | None = Field(default=None, ge=0, description="default: 1 where the cluster has GPUs")
    max_retries: int = Field(default=3, ge=0, description="restarts of a lost worker, retries of its shards")
    in_flight: int = Field(default=2, ge=1, description="shards queued per worker")


LOCAL = EngineSettings()


@dataclass(frozen=True, slots=True)
class ShardTask(Generic[P]):
    """Shard ``index`` of ``rows`` input rows; ``payload`` None means an earlier run finished it."""

    index: int
    rows: int
    payload: P | None = None


@dataclass(slots=True)
class EngineReport:
    """What a run did: the shards it computed (in completion order) and those it found done."""

    computed: list[int] = field(default_factory=list)
    skipped: int = 0


def given(state: S) -> S:
    """A setup that hands workers an object built by the caller (pickled to each Ray worker)."""
    return state


def _ready(state: object) -> None:
    """Asked of every new worker: it returns once the worker's state is built, and sends none of it back."""


def _no_advance(rows: float) -> None:
    """Within-shard progress is not reported from Ray workers; the driver counts whole shards."""


def _set_threads(n: int | None) -> int | None:
    """Set torch's CPU threads (when torch is installed) and return the number before, to restore it."""
    if n is None:
        return None
    try:
        import torch
    except ImportError:
        return None
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    return before


class _Tracker:
    """The progress line: rows (or the stage's unit) with rate and time left, plus shards done of the total."""

    def __init__(self, bar: Progress, task: TaskID, total_shards: int | None) -> None:
        self.bar, self.task, self.total = bar, task, total_shards
        self.shards = 0
        self.advanced: dict[int, float] = {}

    def advance(self, index: int, rows: float) -> None:
        self.advanced[index] = self.advanced.get(index, 0) + rows
        self.bar.advance(self.task, rows)

    def finished(self, shard: ShardTask[Any], note: str | None = None) -> None:
        self.bar.advance(self.task, shard.rows - self.advanced.pop(shard.index, 0))
        self.shards += 1
        of = f"/{self.total}" if self.total else ""
        self.bar.update(self.task, note=f"shards {self.shards}{of}" + (f", {note}" if note else ""))


class WorkerPool(Generic[S]):
    """Workers that each hold a state built once by ``setup``; :meth:`run` sends them shards."""

    def ask(self, fn: Callable[[S], R]) -> R:
        """``fn(state)`` on one worker: what the driver needs to know about the model (its spec, its name)."""
        raise NotImplementedError

    def run(
        self,
        tasks: Iterable[ShardTask[P]],
        compute: Callable[[S, P, Advance], R],
        *,
        label: str,
        on_done: Callable[[ShardTask[P], R], str | None] | None = None,
        total_rows: float | None = None,
        total_shards: int | None = None,
        unit: str = "rows",
        scale: float = 1,
        progress: bool = True,
        out_dir: Path | None = None,
    ) -> EngineReport:
        """Compute every task that has a payload; ``on_done`` hears each result (in completion order) and
        may return a short note for the progress line. Shards without a payload are only counted. At the
        end, the temp files of workers lost mid-write are removed from ``out_dir``."""
        report = EngineReport()
        with row_progress(progress) as bar:
            tracker = _Tracker(bar, bar.add_task(label, total=total_rows, unit=unit, scale=scale, note=""),
                               total_shards)
            for shard, result in self._results(tasks, compute, tracker, report):
                note = on_done(shard, result) if on_done is not None else None
                tracker.finished(shard, note)
        if out_dir is not None:
            remove_stale_temps(out_dir)
        return report

    def _results(
        self, tasks: Iterable[ShardTask[P]], compute: Callable[[S, P, Advance], R], tracker: _Tracker,
        report: EngineReport,
    ) -> Iterator[tuple[ShardTask[P], Any]]:
        raise NotImplementedError


class _LocalPool(WorkerPool[S]):
    def __init__(self, setup: Callable[[], S]) -> None:
        self.state = setup()

    def ask(self, fn: Callable[[S], R]) -> R:
        return fn(self.state)

    def _results(
        self, tasks: Iterable[ShardTask[P]], compute: Callable[[S, P, Advance], R], tracker: _Tracker,
        report: EngineReport,
    ) -> Iterator[tuple[ShardTask[P], Any]]:
        for shard in tasks:
            if shard.payload is None:
                report.skipped += 1
                tracker.finished(shard, "kept from an earlier run")
                continue
            result = compute(self.state, shard.payload, partial(tracker.advance, shard.index))
            report.computed.append(shard.index)
            yield shard, result


class _Worker:
    """A Ray actor: builds its state once, then computes shards sent to it."""

    def __init__(self, setup: Callable[[], Any], threads: int | None, cwd: str) -> None:
        if os.path.isdir(cwd):  # relative paths mean what they mean to the driver (where it exists here)
            os.chdir(cwd)
        _set_threads(threads)
        self.state = setup()

    def ask(self, fn: Callable[[Any], Any]) -> Any:
        return fn(self.state)

    def compute(self, fn: Callable[[Any, Any, Advance], Any], payload: Any) -> Any:
        return fn(self.state, payload, _no_advance)


class _RayPool(WorkerPool[S]):
    def __init__(self, setup: Callable[[], S], settings: EngineSettings) -> None:
        import ray

        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            ray.init(address=settings.address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        resources = ray.cluster_resources()
        gpus = settings.gpus_per_worker
        if gpus is None:
            gpus = 1.0 if resources.get("GPU", 0) >= 1 else 0.0
        threads = settings.threads or 1
        workers = settings.workers or (int(resources.get("GPU", 0) // gpus) if gpus else
                                       max(1, int(resources.get("CPU", 1) // threads)))
        actor = ray.remote(_Worker).options(
            num_cpus=threads, num_gpus=gpus, max_restarts=settings.max_retries,
            max_task_retries=settings.max_retries,
        )
        self.actors = [actor.remote(setup, threads, os.getcwd()) for _ in range(workers)]
        self.limit = settings.in_flight
        try:  # every worker built its state: a model that cannot be had fails here, before any output
            ray.get([a.ask.remote(_ready) for a in self.actors])
        except BaseException:
            self.close()
            raise

    def ask(self, fn: Callable[[S], R]) -> R:
        return self.ray.get(self.actors[0].ask.remote(fn))

    def _results(
        self, tasks: Iterable[ShardTask[P]], compute: Callable[[S, P, Advance], R], tracker: _Tracker,
        report: EngineReport,
    ) -> Iterator[tuple[ShardTask[P], Any]]:
        ray = self.ray
        pending: dict[Any, tuple[ShardTask[P], int]] = {}  # result ref -> (shard, actor number)
        load = [0] * len(self.actors)

        def collect() -> Iterator[tuple[ShardTask[P], Any]]:
            ready, _ = ray.wait(list(pending), num_returns=1)
            shard, worker = pending.pop(ready[0])
            load[worker] -= 1
            report.computed.append(shard.index)
            yield shard, ray.get(ready[0])

        for shard in tasks:
            if shard.payload is None:
                report.skipped += 1
                tracker.finished(shard, "kept from an earlier run")
                continue
            while len(pending) >= self.limit * len(self.actors):
                yield from collect()
            worker = min(range(len(load)), key=load.__getitem__)
            ref = self.actors[worker].compute.remote(compute, shard.payload)
            pending[ref] = (shard, worker)
            load[worker] += 1
        while pending:
            yield from collect()

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)
        if self.started:
            self.ray.shutdown()


@contextlib.contextmanager
def worker_pool(engine: EngineSettings | None, setup: Callable[[], S]) -> Iterator[WorkerPool[S]]:
    """Workers for one stage run: in this process (``engine`` None or local) or Ray actors."""
    engine = engine or LOCAL
    if engine.kind == "local":
        before = _set_threads(engine.threads)
        try:
            yield _LocalPool(setup)
        finally:
            _set_threads(before)
        return
    try:
        import ray  # noqa: F401
    except ImportError:
        raise XdrError("--engine ray needs Ray: pip install 'xdr[ray]'") from None
    pool = _RayPool(setup, engine)
    try:
        yield pool
    finally:
        pool.close()


def shard_count(rows: int | None, shard_size: int) -> int | None:
    """How many shards ``rows`` input rows make (None when the row count is unknown)."""
    return None if rows is None else math.ceil(rows / shard_size)
