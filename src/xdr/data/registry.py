"""The dataset registry: what xdr knows how to fetch, from where, and how to check it.

Entries live in ``datasets.yaml`` beside this module and are parsed into frozen pydantic models, so a
malformed entry fails when the registry loads, naming the entry and the field. ``get`` fetches a dataset
into ``<dest>/<name>/`` either by downloading its URLs or, offline, from a local copy (``from_path``),
checking every file that has a published checksum (sha256, or md5 where that is all the publisher
gives). The default destination is ``$XDR_CACHE/datasets`` (``~/.cache/xdr/datasets``).

Downloads resume: files are gathered in ``<dest>/.<name>.partial/``, which a failed or killed fetch
leaves behind and the next ``get`` continues; the directory is renamed to ``<name>`` only when every file
is present and verified, so nothing that looks like a dataset is ever half there. A file that fails its
checksum is deleted. Hugging Face hub files (``https://huggingface.co/datasets/<repo>/resolve/...``) go
through ``huggingface_hub.hf_hub_download``: its resume, retries, xet transfers and the login that gated
repositories (MIRACL's topics) need. Other URLs are fetched with httpx; the resume (an HTTP ``Range``
request from the bytes already on disk) and the retries stay hand-written here because pooch, the
usual library for plain URLs, restarts a broken download from zero, which for the 13 GB XOR corpus is
not an option, and huggingface_hub's plain-URL helper is not public API. Two ``get`` runs of the same
dataset at once are not guarded against.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from xdr.errors import XdrError
from xdr.runtime import cache_root

REGISTRY_FILE = Path(__file__).with_name("datasets.yaml")
Kind = Literal["corpus", "queries", "training", "benchmark"]
# Reader formats (see xdr.data), plus "raw" for files xdr stores but has no reader for.
Format = Literal[
    "jsonl", "tsv", "csv", "parquet", "beir", "pyserini", "miracl", "xor", "xor-wiki", "translations", "dpr",
    "tevatron", "swimir", "squad", "xquad-r", "raw",
]
CHUNK = 1 << 20
RETRIES = 5
HUB_URL = re.compile(r"https://huggingface\.co/datasets/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<file>.+)")
PARTIAL = ".part"


class DatasetFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str  # relative to the dataset directory
    url: str | None = None
    sha256: str | None = None  # None (with md5 None): no published checksum we could find; not verified
    md5: str | None = None
    optional: bool = False  # may be absent from a local copy (e.g. a subset of XQuAD-R's languages)

    @field_validator("path")
    @classmethod
    def _inside(cls, value: str) -> str:
        rel = PurePosixPath(value)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise ValueError(f"file path {value!r} must stay inside the dataset directory")
        return str(rel)

    @field_validator("sha256", "md5")
    @classmethod
    def _hex(cls, value: str | None, info: Any) -> str | None:
        digits = 64 if info.field_name == "sha256" else 32
        if value is not None and not re.fullmatch(f"[0-9a-f]{{{digits}}}", value):
            raise ValueError(f"{info.field_name} must be {digits} lowercase hex digits or null")
        return value

    @property
    def checksum(self) -> tuple[str, str] | None:
        """(algorithm, hex digest), the strongest one published; None when the file cannot be verified."""
        if self.sha256:
            return "sha256", self.sha256
        return ("md5", self.md5) if self.md5 else None


class DatasetSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str = ""
    kind: Kind
    format: Format
    homepage: str = ""
    license: str = ""
    notes: str = ""
    gated: bool = False  # the host wants a login and accepted terms (huggingface-cli login, or HF_TOKEN)
    files: tuple[DatasetFile, ...] = ()  # empty: an opaque directory that is only taken from a local copy

    @field_validator("notes")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    @model_validator(mode="after")
    def _distinct_paths(self) -> DatasetSpec:
        if len({f.path for f in self.files}) != len(self.files):
            raise ValueError("a file path is listed twice")
        return self

    @property
    def verified(self) -> int:
        """How many of the files have a published checksum."""
        return sum(f.checksum is not None for f in self.files)

    @property
    def source(self) -> str:
        """Where ``get`` takes it from without ``--from``: the internet, or only a local copy."""
        if not self.files or all(f.url is None for f in self.files):
            return "local copy"
        return "internet (login)" if self.gated else "internet"

    def local_path(self, directory: Path) -> Path:
        """What readers take: the file of a one-file dataset, else the dataset directory."""
        return directory / self.files[0].path if len(self.files) == 1 else directory


def cache_dir() -> Path:
    return cache_root() / "datasets"


def load_registry(path: str | Path = REGISTRY_FILE) -> dict[str, DatasetSpec]:
    """Parse and check a registry file; a malformed entry is an error now rather than at fetch time."""
    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f) or {}
    if not isinstance(raw, dict):
        raise XdrError(f"{path}: expected a mapping from dataset names to entries")
    specs = {}
    for name, entry in raw.items():
        if not isinstance(entry, dict):
            raise XdrError(f"{path}: {name}: expected a mapping")
        try:
            specs[str(name)] = DatasetSpec(name=str(name), **entry)
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(part) for part in err["loc"])
            message = str(err["msg"]).removeprefix("Value error, ")
            raise XdrError(f"{path}: {name}: {where}: {message}") from None
    return specs


def list_datasets(registry: Mapping[str, DatasetSpec] | None = None) -> list[DatasetSpec]:
    return list((registry if registry is not None else load_registry()).values())


def _spec(name: str, registry: Mapping[str, DatasetSpec] | None) -> DatasetSpec:
    reg = registry if registry is not None else load_registry()
    if name not in reg:
        raise XdrError(f"unknown dataset {name!r}; known: {', '.join(sorted(reg))}")
    return reg[name]


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def _check(spec: DatasetSpec, file: DatasetFile, path: Path, origin: str, digest: str | None = None) -> None:
    """Verify a file against its published checksum (``digest`` if already computed); a mismatch deletes
    the file, unless it is a link to the user's own copy."""
    if file.checksum is None:
        return
    algorithm, expected = file.checksum
    digest = digest or _digest(path, algorithm)
    if digest != expected:
        if not path.is_symlink():
            path.unlink()
        raise XdrError(
            f"{spec.name}: {file.path} from {origin} has {algorithm} {digest}, expected {expected}; "
            "it is corrupt or a different version, so nothing was kept"
        )


