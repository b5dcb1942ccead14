"""The dataset registry: what xdr knows how to fetch, from where, and how to check it.

Entries live in ``datasets.yaml`` beside this module. ``get`` fetches a dataset into
``<dest>/<name>/`` either by downloading its URLs or, offline, from a local copy (``from_path``),
checking every file with a known sha256. Files are gathered in a temp directory that is renamed into
place only when all are present and verified, so a failed or interrupted fetch leaves nothing that
looks like a dataset. The default destination is ``$XDR_CACHE/datasets`` (``~/.cache/xdr/datasets``).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import yaml

from xdr.artifacts import sha256_file
from xdr.errors import XdrError
from xdr.runtime import cache_root

REGISTRY_FILE = Path(__file__).with_name("datasets.yaml")
KINDS = ("corpus", "queries", "training", "benchmark")
# Reader formats (see xdr.data), plus "raw" for files xdr stores but has no reader for.
FORMATS = (
    "jsonl", "tsv", "parquet", "xor", "xor-wiki", "translations", "dpr", "tevatron", "swimir",
    "squad", "xquad-r", "raw",
)
CHUNK = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class DatasetFile:
    path: str  # relative to the dataset directory
    url: str | None
    sha256: str | None  # None: no published checksum we could find; the file is not verified
    optional: bool = False  # may be absent from a local copy (e.g. a subset of XQuAD-R's languages)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    kind: str
    format: str
    homepage: str
    license: str
    notes: str
    files: tuple[DatasetFile, ...]  # empty: an opaque directory that is only taken from a local copy

    @property
    def sha256(self) -> tuple[str, ...]:
        """The checksums known for this dataset's files; empty when nothing can be verified."""
        return tuple(f.sha256 for f in self.files if f.sha256)

    def local_path(self, directory: Path) -> Path:
        """What readers take: the file of a one-file dataset, else the dataset directory."""
        return directory / self.files[0].path if len(self.files) == 1 else directory


def cache_dir() -> Path:
    return cache_root() / "datasets"


def _parse_file(where: str, raw: Any) -> DatasetFile:
    if not isinstance(raw, dict) or not isinstance(raw.get("path"), str):
        raise XdrError(f"{where}: each file needs a 'path'")
    rel = PurePosixPath(raw["path"])
    if rel.is_absolute() or ".." in rel.parts:
        raise XdrError(f"{where}: file path {raw['path']!r} must stay inside the dataset directory")
    sha = raw.get("sha256")
    if sha is not None and not (isinstance(sha, str) and _SHA256.fullmatch(sha)):
        raise XdrError(f"{where}: {raw['path']}: sha256 must be 64 lowercase hex digits or null")
    unknown = set(raw) - {"path", "url", "sha256", "optional"}
    if unknown:
        raise XdrError(f"{where}: {raw['path']}: unknown keys {sorted(unknown)}")
    return DatasetFile(str(rel), raw.get("url"), sha, bool(raw.get("optional", False)))


def load_registry(path: str | Path = REGISTRY_FILE) -> dict[str, DatasetSpec]:
    """Parse and check a registry file; a malformed entry is an error now rather than at fetch time."""
    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f) or {}
    if not isinstance(raw, dict):
        raise XdrError(f"{path}: expected a mapping from dataset names to entries")
    specs = {}
    for name, entry in raw.items():
        where = f"{path}: {name}"
        if not isinstance(entry, dict):
            raise XdrError(f"{where}: expected a mapping")
        if entry.get("kind") not in KINDS:
            raise XdrError(f"{where}: kind must be one of {', '.join(KINDS)}")
        if entry.get("format") not in FORMATS:
            raise XdrError(f"{where}: format must be one of {', '.join(FORMATS)}")
        files = tuple(_parse_file(where, f) for f in entry.get("files") or [])
        if len({f.path for f in files}) != len(files):
            raise XdrError(f"{where}: a file path is listed twice")
        specs[str(name)] = DatasetSpec(
            name=str(name),
            description=str(entry.get("description", "")),
            kind=entry["kind"],
            format=entry["format"],
            homepage=str(entry.get("homepage", "")),
            license=str(entry.get("license", "")),
            notes=str(entry.get("notes", "")).strip(),
            files=files,
        )
    return specs


def list_datasets(registry: Mapping[str, DatasetSpec] | None = None) -> list[DatasetSpec]:
    return list((registry if registry is not None else load_registry()).values())


def _spec(name: str, registry: Mapping[str, DatasetSpec] | None) -> DatasetSpec:
    reg = registry if registry is not None else load_registry()
    if name not in reg:
        raise XdrError(f"unknown dataset {name!r}; known: {', '.join(sorted(reg))}")
    return reg[name]


def _copy_hashing(src: BinaryIO, dst: Path) -> str:
    """Copy a stream to ``dst`` in chunks, hashing on the way, so a 13 GB file is read only once."""
    h = hashlib.sha256()
    with open(dst, "wb") as out:
        while block := src.read(CHUNK):
            h.update(block)
            out.write(block)
    return h.hexdigest()


