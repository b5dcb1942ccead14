"""`xdr tune`: choose α, β, n and the expansion weight on a labelled dev set, cross-validated."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from xdr.cli.options import DeviceOpt, FieldsOpt, LangOpt, in_range, out, parse_fields

app = typer.Typer()


def _floats(csv: str, what: str) -> tuple[float, ...]:
    from xdr.errors import XdrError

    try:
        return tuple(float(x) for x in csv.split(",") if x.strip())
    except ValueError:
        raise XdrError(f"{what}: expected comma-separated numbers, not {csv!r}") from None


def config_values(ctx: typer.Context, config: Path | None, section: str, names: dict[str, Any]) -> dict[str, Any]:
    """``names`` (option values by name) with the values of ``xdr tune``'s file in place of those the user
    left at their defaults: an option given on the command line wins over the file."""
    if config is None:
        return names
    from xdr.tune import load_tuned

    tuned = load_tuned(config, section)
    return {name: tuned[name] if name in tuned and ctx.get_parameter_source(name).name == "DEFAULT" else value
            for name, value in names.items()}


@app.command(
    "tune",
    epilog="Example: xdr tune --passages runs/emb --generated runs/gen-emb --queries dev.jsonl --qrels dev.qrels "
    "--expansions runs/exp --folds 5 --out runs/tune && xdr augment runs/emb runs/gen --config runs/tune/tuned.yaml "
    "--out runs/aug",
)
def tune_cmd(
    passages: Annotated[Path, typer.Option(help="passage embeddings (`xdr encode`)")],
    generated: Annotated[Path, typer.Option(help="generated-query embeddings (`xdr encode --kind generated`)")],
    queries: Annotated[Path, typer.Option(help="dev queries (encoded here with the passages' model)")],
    qrels: Annotated[Path, typer.Option(help="dev qrels (TREC, BEIR or irds:<id>)")],
    out_dir: Annotated[Path, typer.Option("--out", help="writes tuned.yaml, report.json, tune.png")],
    expansions: Annotated[Path | None, typer.Option(help="an `xdr expand` directory of the dev queries")] = None,
    strategy: Annotated[str | None, typer.Option(help="the expansions' strategy, when it holds several")] = None,
    folds: Annotated[int, typer.Option(callback=in_range(2), help="cross-validation folds over queries")] = 5,
    metric: Annotated[str, typer.Option(help="mrr@10 or r@1")] = "mrr@10",
    alphas: Annotated[str, typer.Option(help="α grid")] = "0,0.1,0.2,0.3,0.4,0.5",
    betas: Annotated[str, typer.Option(help="β grid")] = "0,0.25,0.5,0.75,1",
    ns: Annotated[str, typer.Option(help="generated queries per passage and language")] = "1,2,4,8",
    weights: Annotated[str | None, typer.Option(help="expansion-weight grid (default 0,0.2,0.4,0.6 with "
                                                     "--expansions, else 0)")] = None,
    seed: Annotated[int, typer.Option(help="fold assignment seed")] = 0,
    device: DeviceOpt = None,
    fields: FieldsOpt = None,
    lang: LangOpt = None,
) -> None:
    """Grid search over cached vectors with k-fold cross-validation; reports the held-out gain."""
    from xdr.cli.options import parse_ints
    from xdr.data import read_qrels, read_queries
    from xdr.tune import Grid, tune, tune_data_from_files, write_tune

    grid = Grid(alpha=_floats(alphas, "--alphas"), beta=_floats(betas, "--betas"), n=tuple(parse_ints(ns, "--ns")),
                expansion_weight=_floats(weights or ("0,0.2,0.4,0.6" if expansions else "0"), "--weights"))
    qs = list(read_queries(queries, fields=parse_fields(fields), lang=lang))
    data = tune_data_from_files(passages, generated, qs, read_qrels(qrels), expansions=expansions, strategy=strategy,
                                device=device)
    result = tune(data, grid, folds=folds, metric=metric, seed=seed)
    path = write_tune(result, out_dir)
    h = result["held_out"]
    for f in result["per_fold"]:
        out.print(f"fold {f['fold']}: chose {f['chosen']}  held-out {f['held_out']:.4f} "
                  f"(default {f['default_held_out']:.4f})")
    out.print(f"{metric} held out: tuned {h['tuned']:.4f} vs default {h['default']:.4f} ({h['gain']:+.4f}); "
              f"chosen on all queries: {result['chosen']}")
    out.print(f"settings: {path / 'tuned.yaml'}")
