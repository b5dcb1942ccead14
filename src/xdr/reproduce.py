"""Reproduction recipes: a YAML file of `xdr` commands plus the published scores they should reach.

Like Pyserini's reproduction pages, a recipe is runnable documentation: ``xdr reproduce RECIPE`` runs its
steps (each stage resumes, so a rerun after a failure continues where it stopped), and
``xdr reproduce RECIPE --check`` compares the finished evaluation reports with the expected scores,
each labelled with its source. The expected scores live in their own YAML file so several recipes
(mBERT, XLM-R, zero-shot) can point at one list of published figures.

The papers' recipes ship inside the package (``xdr/configs/``, with ``expected/``), so an installed xdr
runs them by name (``xdr reproduce xqg-mbert-xor``); any other recipe is given by its path.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from xdr.errors import XdrError


class Check(BaseModel):
    """One report compared with one entry of the expected-scores file."""

    model_config = ConfigDict(extra="forbid")
    report: str = Field(description="report.json written by `xdr evaluate`, may use {vars}")
    expected: str = Field(description="dotted key in the expected-scores file, e.g. mbert.xqg")


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str
    needs: dict[str, Any] = Field(default_factory=dict, description="disk, GPUs, hours: for the reader")
    vars: dict[str, str] = Field(default_factory=dict)
    steps: list[list[str]] = Field(description="xdr sub-command argument lists, in order")
    expected_scores: str = Field(description="YAML of published figures, relative to the recipe")
    checks: list[Check]
    tolerance: float = Field(default=0.5, description="allowed |delta| in points")


RECIPES = Path(__file__).with_name("configs")


def bundled_recipes() -> list[Recipe]:
    """The recipes shipped with xdr, sorted by name (each file is named after its recipe)."""
    return [load_recipe(p) for p in sorted(RECIPES.glob("*.yaml"))]


def recipe_path(recipe: str | Path) -> Path:
    """A recipe file: ``recipe`` itself when it is a file, else the bundled recipe of that name."""
    p = Path(recipe)
    if p.is_file():
        return p
    bundled = RECIPES / f"{p.name.removesuffix('.yaml')}.yaml"
    if p.name == str(recipe) and bundled.is_file():
        return bundled
    names = ", ".join(q.stem for q in sorted(RECIPES.glob("*.yaml")))
    raise XdrError(f"{recipe}: no such recipe file, nor a bundled recipe of that name (bundled: {names})")


def load_recipe(recipe: str | Path) -> Recipe:
    """Read a recipe, given as a file or as the name of a bundled one."""
    p = recipe_path(recipe)
    try:
        return Recipe(**yaml.safe_load(p.read_text(encoding="utf-8")))
    except (yaml.YAMLError, ValidationError, TypeError) as e:
        raise XdrError(f"{p}: not a valid recipe: {e}") from e


def _fill(text: str, values: dict[str, str]) -> str:
    try:
        return text.format(**values)
    except KeyError as e:
        raise XdrError(f"recipe uses {{{e.args[0]}}} but defines no such var") from e


def parse_overrides(pairs: list[str] | None) -> dict[str, str]:
    """``NAME=VALUE`` strings as a dict; one without ``=`` is refused rather than dropped."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        name, eq, value = pair.partition("=")
        if not eq or not name.strip():
            raise XdrError(f"--var {pair!r}: expected NAME=VALUE, e.g. work=/scratch/run")
        out[name.strip()] = value
    return out


def _values(recipe: Recipe, overrides: dict[str, str] | None) -> dict[str, str]:
    """The recipe's vars with ``overrides`` in their place, filled in (vars may refer to other vars once).
    An override of a var the recipe does not define is refused: it would silently change nothing."""
    unknown = sorted(set(overrides or {}) - set(recipe.vars))
    if unknown:
        raise XdrError(f"--var {unknown[0]}: the recipe has no such var; it has {', '.join(sorted(recipe.vars))}")
    values = {**recipe.vars, **(overrides or {})}
    return {k: _fill(v, values) for k, v in values.items()}


def commands(recipe: Recipe, overrides: dict[str, str] | None = None) -> list[list[str]]:
    """The steps with their {vars} filled in; ``overrides`` (e.g. work=/scratch/run) win over the recipe."""
    values = _values(recipe, overrides)
    return [[_fill(arg, values) for arg in step] for step in recipe.steps]


def run(recipe: Recipe, overrides: dict[str, str] | None = None, *, dry_run: bool = False) -> list[list[str]]:
    """Run every step through this Python's `xdr`; stops at the first failing step."""
    steps = commands(recipe, overrides)
    for i, argv in enumerate(steps, 1):
        print(f"[{i}/{len(steps)}] xdr {' '.join(argv)}", flush=True)
        if not dry_run:
            done = subprocess.run([sys.executable, "-m", "xdr", *argv], check=False)
            if done.returncode != 0:
                raise XdrError(f"step {i} failed (exit {done.returncode}); fix it and rerun to continue")
    return steps


def _lookup(tree: dict[str, Any], dotted: str, where: Path) -> dict[str, Any]:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise XdrError(f"{where}: has no expected scores under {dotted!r}")
        node = node[part]
    return node


def check(recipe: str | Path, overrides: dict[str, str] | None = None) -> tuple[list[dict[str, Any]], bool]:
    """Compare each finished report with its expected scores: rows of (metric, expected, got, delta, ok)."""
    path = recipe_path(recipe)
    loaded = load_recipe(path)
    expected_path = path.parent / loaded.expected_scores
    expected = yaml.safe_load(expected_path.read_text(encoding="utf-8"))
    values = _values(loaded, overrides)
    rows, ok = [], True
    for c in loaded.checks:
        report_path = Path(_fill(c.report, values))
        if not report_path.exists():
            raise XdrError(f"{report_path}: missing; run `xdr reproduce {recipe}` first")
        macro = json.loads(report_path.read_text(encoding="utf-8"))["macro"]
        entry = _lookup(expected, c.expected, expected_path)
        for metric, want in entry.items():
            if metric == "source":
                continue
            got = macro.get(metric)
            delta = None if got is None else got - float(want)
            good = delta is not None and abs(delta) <= loaded.tolerance
            ok &= good
            rows.append({"check": c.expected, "metric": metric, "expected": float(want), "got": got,
                         "delta": delta, "ok": good, "source": entry.get("source", "")})
    return rows, ok


def check_markdown(rows: list[dict[str, Any]], tolerance: float) -> str:
    lines = ["| run | metric | expected | got | delta | ok | source |", "|---|---|---:|---:|---:|---|---|"]
    for r in rows:
        got = "–" if r["got"] is None else f"{r['got']:.2f}"
        delta = "–" if r["delta"] is None else f"{r['delta']:+.2f}"
        lines.append(f"| {r['check']} | {r['metric']} | {r['expected']:.2f} | {got} | {delta} | "
                     f"{'yes' if r['ok'] else 'NO'} | {r['source']} |")
    return "\n".join(lines) + f"\n\nTolerance: ±{tolerance} points.\n"
