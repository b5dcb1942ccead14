"""Passage texts by id for a service: an SQLite file built once from the corpus, then opened in milliseconds.

An 18M-passage corpus (about 13 GB of text) must not sit in a Python dict, and streaming it per request
(:mod:`xdr.data.lookup`) is for batch jobs. SQLite from the standard library gives a B-tree keyed by
passage id on disk: opening reads a page header, a look-up touches a few pages, and the OS page cache
does the rest. The store can also hold each passage's generated queries (language and text), which the
service shows to explain a hit. Only the schema and the caching rule are ours.

The file is written under a temp name and renamed into place when complete. The cached store for a
corpus (:func:`open_text_store`) is keyed by the corpus's resolved path, size and modification time (a
content hash of 13 GB would cost the start-up half a minute), plus the identity of the generated queries;
the content hash is recorded inside, in the ``meta`` table.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

from xdr.artifacts import atomic_path, input_fingerprint
from xdr.data.schema import Passage
from xdr.errors import XdrError
from xdr.progress import row_progress
from xdr.runtime import cache_root
from xdr.version import __version__

GeneratedRow = tuple[str, str, str]  # (docid, lang, query text)
_CHUNK = 10_000
_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE passages (id TEXT PRIMARY KEY, title TEXT NOT NULL, text TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE generated (docid TEXT NOT NULL, lang TEXT NOT NULL, query TEXT NOT NULL);
"""


def build_text_store(
    passages: Iterable[Passage], out: str | Path, *, generated: Iterable[GeneratedRow] = (),
    source: dict[str, Any] | None = None, progress: bool = True,
) -> Path:
    """Write the passages (and generated queries) to an SQLite file at ``out``, atomically.

    ``source`` (e.g. the corpus's fingerprint) is recorded in the ``meta`` table. A duplicate passage id
    is refused, as the corpus readers refuse it.
    """
    out = Path(out)
    with atomic_path(out) as tmp:
        con = sqlite3.connect(tmp, isolation_level=None)  # transactions as written below
        try:
            con.executescript("PRAGMA synchronous=OFF;" + _SCHEMA)
            con.execute("BEGIN")
            with row_progress(progress) as bar:
                task = bar.add_task("text store", total=None)
                rows = ((p.id, p.title, p.text) for p in passages)
                while chunk := list(islice(rows, _CHUNK)):
                    con.execute("SAVEPOINT chunk")
                    try:
                        con.executemany("INSERT INTO passages VALUES (?, ?, ?)", chunk)
                    except sqlite3.IntegrityError:
                        con.execute("ROLLBACK TO chunk")
                        dup = next(i for i, n in _counts(con, [c[0] for c in chunk]).items() if n > 1)
                        raise XdrError(f"duplicate passage id {dup!r}: a look-up must name one passage") from None
                    con.execute("RELEASE chunk")
                    bar.advance(task, len(chunk))
                gen = iter(generated)
                while chunk := list(islice(gen, _CHUNK)):
                    con.executemany("INSERT INTO generated VALUES (?, ?, ?)", chunk)
            con.execute("CREATE INDEX generated_docid ON generated (docid)")
            meta = {"xdr_version": __version__, "source": source or {}}
            con.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])
            con.execute("COMMIT")
        finally:
            con.close()
    return out


def _counts(con: sqlite3.Connection, ids: list[str]) -> dict[str, int]:
    """How often each id of a failed chunk occurs, in the chunk and already in the table."""
    counts = {i: ids.count(i) for i in set(ids)}
    for i in counts:
        counts[i] += con.execute("SELECT COUNT(*) FROM passages WHERE id = ?", (i,)).fetchone()[0]
    return counts


class TextStore:
    """A finished text store, opened read-only; safe to share between threads (each query is one call)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise XdrError(f"{self.path}: no text store there")
        try:
            self._con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            meta = dict(self._con.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as e:
            raise XdrError(f"{self.path}: not a text store ({e})") from None
        self.meta = {k: json.loads(v) for k, v in meta.items()}
        self.has_generated = self._con.execute("SELECT 1 FROM generated LIMIT 1").fetchone() is not None

    def __len__(self) -> int:
        return int(self._con.execute("SELECT COUNT(*) FROM passages").fetchone()[0])

    def get(self, docid: str) -> Passage | None:
        row = self._con.execute("SELECT id, text, title FROM passages WHERE id = ?", (docid,)).fetchone()
        return Passage(*row) if row else None

    def passages(self, ids: Sequence[str]) -> dict[str, Passage]:
        """The passages of ``ids`` that the store holds (absent ids are left out)."""
        found: dict[str, Passage] = {}
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), 500):  # SQLite's limit on bound parameters
            part = unique[start:start + 500]
            marks = ",".join("?" * len(part))
            for row in self._con.execute(f"SELECT id, text, title FROM passages WHERE id IN ({marks})", part):
                found[row[0]] = Passage(*row)
        return found

    def generated(self, docid: str) -> list[tuple[str, str]]:
        """``(lang, query)`` of the passage's generated queries, in the order they were stored."""
        return self._con.execute("SELECT lang, query FROM generated WHERE docid = ? ORDER BY rowid",
                                 (docid,)).fetchall()

    def close(self) -> None:
        self._con.close()


def cache_key(corpus: str | Path, generated_identity: dict[str, Any] | None = None) -> str:
    """The cached store's name for a corpus file or directory: its resolved path, size and modification
    time, and what the generated queries came from."""
    p = Path(corpus).resolve()
    if not p.exists():
        raise XdrError(f"{p}: no such file or directory")
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    stat = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    blob = json.dumps({"files": stat, "generated": generated_identity}, sort_keys=True)
    return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()


def open_text_store(
    corpus: str | Path, passages: Callable[[], Iterable[Passage]], *,
    generated: Callable[[], Iterable[GeneratedRow]] | None = None,
    generated_identity: dict[str, Any] | None = None, cache_dir: str | Path | None = None, progress: bool = True,
) -> TextStore:
    """The cached text store of ``corpus``, built on first use from ``passages()`` (and ``generated()``).

    The store lives in ``<cache>/texts/`` (default: the xdr cache) under :func:`cache_key`, so a second
    start opens it at once and a changed corpus gets a new one.
    """
    root = Path(cache_dir) if cache_dir is not None else cache_root() / "texts"
    path = root / f"{cache_key(corpus, generated_identity)}.sqlite"
    if not path.exists():
        build_text_store(passages(), path, generated=generated() if generated else (),
                         source={"corpus": input_fingerprint(corpus), "generated": generated_identity},
                         progress=progress)
    return TextStore(path)
