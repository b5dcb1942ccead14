"""`xdr data`: the dataset registry, benchmark preparation and format conversion."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Column, Table

from xdr.cli.options import FieldsOpt, LangOpt, out, parse_fields
from xdr.errors import XdrError
from xdr.langs import XQUAD_R_DEV_LANGS, parse_langs

app = typer.Typer(help="Datasets and converters.\n\nExample: xdr data list", no_args_is_help=True)


@app.command("list", epilog="Example: xdr data list")
def data_list() -> None:
    """Known datasets, their formats, where they come from and how many files have a checksum."""
    from xdr.data.registry import list_datasets

    table = Table(Column("name", no_wrap=True), "kind", "format", "source", "checked", "description")
    for d in list_datasets():
        checked = f"{d.verified}/{len(d.files)}" if d.files else "-"
        table.add_row(d.name, d.kind, d.format, d.source, checked, d.description)
    out.print(table)


@app.command(
    "get",
    epilog="Example (online): xdr data get xor-tydi-dev\n\n"
    "Example (offline): xdr data get xquad-r --from ../shared/data/xquad-r",
)
def data_get(
    name: Annotated[str, typer.Argument(help="a name from `xdr data list`")],
    from_path: Annotated[Path | None, typer.Option("--from", help="use this local copy instead")] = None,
    dest: Annotated[Path | None, typer.Option(help="target directory (default: the xdr cache)")] = None,
) -> None:
    """Download a dataset (checksum-verified) or register a local copy of it."""
    from xdr.data.registry import get

    out.print(f"{name}: {get(name, dest_dir=dest, from_path=from_path)}")


@app.command(
    "prepare",
    epilog="Example: xdr data prepare xquad-r --from ../shared/data/xquad-r --out runs/xquad-r/data",
)
def data_prepare(
    name: Annotated[str, typer.Argument(help="xquad-r")],
    from_path: Annotated[Path, typer.Option("--from", help="the dataset's directory")],
    out_dir: Annotated[Path, typer.Option("--out", help="writes corpus.parquet, queries.parquet, qrels.txt")],
    langs: Annotated[str, typer.Option(help="query languages")] = ",".join(XQUAD_R_DEV_LANGS),
    titles: Annotated[bool, typer.Option(help="keep article titles in the passage pool")] = False,
) -> None:
    """Turn a benchmark into xdr's corpus / queries / qrels files."""
    codes = parse_langs(langs)
    from xdr.data.prepare import prepare

    for path in prepare(name, from_path, out_dir, langs=codes, titles=titles):
        out.print(str(path))


@app.command(
    "convert",
    epilog="Example: xdr data convert psgs_w100.tsv corpus.parquet --kind corpus\n\n"
    "Example: xdr data convert topics.tsv queries.parquet --kind queries --lang te\n\n"
    "Example: xdr data convert irds:mr-tydi/ja/test corpus.parquet",
)
def data_convert(
    src: Annotated[Path, typer.Argument(help="any supported corpus or query file, or irds:<id>")],
    dst: Annotated[Path, typer.Argument(help=".parquet or .jsonl")],
    kind: Annotated[str, typer.Option(help="corpus or queries")] = "corpus",
    fmt: Annotated[str | None, typer.Option("--format", help="input format (default: detect)")] = None,
    fields: FieldsOpt = None,
    lang: LangOpt = None,
) -> None:
    """Convert a corpus or query file into xdr's Parquet/JSONL layout, validating every row."""
    from xdr.data import read_passages, read_queries, write_passages, write_queries

    columns = parse_fields(fields)
    if kind == "corpus":
        if lang is not None:
            raise XdrError("--lang is the language of queries; it goes with --kind queries")
        n = write_passages(dst, read_passages(src, format=fmt, fields=columns))
    elif kind == "queries":
        n = write_queries(dst, read_queries(src, format=fmt, fields=columns, lang=lang))
    else:
        raise XdrError(f"--kind must be corpus or queries, not {kind!r}")
    out.print(f"{dst}: {n} rows")