def _progress(name: str, total: int | None, done: int) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        console=Console(stderr=True), transient=True,
    )
    return bar, bar.add_task(name, total=total, completed=done)


def _http_get(url: str, part: Path) -> None:
    """GET ``url`` into ``part``, resuming from the bytes it holds; a dropped connection is retried.

    A server that ignores ``Range`` (200 instead of 206) sends the whole file, which then replaces the
    partial one. 416 on a resume means the partial file is already whole; its checksum decides.
    """
    import httpx

    for attempt in range(RETRIES + 1):
        have = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            with httpx.stream("GET", url, headers=headers, follow_redirects=True, timeout=60) as response:
                if response.status_code == 416 and have:
                    return
                response.raise_for_status()
                resumed = response.status_code == 206 and response.headers.get(
                    "content-range", ""
                ).startswith(f"bytes {have}-")
                length = response.headers.get("content-length")
                done = have if resumed else 0
                bar, task = _progress(part.name.removesuffix(PARTIAL), int(length) + done if length else None, done)
                with open(part, "ab" if resumed else "wb") as out, bar:
                    for block in response.iter_bytes():  # as received: a drop keeps what came
                        out.write(block)
                        bar.advance(task, len(block))
            return
        except httpx.HTTPStatusError as e:
            raise XdrError(f"cannot download {url}: HTTP {e.response.status_code}") from None
        except httpx.TransportError as e:
            if attempt == RETRIES:
                raise XdrError(f"cannot download {url}: {e}; run the same command again to resume") from None
            time.sleep(min(2**attempt, 30))


def _hub_get(match: re.Match[str], staging: Path, part: Path) -> None:
    """A hub file through huggingface_hub (resume, retries, xet, the login gated repositories need)."""
    from huggingface_hub import hf_hub_download

    local = staging / ".hub"  # hf_hub_download keeps its own partial files under here
    try:
        path = hf_hub_download(
            match["repo"], urllib.parse.unquote(match["file"]), repo_type="dataset", revision=match["revision"],
            local_dir=local,
        )
    except (OSError, ValueError) as e:  # the hub's HTTP, gated-repo and offline errors are OSErrors
        raise XdrError(f"cannot download {match.group(0)}: {e}") from None
    os.replace(path, part)


def _download(url: str, staging: Path, part: Path) -> None:
    """Fetch one URL, whole, to ``part``: a hub file, plain HTTP(S), or a ``file:`` URL (a mounted mirror)."""
    if match := HUB_URL.fullmatch(url):
        _hub_get(match, staging, part)
    elif url.startswith("file:"):
        src = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
        if not src.is_file():
            raise XdrError(f"cannot download {url}: no such file")
        shutil.copyfile(src, part)
    else:
        _http_get(url, part)


