"""`xdr reproduce`: run a paper's recipe, or check a finished one against its published figures."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from xdr.cli.options import out

app = typer.Typer()


@app.command(
    "reproduce",
    epilog="Example: xdr reproduce --list\n\n"
    "Example: xdr reproduce xqg-mbert-xor --dry-run\n\n"
    "Example: xdr reproduce xqg-mbert-xor --check --var work=/scratch/xqg\n\n"
    "Example: xdr reproduce my-recipe.yaml",
)
def reproduce_cmd(
    recipe: Annotated[str | None, typer.Argument(
        help="a bundled recipe's name (see --list) or a recipe file", show_default=False)] = None,
    check: Annotated[bool, typer.Option("--check", help="compare finished reports with the expected scores")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the commands only")] = False,
    var: Annotated[list[str] | None, typer.Option(help="NAME=VALUE overriding a recipe var, repeatable")] = None,
    list_: Annotated[bool, typer.Option("--list", help="list the bundled recipes and exit")] = False,
) -> None:
    """Run a paper's reproduction recipe, or check a finished one against the published figures."""
    from xdr import reproduce

    if list_:
        table = Table("name", "description")
        for r in reproduce.bundled_recipes():
            table.add_row(r.name, r.description)
        out.print(table)
        return
    if recipe is None:
        raise typer.BadParameter("give a recipe (a bundled name or a file), or --list", param_hint="RECIPE")
    overrides = reproduce.parse_overrides(var)
    if check:
        rows, ok = reproduce.check(recipe, overrides)
        out.print(reproduce.check_markdown(rows, reproduce.load_recipe(recipe).tolerance))
        if not ok:
            raise typer.Exit(1)
    else:
        reproduce.run(reproduce.load_recipe(recipe), overrides, dry_run=dry_run)
