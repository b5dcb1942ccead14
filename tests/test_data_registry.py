"""The dataset registry: the shipped entries, offline copies, downloads from a local server, checksum
mismatches that leave nothing behind, and name resolution."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from xdr.data import read_queries
from xdr.data.registry import (
    DatasetSpec,
    cache_dir,
    get,
    list_datasets,
    load_registry,
    resolve,
    verify,
)
from xdr.errors import XdrError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
XOR_DEV = SHARED / "xor-tydi" / "xor_dev_retrieve_eng_span_v1_1.jsonl"
XQUAD = SHARED / "xquad-r"
CONTENT = b'{"id": "q1", "lang": "fi", "text": "Mika on Suomen paakaupunki?"}\n'
SHA = hashlib.sha256(CONTENT).hexdigest()


def registry(tmp_path: Path, entries: dict) -> dict[str, DatasetSpec]:
    path = tmp_path / "datasets.yaml"
    path.write_text(yaml.safe_dump(entries), encoding="utf-8")
    return load_registry(path)


def one_file(url: str | None, sha: str | None = SHA, path: str = "q.jsonl") -> dict:
    return {"kind": "queries", "format": "jsonl", "files": [{"path": path, "url": url, "sha256": sha}]}


def leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir()) if dest.exists() else []


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """A throwaway HTTP server on 127.0.0.1 serving tmp_path/www."""
    www = tmp_path / "www"
    www.mkdir()
    (www / "q.jsonl").write_bytes(CONTENT)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_shipped_registry_is_valid() -> None:
    specs = {d.name: d for d in list_datasets()}
    assert {
        "xor-tydi-dev", "xor-tydi-train", "xor-tydi-translations", "xor-enwiki", "xquad-r", "dpr-nq-train",
        "swim-ir-cross-lingual", "xor-tydi-xqg-augmented",
    } <= set(specs)
    dev = specs["xor-tydi-dev"]
    assert dev.kind == "queries" and dev.format == "xor"
    assert dev.files[0].url == "https://nlp.cs.washington.edu/xorqa/XORQA_site/data/xor_dev_retrieve_eng_span_v1_1.jsonl"
    assert dev.sha256 == ("cfe569e4c6d3539c2111d97249f900318f9273b246a61fff95216ce2a2e1505c",)
    assert len(specs["xquad-r"].files) == 11 and len(specs["xquad-r"].sha256) == 7
    assert specs["xor-enwiki"].sha256 == ()  # no published checksum: honest null
    for spec in specs.values():
        for f in spec.files:
            assert f.url is None or f.url.startswith("https://"), (spec.name, f.path)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"kind": "stuff", "format": "jsonl"}, "kind must be one of"),
        ({"kind": "corpus", "format": "csv"}, "format must be one of"),
        (one_file("https://x", sha="ABC"), "sha256 must be 64 lowercase hex digits"),
        (one_file("https://x", path="../escape"), "must stay inside the dataset directory"),
    ],
)
def test_malformed_registry_entries(tmp_path: Path, entry: dict, message: str) -> None:
    with pytest.raises(XdrError, match=message):
        registry(tmp_path, {"bad": entry})


def test_download_over_http_verifies_and_is_idempotent(tmp_path: Path, server: str) -> None:
    reg = registry(tmp_path, {"tiny": one_file(f"{server}/q.jsonl")})
    dest = tmp_path / "cache"
    path = get("tiny", dest, registry=reg)
    assert path == dest / "tiny" / "q.jsonl" and path.read_bytes() == CONTENT
    assert [q.id for q in read_queries(path)] == ["q1"]
    assert leftovers(dest) == ["tiny"]  # the staging directory is gone
    assert get("tiny", dest, registry=reg) == path  # already there: not fetched again
    assert verify("tiny", dest, registry=reg) == path


def test_download_from_file_url(tmp_path: Path) -> None:
    src = tmp_path / "q.jsonl"
    src.write_bytes(CONTENT)
    reg = registry(tmp_path, {"tiny": one_file(src.as_uri())})
    assert get("tiny", tmp_path / "cache", registry=reg).read_bytes() == CONTENT


def test_checksum_mismatch_leaves_nothing(tmp_path: Path, server: str) -> None:
    reg = registry(tmp_path, {"tiny": one_file(f"{server}/q.jsonl", sha="0" * 64)})
    dest = tmp_path / "cache"
    with pytest.raises(XdrError, match=f"has sha256 {SHA}, expected 0{{64}}.*nothing was kept"):
        get("tiny", dest, registry=reg)
    assert leftovers(dest) == []
    src = tmp_path / "www" / "q.jsonl"
    with pytest.raises(XdrError, match="nothing was kept"):
        get("tiny", dest, from_path=src, registry=reg)
    assert leftovers(dest) == []


def test_download_errors(tmp_path: Path, server: str) -> None:
    reg = registry(tmp_path, {"gone": one_file(f"{server}/missing.jsonl"), "manual": one_file(None)})
    with pytest.raises(XdrError, match=r"cannot download .*missing\.jsonl.*404"):
        get("gone", tmp_path / "cache", registry=reg)
    with pytest.raises(XdrError, match=r"has no download URL.*from_path"):
        get("manual", tmp_path / "cache", registry=reg)
    with pytest.raises(XdrError, match="unknown dataset 'nope'; known: gone, manual"):
        get("nope", tmp_path / "cache", registry=reg)
    assert leftovers(tmp_path / "cache") == []


def test_from_path_copy_link_and_tamper(tmp_path: Path) -> None:
    src_dir = tmp_path / "local"
    src_dir.mkdir()
    (src_dir / "q.jsonl").write_bytes(CONTENT)
    reg = registry(tmp_path, {"tiny": one_file(None)})
    copied = get("tiny", tmp_path / "a", from_path=src_dir, registry=reg)  # a directory holding the file
    assert copied.read_bytes() == CONTENT and not copied.is_symlink()
    linked = get("tiny", tmp_path / "b", from_path=src_dir / "q.jsonl", link=True, registry=reg)
    assert linked.is_symlink() and linked.resolve() == (src_dir / "q.jsonl").resolve()
    copied.write_bytes(CONTENT + b"\n")
    with pytest.raises(XdrError, match="expected " + SHA):
        verify("tiny", tmp_path / "a", registry=reg)


def test_opaque_directory_dataset(tmp_path: Path) -> None:
    src = tmp_path / "swim"
    (src / "fi").mkdir(parents=True)
    (src / "fi" / "train-00000-of-00001.parquet").write_bytes(b"PAR1")
    reg = registry(tmp_path, {"swim": {"kind": "training", "format": "swimir", "homepage": "https://hf"}})
    with pytest.raises(XdrError, match=r"no fixed file list.*https://hf"):
        get("swim", tmp_path / "cache", registry=reg)
    path = get("swim", tmp_path / "cache", from_path=src, registry=reg)
    assert (path / "fi" / "train-00000-of-00001.parquet").read_bytes() == b"PAR1"


def test_resolve_and_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDR_CACHE", str(tmp_path / "xc"))
    assert cache_dir() == tmp_path / "xc" / "datasets"
    src = tmp_path / "q.jsonl"
    src.write_bytes(CONTENT)
    reg = registry(tmp_path, {"tiny": one_file(None)})
    assert resolve(src, registry=reg) == src  # a path passes through
    with pytest.raises(XdrError, match="not fetched yet; run `xdr data get tiny`"):
        resolve("tiny", registry=reg)
    got = get("tiny", from_path=src, registry=reg)  # default destination: the cache
    assert got == tmp_path / "xc" / "datasets" / "tiny" / "q.jsonl"
    assert resolve("tiny", registry=reg) == got
    with pytest.raises(XdrError, match="not a dataset name"):
        resolve("nothing-here", registry=reg)


@pytest.mark.skipif(not XOR_DEV.is_file(), reason="shared XOR-TyDi data not present")
def test_real_xor_dev_from_local_copy(tmp_path: Path) -> None:
    path = get("xor-tydi-dev", tmp_path, from_path=XOR_DEV.parent)
    assert path.name == XOR_DEV.name and path.read_bytes() == XOR_DEV.read_bytes()


@pytest.mark.skipif(not XQUAD.is_dir(), reason="shared XQuAD-R data not present")
def test_real_xquad_r_subset_from_local_copy(tmp_path: Path) -> None:
    path = get("xquad-r", tmp_path, from_path=XQUAD, link=True)
    assert path == tmp_path / "xquad-r"
    langs = ("de", "el", "en", "es", "hi", "tr", "vi")
    assert sorted(p.name for p in path.iterdir()) == [f"{x}.json" for x in langs]
    assert verify("xquad-r", tmp_path) == path
