"""`seqclf runs`: the table of runs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from seqclf.cli import options
from seqclf.cli.common import emit_json, reported, sub_app
from seqclf.cli.examples import examples
from seqclf.config.limits import check_path
from seqclf.console import Output
from seqclf.errors import SeqclfError

runs_app = sub_app("The table of runs.")


def _keys(text: str | None, option: str) -> list[str]:
    keys = [key.strip() for key in (text or "").split(",") if key.strip()]
    if text is not None and not keys:
        raise SeqclfError(f"{option}: give columns or config keys, e.g. model.cell,model.num_layers")
    return keys


@runs_app.command("runs", epilog=examples("runs"))
def runs_cmd(
    directory: Path = typer.Argument(Path("runs"), metavar="DIR", help="Folder of runs (also DIR/*/<run>)."),
    sort: Optional[str] = typer.Option(None, "--sort", metavar="COLUMN",
                                       help="Sort by a column or any config key (train.lr): accuracies best first, "
                                            "others ascending. Default: val_accuracy."),
    reverse: bool = typer.Option(False, "--reverse", metavar=options.FLAG, help="Reverse the order."),
    group_by: Optional[str] = typer.Option(None, "--group-by", metavar="KEY,KEY",
                                           help="One row per distinct value of these config keys (runs that differ "
                                                "only in seed): count, mean +- std."),
    columns_: Optional[str] = typer.Option(None, "--columns", metavar="COLUMN,COLUMN",
                                           help="The columns to show: any of the --json fields or config keys."),
    json_: bool = typer.Option(False, "--json", metavar=options.FLAG, help="Print a JSON array of rows on stdout."),
    csv_: bool = typer.Option(False, "--csv", metavar=options.FLAG,
                              help="Print CSV (a header line, then one line per row) on stdout."),
    names_only: bool = typer.Option(False, "--quiet", "-q", metavar=options.FLAG,
                                    help="Print only the run names (paths under DIR), one per line."),
) -> None:
    """List the runs under DIR: data, model, learning rate, seed, accuracies (validation first), time, status."""
    from seqclf.store import table as runs

    out = Output(json_mode=json_ or csv_ or names_only)
    with reported(out):
        if sum((json_, csv_, names_only)) > 1:
            raise SeqclfError("choose one of --json, --csv and --quiet")
        records = runs.list_runs(check_path("DIR", directory))
        keys = _keys(group_by, "--group-by")
        chosen = [runs.column_of(c, "--columns") for c in _keys(columns_, "--columns")]
        order = runs.column_of(sort or runs.DEFAULT_SORT, "--sort")
        if keys:
            rows, columns = runs.group_runs(records, keys), runs.group_columns(keys)
        else:
            rows, columns = runs.rows_of(records, [*chosen, order]), list(runs.FIELDS)
        rows = runs.sort_rows(rows, runs.FROM_CONFIG.get(order, order) if keys else order, reverse)
        columns = chosen or columns
    if names_only:
        sys.stdout.write("".join(f"{name}\n" for row in rows for name in row.get("runs", [row.get("name")])))
        return
    for row in rows:
        if row.get("differs"):
            out.warn(f"group {', '.join(str(row[k]) for k in keys)} mixes runs that also differ in "
                     f"{', '.join(row['differs'])}")
    if json_:
        emit_json([{c: row.get(c) for c in columns} for row in rows] if chosen else rows)
    elif csv_:
        sys.stdout.write(runs.to_csv(rows, columns))
    elif not rows:
        out.info(f"no runs under {directory}")
    else:
        headers, cells = runs.table(rows, columns, short_names=out.terminal)
        out.table(None, headers, cells, drop=[runs.header(c) for c in runs.DROP_ORDER if c in columns],
                  keep_whole=("name", "status"))