def _place(src: Path, target: Path, link: bool, algorithm: str | None = None) -> str | None:
    """Copy ``src`` to ``target`` hashing on the way (a 13 GB file is read once), or symlink it (for
    multi-GB corpora that already sit on this disk); returns the digest when ``algorithm`` is given."""
    if link:
        target.symlink_to(src.resolve())
        return None
    h = hashlib.new(algorithm) if algorithm else None
    with open(src, "rb") as f, open(target, "wb") as out:
        while block := f.read(CHUNK):
            out.write(block)
            if h is not None:
                h.update(block)
    return h.hexdigest() if h is not None else None


def _prune(staging: Path) -> None:
    """Remove empty directories a failed fetch leaves, so only real partial data stays to resume."""
    for d in sorted((p for p in staging.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        if not any(d.iterdir()):
            d.rmdir()
    if staging.is_dir() and not any(staging.iterdir()):
        staging.rmdir()


def _download_files(spec: DatasetSpec, staging: Path) -> None:
    """Every file into ``staging``, each under ``<name>.part`` until it is whole and verified: a file
    already there was verified by an earlier run and is kept."""
    try:
        for file in spec.files:
            if file.url is None:
                raise XdrError(
                    f"{spec.name}: {file.path} has no download URL ({spec.notes or spec.homepage}); "
                    "get a copy and pass it with from_path (--from)"
                )
        for file in spec.files:
            target = staging / file.path
            if target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            part = target.with_name(target.name + PARTIAL)
            _download(str(file.url), staging, part)
            _check(spec, file, part, str(file.url))
            os.replace(part, target)
    finally:
        _prune(staging)
    shutil.rmtree(staging / ".hub", ignore_errors=True)  # huggingface_hub's bookkeeping, once all are in


def _copy_files(spec: DatasetSpec, staging: Path, from_path: Path, link: bool) -> None:
    for file in spec.files:
        target = staging / file.path
        target.parent.mkdir(parents=True, exist_ok=True)
        # A one-file dataset may be given as the file itself; otherwise as a directory holding the files.
        src = from_path if from_path.is_file() and len(spec.files) == 1 else from_path / file.path
        if not src.is_file():
            if file.optional:
                continue
            raise XdrError(f"{spec.name}: {src} does not exist; expected {file.path} under {from_path}")
        algorithm = file.checksum[0] if file.checksum else None
        _check(spec, file, target, str(src), _place(src, target, link, algorithm))


def _copy_tree(spec: DatasetSpec, staging: Path, from_path: Path, link: bool) -> None:
    """An entry without a file list (its layout varies by release) is taken whole from a local copy."""
    sources = [from_path] if from_path.is_file() else sorted(p for p in from_path.rglob("*") if p.is_file())
    for src in sources:
        target = staging / (src.name if src == from_path else src.relative_to(from_path))
        target.parent.mkdir(parents=True, exist_ok=True)
        _place(src, target, link)


def get(
    name: str,
    dest_dir: str | Path | None = None,
    from_path: str | Path | None = None,
    *,
    link: bool = False,
    registry: Mapping[str, DatasetSpec] | None = None,
) -> Path:
    """Fetch a dataset (download, or copy/symlink ``from_path``) and return the path readers take.

    A dataset already in place is returned as it is; ``verify`` re-checks it. An interrupted download
    is resumed by calling ``get`` again.
    """
    spec = _spec(name, registry)
    root = Path(dest_dir) if dest_dir is not None else cache_dir()
    final = root / spec.name
    if final.exists():
        return spec.local_path(final)
    source = Path(from_path) if from_path is not None else None
    if source is not None and not source.exists():
        raise XdrError(f"{source}: no such file or directory")
    if source is None and not spec.files:
        raise XdrError(
            f"{spec.name}: has no fixed file list to download; fetch it from {spec.homepage} "
            "and pass the copy with from_path (--from)"
        )
    root.mkdir(parents=True, exist_ok=True)
    partial = root / f".{spec.name}.partial"
    if source is None:
        partial.mkdir(exist_ok=True)
        _download_files(spec, partial)
        os.replace(partial, final)
        return spec.local_path(final)
    staging = Path(tempfile.mkdtemp(prefix=f".{spec.name}.", suffix=".tmp", dir=root))
    try:
        (_copy_files if spec.files else _copy_tree)(spec, staging, source, link)
        staging.chmod(0o755)  # mkdtemp makes it private; the dataset itself is not
        os.replace(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(partial, ignore_errors=True)  # an abandoned download of what a local copy now provides
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
        if file.checksum is not None:
            algorithm, expected = file.checksum
            if (digest := _digest(path, algorithm)) != expected:
                raise XdrError(f"{spec.name}: {path} has {algorithm} {digest}, expected {expected}")
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
