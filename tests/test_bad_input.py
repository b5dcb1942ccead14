"""Every command on bad input: exit status 2, one line on stderr, no traceback, nothing complete left behind.

Each case is a command line that once gave a traceback or, worse, a wrong result with exit status 0. Cases
that need a read-only or a full file system run the command in a private mount namespace (``unshare -m``)
over a tmpfs, and are skipped where the machine does not allow one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from xdr.config import ModelSpec
from xdr.embeddings import write_embeddings
from xdr.generate.artifact import generated_query_id
from xdr.index import build_index
from xdr.maxsim import build_vector_store

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo"
RECIPE = next((ROOT / "configs").glob("*.yaml"), None) or next((ROOT / "src" / "xdr" / "configs").glob("*.yaml"))


@pytest.fixture(scope="module")
def art(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> dict[str, Path]:
    """Small finished artifacts of every kind, and a few bad input files."""
    root = tmp_path_factory.mktemp("bad")
    spec = ModelSpec(name="tiny", path=str(tiny_bert_dir), normalize=True)
    rng = np.random.default_rng(0)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    pids = [f"p{i}" for i in range(300)]
    emb = write_embeddings(pids, unit(rng.normal(size=(300, 32))), spec, root / "emb", progress=False)
    gids = [generated_query_id(p, "de", k) for p in pids for k in range(2)]
    gen = write_embeddings(gids, unit(rng.normal(size=(600, 32))), spec, root / "gen-emb", kind="query",
                           progress=False)
    (root / "not.parquet").write_bytes(b"this is not parquet")
    (root / "bad-header.tsv").write_bytes(b"id\ttext\xff\xfe\n1\thello\n")
    (root / "spaces.jsonl").write_text(json.dumps({"id": "a b", "text": "hello"}) + "\n")
    (root / "a-file").write_text("x")
    (root / "other.trec").write_text("zz9 Q0 d01 1 1.0 x\n")  # a run of some other query set
    long = root / "long.jsonl"
    long.write_text(json.dumps({"id": "d1", "text": " ".join(["word"] * 600)}) + "\n")
    return {
        "root": root, "model": tiny_bert_dir, "emb": emb, "gen_emb": gen,
        "index": build_index(emb, root / "idx", progress=False),
        "store": build_vector_store(gen, root / "store", progress=False),
    }


def cases(a: dict[str, Path]) -> dict[str, list[str]]:
    """Command lines (after `xdr`) that must fail with one line; OUT is a fresh output path."""
    r = a["root"]
    tiny = ["--model", str(a["model"]), "--pooling", "cls"]  # a stated pooling: no notice about guessing it
    corpus, queries, qrels = str(DEMO / "corpus.jsonl"), str(DEMO / "queries.jsonl"), str(DEMO / "qrels.txt")
    return {
        "augment unknown language": ["augment", str(a["emb"]), str(a["gen_emb"]), "--out", "OUT", "--langs", "jp"],
        "augment alpha nan": ["augment", str(a["emb"]), str(a["gen_emb"]), "--out", "OUT", "--alpha", "nan"],
        "index beta nan": ["index", str(a["emb"]), "--with-generated", str(a["store"]), "--beta", "nan",
                           "--out", "OUT"],
        "index bad factory": ["index", str(a["emb"]), "--factory", "IVF9x", "--out", "OUT"],
        "index ef-construction on flat": ["index", str(a["emb"]), "--ef-construction", "200", "--out", "OUT"],
        "search beta nan": ["search", str(a["index"]), queries, "--out", "OUT", "--beta", "nan"],
        "search k 0": ["search", str(a["index"]), queries, "--out", "OUT", "--k", "0"],
        "search batch -1": ["search", str(a["index"]), queries, "--out", "OUT", "--batch-size", "-1"],
        "encode query length 1": ["encode", corpus, *tiny, "--query-max-length", "1", "--out", "OUT"],
        "encode query length 0": ["encode", corpus, *tiny, "--query-max-length", "0", "--out", "OUT"],
        "encode passage length 1": ["encode", corpus, *tiny, "--passage-max-length", "1", "--out", "OUT"],
        "encode passage length past the model": ["encode", str(r / "long.jsonl"), *tiny,
                                                 "--passage-max-length", "4096", "--out", "OUT"],
        "encode batch 0": ["encode", corpus, *tiny, "--batch-size", "0", "--out", "OUT"],
        "encode not parquet": ["encode", str(r / "not.parquet"), *tiny, "--out", "OUT"],
        "encode bad utf-8 header": ["encode", str(r / "bad-header.tsv"), *tiny, "--out", "OUT"],
        "encode id with spaces": ["encode", str(r / "spaces.jsonl"), *tiny, "--out", "OUT"],
        "encode device cuda without one": ["encode", corpus, *tiny, "--device", "cuda", "--out", "OUT"],
        "encode tokenizer workers -1": ["encode", corpus, *tiny, "--tokenizer-workers", "-1", "--out", "OUT"],
        "encode device foo": ["encode", corpus, *tiny, "--device", "foo", "--out", "OUT"],
        "encode out is a file": ["encode", corpus, *tiny, "--out", str(r / "a-file")],
        "maxsim-store pq-m 0": ["maxsim-store", str(a["gen_emb"]), "--dtype", "pq", "--pq-m", "0", "--out", "OUT"],
        "maxsim-store pq-m -8": ["maxsim-store", str(a["gen_emb"]), "--dtype", "pq", "--pq-m", "-8", "--out", "OUT"],
        "maxsim-store passages": ["maxsim-store", str(a["emb"]), "--out", "OUT"],
        "evaluate run matches no query": ["evaluate", str(r / "other.trec"), "--queries", queries, "--qrels", qrels,
                                          "--corpus", corpus, "--out", "OUT"],
        "evaluate malformed run": ["evaluate", str(r / "a-file"), "--queries", queries, "--qrels", qrels,
                                   "--out", "OUT"],
        "reproduce var without =": ["reproduce", str(RECIPE), "--dry-run", "--var", "work"],
        "reproduce unknown var": ["reproduce", str(RECIPE), "--dry-run", "--var", "nosuchvar=1"],
        "train lr nan": ["train", "--train", str(DEMO / "queries.jsonl"), *tiny, "--lr", "nan", "--out", "OUT"],
        "train scale nan": ["train", "--train", queries, *tiny, "--scale", "nan", "--out", "OUT"],
        "train epochs nan": ["train", "--train", queries, *tiny, "--epochs", "nan", "--out", "OUT"],
        "train warmup -5": ["train", "--train", queries, *tiny, "--warmup-steps", "-5", "--out", "OUT"],
        "train attention bogus": ["train", "--train", queries, *tiny, "--attention", "bogus", "--out", "OUT"],
        "train unknown language": ["train", "--train", f"xx:{queries}", *tiny, "--out", "OUT"],
        "generate timeout 0": ["generate", "run", corpus, "--langs", "de", "--generator", "openai", "--timeout", "0",
                               "--out", "OUT"],
        "generate n 0": ["generate", "run", corpus, "--langs", "de", "--n", "0", "--out", "OUT"],
        "generate unknown language": ["generate", "run", corpus, "--langs", "zz", "--out", "OUT"],
        "mine depth 0": ["mine", str(DEMO / "queries.jsonl"), "--corpus", corpus, "--depth", "0", "--out", "OUT"],
        "data convert unknown kind": ["data", "convert", corpus, "OUT", "--kind", "nonsense"],
        "data prepare unknown language": ["data", "prepare", "xquad-r", "--from", str(r), "--langs", "jp",
                                          "--out", "OUT"],
        "unknown option": ["encode", corpus, "--no-such-option", "--out", "OUT"],
    }


def run_xdr(argv: list[str], prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [*(prefix or []), sys.executable, "-m", "xdr", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)


def assert_one_line_error(done: subprocess.CompletedProcess[str], out: Path | None) -> None:
    # the last frame of a progress bar (rows/s) may precede the error; it is output, not a second error
    lines = [x for x in done.stderr.splitlines() if x.strip() and "rows/s" not in x]
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error:"), done.stderr[-2000:]
    assert "Traceback" not in done.stderr + done.stdout
    if out is not None and out.exists() and out.is_dir():
        complete = [p.name for p in out.rglob("*") if p.name in ("_DONE", "run.trec", "xor.json", "report.json")
                    or p.name.startswith("part-")]
        assert not complete, f"{out} holds complete-looking files after a failure: {complete}"


def test_every_bad_input_is_one_line_with_exit_2(art: dict[str, Path], tmp_path: Path) -> None:
    def check(name: str, argv: list[str]) -> str | None:
        out = tmp_path / name.replace(" ", "-")
        done = run_xdr([str(out) if x == "OUT" else x for x in argv])
        try:
            assert_one_line_error(done, out)
        except AssertionError as e:
            return f"{name}: {e}"
        return None

    # each case is a fresh interpreter that spends most of its time importing: run them side by side
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        failures = [f for f in pool.map(lambda case: check(*case), cases(art).items()) if f]
    assert not failures, "\n\n".join(failures)


def _unshare_tmpfs(options: str) -> list[str] | None:
    """A command prefix running its command with a fresh tmpfs at MNT, or None where not allowed."""
    if shutil.which("unshare") is None:
        return None
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /mnt && true"], capture_output=True)
    if probe.returncode != 0:
        return None
    return ["unshare", "-m", "sh", "-c", f'mount -t tmpfs -o {options} tmpfs /mnt && exec "$@"', "sh"]


@pytest.mark.parametrize("command", ["encode", "index", "search", "evaluate", "maxsim-store", "augment"])
def test_a_read_only_out_is_one_line(art: dict[str, Path], command: str) -> None:
    prefix = _unshare_tmpfs("ro,size=1m")
    if prefix is None:
        pytest.skip("no private mount namespace here (unshare -m needs root)")
    queries = str(DEMO / "queries.jsonl")
    argv = {
        "encode": ["encode", str(DEMO / "corpus.jsonl"), "--model", str(art["model"]), "--pooling", "cls"],
        "index": ["index", str(art["emb"])],
        "search": ["search", str(art["index"]), queries],
        "evaluate": ["evaluate", str(art["root"] / "a-file"), "--queries", queries],
        "maxsim-store": ["maxsim-store", str(art["gen_emb"])],
        "augment": ["augment", str(art["emb"]), str(art["gen_emb"])],
    }[command]
    assert_one_line_error(run_xdr([*argv, "--out", "/mnt/out"], prefix), None)


def test_a_full_disk_is_one_line_and_leaves_nothing_complete(art: dict[str, Path]) -> None:
    prefix = _unshare_tmpfs("size=40k")
    if prefix is None:
        pytest.skip("no private mount namespace here (unshare -m needs root)")
    check = "import pathlib, sys; out = pathlib.Path('/mnt/out'); sys.exit(any(out.glob('_DONE')))"
    argv = ["index", str(art["emb"]), "--out", "/mnt/out"]
    cmd = [*prefix, "sh", "-c", f'"{sys.executable}" -m xdr "$@"; rc=$?; "{sys.executable}" -c "{check}" || exit 99; '
           'exit $rc', "sh", *argv]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode != 99, "a _DONE was written on a full disk"
    assert_one_line_error(done, None)
    assert "No space left on device" in done.stderr
