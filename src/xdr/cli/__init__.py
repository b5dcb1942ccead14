"""The `xdr` command: one thin sub-command per pipeline stage.

Each command parses options, calls the stage's Python API and prints; the work lives in the stages so
that tests and notebooks use exactly what the CLI uses. One module per command group; command modules
import their stage inside the command function, so `xdr --help` stays fast (no torch).
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Annotated, NoReturn, TextIO

import typer
from pydantic import ValidationError

try:  # typer vendors click from 0.2x on; its exceptions live there
    from typer._click import exceptions as click_errors
except ImportError:
    from click import exceptions as click_errors
from rich.console import Console
from rich.markup import escape

from xdr.cli import (
    augment,
    bm25,
    compare,
    data,
    encode,
    evaluate,
    expand,
    generate,
    index,
    models,
    plan,
    reproduce,
    search,
    serve,
    train,
    tune,
)
from xdr.errors import XdrError, XdrWarning
from xdr.version import __version__

app = typer.Typer(
    help="Cross-lingual dense retrieval: encode, index, search and evaluate.\n\n"
    "Example: xdr encode corpus.jsonl --model me5-small --out emb && xdr index emb --out idx",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"xdr {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True, help="Print xdr's version and exit.")] = False,
) -> None:
    """Options of `xdr` itself, before any command."""


# Stage commands first, in pipeline order (the order `xdr --help` lists them), then the groups.
for stage in (encode, train, augment, index, bm25, expand, search, evaluate, compare, tune, reproduce, plan, serve):
    app.add_typer(stage.app)
app.add_typer(models.app, name="models")
app.add_typer(data.app, name="data")
app.add_typer(generate.app, name="generate")

err = Console(stderr=True)


_default_showwarning = warnings.showwarning


def _show_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """xdr's own warnings as one line on stderr; other libraries' keep their usual form."""
    if issubclass(category, XdrWarning):
        err.print(f"[yellow]warning:[/yellow] {escape(str(message))}", highlight=False, soft_wrap=True)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


def _fail(message: str) -> NoReturn:
    """One line on stderr and exit status 2; the message is text, not markup (``xdr[offline]`` stays)."""
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(2)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit status 2."""
    # xdr shows its own progress; weight-loading bars are noise. Set before any Hugging Face library is
    # imported (they read it then), so a command that loads no model does not pay for importing one.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.showwarning = _show_warning
    try:
        code = app(standalone_mode=False)
    except click_errors.NoArgsIsHelpError:  # the help was printed; a bare group is not an error
        sys.exit(0)
    except click_errors.UsageError as e:  # a bad option value, a missing argument, an unknown option
        _fail(f"{e.format_message()} (see {e.ctx.command_path if e.ctx is not None else 'xdr'} --help)")
    except typer.Abort:
        sys.exit(130)
    except OSError as e:  # disk full, a read-only --out, a path that is a file: the OS names the file
        _fail(f"{e.filename}: {e.strerror or e}" if e.filename else str(e.strerror or e))
    except XdrError as e:
        _fail(str(e))
    except ValidationError as e:  # a settings object (FusionSettings, a trainer config) refused a value
        problems = "; ".join(".".join(map(str, x["loc"])) + f": {x['msg']}" for x in e.errors())
        _fail(f"invalid {e.title} ({problems})")
    except KeyboardInterrupt:
        err.print("interrupted: completed shards are kept; run the same command again to resume")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)  # as click's standalone mode does
