"""Reproduction recipes: the shipped configs are valid, vars fill in, and --check compares correctly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from xdr import reproduce as rp
from xdr.errors import XdrError

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "xdr" / "configs"


@pytest.mark.parametrize("recipe", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_load_and_name_existing_expected_scores(recipe: Path) -> None:
    r = rp.load_recipe(recipe)
    expected = yaml.safe_load((recipe.parent / r.expected_scores).read_text())
    for c in r.checks:
        entry = rp._lookup(expected, c.expected, recipe)
        assert entry["source"], f"{c.expected} has no source"
        assert any(k != "source" for k in entry)
    steps = rp.commands(r, {"work": "/w"})
    assert all("{" not in arg for step in steps for arg in step)  # every var filled
    assert steps[-1][0] == "evaluate"


def _recipe(tmp_path: Path) -> Path:
    (tmp_path / "expected.yaml").write_text(
        "paper:\n  sys:\n    R@2kt: 44.20\n    R@5kt: 51.84\n    source: the paper, table 1\n"
    )
    recipe = {
        "name": "t", "description": "d", "vars": {"work": "runs/x", "out": "{work}/eval"},
        "steps": [["evaluate", "{work}/run", "--out", "{out}"]],
        "expected_scores": "expected.yaml",
        "checks": [{"report": "{out}/report.json", "expected": "paper.sys"}],
        "tolerance": 0.5,
    }
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_vars_refer_to_vars_and_overrides_win(tmp_path: Path) -> None:
    r = rp.load_recipe(_recipe(tmp_path))
    assert rp.commands(r) == [["evaluate", "runs/x/run", "--out", "runs/x/eval"]]
    assert rp.commands(r, {"work": "/s"}) == [["evaluate", "/s/run", "--out", "/s/eval"]]
    assert rp.run(r, {"work": "/s"}, dry_run=True) == [["evaluate", "/s/run", "--out", "/s/eval"]]


def test_check_passes_within_tolerance_and_fails_outside(tmp_path: Path) -> None:
    path = _recipe(tmp_path)
    report = tmp_path / "w" / "eval" / "report.json"
    with pytest.raises(XdrError, match="missing"):
        rp.check(path, {"work": str(tmp_path / "w")})
    report.parent.mkdir(parents=True)
    report.write_text(json.dumps({"macro": {"R@2kt": 44.5, "R@5kt": 51.0}}))
    rows, ok = rp.check(path, {"work": str(tmp_path / "w")})
    assert not ok
    by = {r["metric"]: r for r in rows}
    assert by["R@2kt"]["ok"] and by["R@2kt"]["delta"] == pytest.approx(0.3)
    assert not by["R@5kt"]["ok"] and by["R@5kt"]["delta"] == pytest.approx(-0.84)
    assert "the paper, table 1" in rp.check_markdown(rows, 0.5)
    report.write_text(json.dumps({"macro": {"R@2kt": 44.0, "R@5kt": 52.2}}))
    assert rp.check(path, {"work": str(tmp_path / "w")})[1]


def test_bad_recipes_are_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\n")
    with pytest.raises(XdrError, match="not a valid recipe"):
        rp.load_recipe(bad)
    r = rp.load_recipe(_recipe(tmp_path)).model_copy(update={"steps": [["x", "{nope}"]]})
    with pytest.raises(XdrError, match="nope"):
        rp.commands(r)


# --- bundled recipes: an installed xdr runs them by name ------------------------------------------------


def test_bundled_recipes_are_named_after_their_files() -> None:
    recipes = rp.bundled_recipes()
    assert [r.name for r in recipes] == sorted(p.stem for p in CONFIGS.glob("*.yaml"))
    assert {"xqg-mbert-xor", "xdr-mbert-xor", "swim-x-xor"} <= {r.name for r in recipes}
    assert rp.RECIPES == CONFIGS  # the package's own directory, not the checkout's working directory


def test_a_recipe_is_found_by_name_from_any_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    bundled = CONFIGS / "xqg-mbert-xor.yaml"
    assert rp.recipe_path("xqg-mbert-xor") == bundled
    assert rp.recipe_path("xqg-mbert-xor.yaml") == bundled
    assert rp.load_recipe("xqg-mbert-xor").name == "xqg-mbert-xor"
    with pytest.raises(XdrError, match=r"runs/x/eval/report.json: missing; run `xdr reproduce xqg-mbert-xor`"):
        rp.check("xqg-mbert-xor", {"work": "runs/x"})
    # a file the user names wins over a bundled recipe of the same name
    (tmp_path / "xqg-mbert-xor.yaml").write_text("name: mine\n")
    assert rp.recipe_path("xqg-mbert-xor.yaml") == Path("xqg-mbert-xor.yaml")
    # a path that does not exist is not silently replaced by the bundled recipe of its file name
    with pytest.raises(XdrError, match=r"configs/xqg-mbert-xor.yaml: no such recipe file.*bundled: .*xqg-mbert-xor"):
        rp.recipe_path("configs/xqg-mbert-xor.yaml")
    with pytest.raises(XdrError, match="nor a bundled recipe"):
        rp.load_recipe("no-such-recipe")


def test_cli_lists_and_dry_runs_bundled_recipes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from xdr.cli import app

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    listed = runner.invoke(app, ["reproduce", "--list"], terminal_width=200)
    assert listed.exit_code == 0, listed.output
    for r in rp.bundled_recipes():
        assert r.name in listed.output and r.description[:40] in listed.output
    dry = runner.invoke(app, ["reproduce", "xqg-mbert-xor", "--dry-run", "--var", "work=/w"])
    assert dry.exit_code == 0, dry.output
    assert "[1/11] xdr data get xor-enwiki --dest /w/data" in dry.output
    missing = runner.invoke(app, ["reproduce"])
    assert missing.exit_code == 2 and "--list" in missing.output
