"""`xdr reproduce`: run a paper's recipe, or check a finished one against its published figures."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from xdr.cli.options import out

app = typer.Typer()


@app.command(
    "reproduce",
    epilog="Example: xdr reproduce configs/xqg-mbert-xor.yaml --dry-run\n\n"
    "Example: xdr reproduce configs/xqg-mbert-xor.yaml --check --var work=/scratch/xqg",
)
def reproduce_cmd(
    recipe: Annotated[Path, typer.Argument(help="a recipe in configs/")],
    check: Annotated[bool, typer.Option("--check", help="compare finished reports with the expected scores")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the commands only")] = False,
    var: Annotated[list[str] | None, typer.Option(help="NAME=VALUE overriding a recipe var, repeatable")] = None,
) -> None:
    """Run a paper's reproduction recipe, or check a finished one against the published figures."""
    from xdr import reproduce

    overrides = reproduce.parse_overrides(var)
    if check:
        rows, ok = reproduce.check(recipe, overrides)
        out.print(reproduce.check_markdown(rows, reproduce.load_recipe(recipe).tolerance))
        if not ok:
            raise typer.Exit(1)
    else:
        reproduce.run(reproduce.load_recipe(recipe), overrides, dry_run=dry_run)
