"""The dataset registry: the shipped entries, offline copies, downloads from a local server, checksum
mismatches that leave nothing behind, and name resolution."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from collections.abc import Callable, Iterator
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
    assert dev.files[0].checksum == ("sha256", "cfe569e4c6d3539c2111d97249f900318f9273b246a61fff95216ce2a2e1505c")
    assert len(specs["xquad-r"].files) == 11 and specs["xquad-r"].verified == 7
    assert specs["xor-enwiki"].verified == 0  # no published checksum: honest null
    assert dev.source == "internet" and specs["swim-ir-cross-lingual"].source == "local copy"
    for spec in specs.values():
        for f in spec.files:
            assert f.url is None or f.url.startswith("https://"), (spec.name, f.path)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"kind": "stuff", "format": "jsonl"}, "bad: kind: Input should be 'corpus', 'queries'"),
        ({"kind": "corpus", "format": "xml"}, "bad: format: Input should be 'jsonl'"),
        (one_file("https://x", sha="ABC"), r"bad: files\.0\.sha256: sha256 must be 64 lowercase hex digits"),
        ({**one_file("https://x"), "files": [{"path": "a", "md5": "0" * 31}]}, "md5 must be 32 lowercase hex"),
        (one_file("https://x", path="../escape"), "must stay inside the dataset directory"),
        ({**one_file("https://x"), "size": 3}, "bad: size: Extra inputs are not permitted"),
        ({"kind": "corpus", "format": "jsonl", "files": [{"path": "a"}, {"path": "a"}]}, "listed twice"),
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


# ------------------------------------------------------------------------------ resumable downloads
BIG = b"".join(b'{"id": "p%d", "text": "passage number %d"}\n' % (i, i) for i in range(2000))
BIG_SHA = hashlib.sha256(BIG).hexdigest()


class RangeServer:
    """A 127.0.0.1 server for BIG that honours ``Range: bytes=N-`` (or ignores it), records each request's
    Range header, and can cut the first response short, as a dropped connection would."""

    def __init__(self, honour_range: bool = True, cut_first_at: int | None = None) -> None:
        self.ranges: list[str | None] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                want = self.headers.get("Range")
                server.ranges.append(want)
                start = int(want.removeprefix("bytes=").rstrip("-")) if want and server.honour else 0
                if start >= len(BIG) and want:
                    self.send_response(416)
                    self.end_headers()
                    return
                body = BIG[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(BIG) - 1}/{len(BIG)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut is not None:
                    body, server.cut = body[: server.cut], None
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.honour, self.cut = honour_range, cut_first_at
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/big.jsonl"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def range_server() -> Iterator[Callable[..., RangeServer]]:
    started: list[RangeServer] = []

    def start(**kwargs: object) -> RangeServer:
        started.append(RangeServer(**kwargs))  # type: ignore[arg-type]
        return started[-1]

    yield start
    for s in started:
        s.stop()


def big_entry(url: str, sha: str | None = BIG_SHA) -> dict:
    return {"kind": "corpus", "format": "jsonl", "files": [{"path": "big.jsonl", "url": url, "sha256": sha}]}


def test_download_resumes_a_truncated_partial_file(tmp_path: Path, range_server) -> None:
    srv = range_server()
    reg = registry(tmp_path, {"big": big_entry(srv.url)})
    dest = tmp_path / "cache"
    partial = dest / ".big.partial"
    partial.mkdir(parents=True)
    (partial / "big.jsonl.part").write_bytes(BIG[:1000])  # what a killed download leaves
    path = get("big", dest, registry=reg)
    assert path.read_bytes() == BIG
    assert srv.ranges == ["bytes=1000-"]  # only the rest was asked for
    assert leftovers(dest) == ["big"]


def test_download_that_drops_is_retried_from_where_it_stopped(
    tmp_path: Path, range_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("xdr.data.registry.time.sleep", lambda s: None)
    srv = range_server(cut_first_at=5000)
    path = get("big", tmp_path / "cache", registry=registry(tmp_path, {"big": big_entry(srv.url)}))
    assert path.read_bytes() == BIG
    assert srv.ranges == [None, "bytes=5000-"]


def test_a_server_that_ignores_range_sends_the_whole_file_again(tmp_path: Path, range_server) -> None:
    srv = range_server(honour_range=False)
    partial = tmp_path / "cache" / ".big.partial"
    partial.mkdir(parents=True)
    (partial / "big.jsonl.part").write_bytes(b"garbage that must not stay in front")
    path = get("big", tmp_path / "cache", registry=registry(tmp_path, {"big": big_entry(srv.url)}))
    assert path.read_bytes() == BIG and srv.ranges == ["bytes=35-"]


def test_a_partial_file_that_is_already_whole(tmp_path: Path, range_server) -> None:
    srv = range_server()
    partial = tmp_path / "cache" / ".big.partial"
    partial.mkdir(parents=True)
    (partial / "big.jsonl.part").write_bytes(BIG)  # killed after the last byte, before the rename
    assert get("big", tmp_path / "cache", registry=registry(tmp_path, {"big": big_entry(srv.url)})).read_bytes() == BIG
    assert srv.ranges == [f"bytes={len(BIG)}-"]


def test_a_corrupt_partial_file_fails_its_checksum_and_is_dropped(tmp_path: Path, range_server) -> None:
    srv = range_server()
    reg = registry(tmp_path, {"big": big_entry(srv.url)})
    dest = tmp_path / "cache"
    partial = dest / ".big.partial"
    partial.mkdir(parents=True)
    (partial / "big.jsonl.part").write_bytes(b"X" * 1000)  # right length, wrong bytes
    with pytest.raises(XdrError, match=f"expected {BIG_SHA}; it is corrupt.*nothing was kept"):
        get("big", dest, registry=reg)
    assert leftovers(dest) == []  # the bad file is gone, so the next run starts clean
    assert get("big", dest, registry=reg).read_bytes() == BIG
    assert srv.ranges == ["bytes=1000-", None]


def test_files_already_fetched_are_kept_when_a_later_one_fails(
    tmp_path: Path, range_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("xdr.data.registry.time.sleep", lambda s: None)
    srv = range_server()
    entry = {"kind": "corpus", "format": "jsonl", "files": [
        {"path": "a/big.jsonl", "url": srv.url, "sha256": BIG_SHA},
        {"path": "b/missing.jsonl", "url": "http://127.0.0.1:1/missing.jsonl", "sha256": None},
    ]}
    dest = tmp_path / "cache"
    with pytest.raises(XdrError, match=r"cannot download http://127\.0\.0\.1:1/missing\.jsonl.*run the same command"):
        get("two", dest, registry=registry(tmp_path, {"two": entry}))
    assert (dest / ".two.partial" / "a" / "big.jsonl").read_bytes() == BIG  # verified, kept for the rerun
    assert not (dest / ".two.partial" / "b").exists()


def test_md5_checksums(tmp_path: Path, server: str) -> None:
    md5 = hashlib.md5(CONTENT).hexdigest()
    ok = {"kind": "queries", "format": "jsonl", "files": [{"path": "q.jsonl", "url": f"{server}/q.jsonl", "md5": md5}]}
    bad = {**ok, "files": [{**ok["files"][0], "md5": "0" * 32}]}
    reg = registry(tmp_path, {"ok": ok, "bad": bad})
    assert get("ok", tmp_path / "cache", registry=reg).read_bytes() == CONTENT
    assert verify("ok", tmp_path / "cache", registry=reg).read_bytes() == CONTENT
    with pytest.raises(XdrError, match=f"has md5 {md5}, expected 0{{32}}"):
        get("bad", tmp_path / "cache", registry=reg)


def test_hub_files_go_through_huggingface_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub path is huggingface_hub's (no network here): xdr's part is the repo/file/revision it asks
    for, where the file ends up, the checksum, and clearing huggingface_hub's bookkeeping afterwards."""
    import huggingface_hub

    calls = []

    def fake_download(repo_id: str, filename: str, *, repo_type: str, revision: str, local_dir: Path) -> str:
        calls.append((repo_id, filename, repo_type, revision))
        out = Path(local_dir) / filename
        out.parent.mkdir(parents=True, exist_ok=True)
        (Path(local_dir) / ".cache").mkdir(exist_ok=True)
        out.write_bytes(CONTENT)
        return str(out)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    url = "https://huggingface.co/datasets/miracl/miracl/resolve/main/miracl-v1.0-te/topics/topics.miracl-v1.0-te-dev.tsv"
    md5 = hashlib.md5(CONTENT).hexdigest()
    files = [{"path": "t.tsv", "url": url, "md5": md5}]
    entry = {"kind": "benchmark", "format": "miracl", "gated": True, "files": files}
    path = get("m", tmp_path / "cache", registry=registry(tmp_path, {"m": entry}))
    assert calls == [("miracl/miracl", "miracl-v1.0-te/topics/topics.miracl-v1.0-te-dev.tsv", "dataset", "main")]
    assert path.read_bytes() == CONTENT
    assert sorted(p.name for p in (tmp_path / "cache" / "m").iterdir()) == ["t.tsv"]  # no .hub left


def test_hub_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    def gated(*args: object, **kwargs: object) -> str:
        raise OSError("401 Client Error: access to dataset miracl/miracl is restricted")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", gated)
    url = "https://huggingface.co/datasets/miracl/miracl/resolve/main/x.tsv"
    entry = {"kind": "benchmark", "format": "miracl", "files": [{"path": "x.tsv", "url": url}]}
    with pytest.raises(XdrError, match=r"cannot download https://huggingface.*: 401 Client Error"):
        get("m", tmp_path / "cache", registry=registry(tmp_path, {"m": entry}))