def _download(url: str, target: Path) -> str:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return _copy_hashing(response, target)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
        raise XdrError(f"cannot download {url}: {e}") from None


def _place(src: Path, target: Path, link: bool, need_hash: bool) -> str | None:
    """Copy ``src`` to ``target``, or symlink it (for multi-GB corpora that already sit on this disk)."""
    if link:
        target.symlink_to(src.resolve())
        return sha256_file(src) if need_hash else None
    with open(src, "rb") as f:
        return _copy_hashing(f, target)


def _check(spec: DatasetSpec, file: DatasetFile, digest: str | None, origin: str) -> None:
    if file.sha256 is not None and digest != file.sha256:
        raise XdrError(
            f"{spec.name}: {file.path} from {origin} has sha256 {digest}, expected {file.sha256}; "
            "it is corrupt or a different version, so nothing was kept"
        )


def _fetch_files(spec: DatasetSpec, staging: Path, from_path: Path | None, link: bool) -> None:
    for file in spec.files:
        target = staging / file.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if from_path is None:
            if file.url is None:
                raise XdrError(
                    f"{spec.name}: {file.path} has no download URL ({spec.notes or spec.homepage}); "
                    "get a copy and pass it with from_path (--from)"
                )
            _check(spec, file, _download(file.url, target), file.url)
            continue
        # A one-file dataset may be given as the file itself; otherwise as a directory holding the files.
        src = from_path if from_path.is_file() and len(spec.files) == 1 else from_path / file.path
        if not src.is_file():
            if file.optional:
                continue
            raise XdrError(f"{spec.name}: {src} does not exist; expected {file.path} under {from_path}")
        _check(spec, file, _place(src, target, link, file.sha256 is not None), str(src))


def _fetch_tree(spec: DatasetSpec, staging: Path, from_path: Path | None, link: bool) -> None:
    """An entry without a file list (its layout varies by release) is taken whole from a local copy."""
    if from_path is None:
        raise XdrError(
            f"{spec.name}: has no fixed file list to download; fetch it from {spec.homepage} "
            "and pass the copy with from_path (--from)"
        )
    sources = [from_path] if from_path.is_file() else sorted(p for p in from_path.rglob("*") if p.is_file())
    for src in sources:
        target = staging / (src.name if src == from_path else src.relative_to(from_path))
        target.parent.mkdir(parents=True, exist_ok=True)
        _place(src, target, link, need_hash=False)


def get(
    name: str,
    dest_dir: str | Path | None = None,
    from_path: str | Path | None = None,
    *,
    link: bool = False,
    registry: Mapping[str, DatasetSpec] | None = None,
) -> Path:
    """Fetch a dataset (download, or copy/symlink ``from_path``) and return the path readers take.

    A dataset already in place is returned as it is; ``verify`` re-checks it.
    """
    spec = _spec(name, registry)
    root = Path(dest_dir) if dest_dir is not None else cache_dir()
    final = root / spec.name
    if final.exists():
        return spec.local_path(final)
    source = Path(from_path) if from_path is not None else None
    if source is not None and not source.exists():
        raise XdrError(f"{source}: no such file or directory")
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{spec.name}.", suffix=".tmp", dir=root))
    try:
        (_fetch_files if spec.files else _fetch_tree)(spec, staging, source, link)
        staging.chmod(0o755)  # mkdtemp makes it private; the dataset itself is not
        os.replace(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return spec.local_path(final)


def verify(
    name: str, dest_dir: str | Path | None = None, *, registry: Mapping[str, DatasetSpec] | None = None
) -> Path:
    """Re-hash a fetched dataset's files against the registry; returns its path or raises XdrError."""
    spec = _spec(name, registry)
    final = (Path(dest_dir) if dest_dir is not None else cache_dir()) / spec.name
    if not final.exists():
        raise XdrError(f"dataset {name!r} is not in {final.parent}; fetch it first (xdr data get {name})")
    for file in spec.files:
        path = final / file.path
        if not path.exists():
            if file.optional:
                continue
            raise XdrError(f"{spec.name}: {path} is missing")
        _check(spec, file, sha256_file(path) if file.sha256 else None, str(path))
    return spec.local_path(final)


def resolve(
    name_or_path: str | Path,
    dest_dir: str | Path | None = None,
    *,
    registry: Mapping[str, DatasetSpec] | None = None,
) -> Path:
    """An existing path as it is, or a registered dataset's fetched path, so commands accept either."""
    path = Path(name_or_path)
    if path.exists():
        return path
    reg = registry if registry is not None else load_registry()
    spec = reg.get(str(name_or_path))
    if spec is None:
        raise XdrError(f"{name_or_path}: no such file, and not a dataset name ({', '.join(sorted(reg))})")
    final = (Path(dest_dir) if dest_dir is not None else cache_dir()) / spec.name
    if not final.exists():
        raise XdrError(f"dataset {spec.name!r} is not fetched yet; run `xdr data get {spec.name}` first")
    return spec.local_path(final)
