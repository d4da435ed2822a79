"""`seqclf runs`: the table of runs; `seqclf runs rm`: remove runs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, List, Optional

import typer
from typer.core import TyperGroup

from seqclf.cli import options
from seqclf.cli.common import HELP_SETTINGS, emit_json, reported
from seqclf.cli.examples import examples
from seqclf.config.limits import check_path
from seqclf.console import Output
from seqclf.errors import SeqclfError


class _RunsGroup(TyperGroup):
    """`seqclf runs [DIR] [OPTIONS]` lists the runs, `seqclf runs [DIR] rm RUN...` removes some. click would read
    a subcommand's name as DIR, and the table's options may follow DIR (`seqclf runs runs/sweep --json`), as
    when `runs` was a plain command: the first argument naming a subcommand (not an option's value) starts it,
    what comes before is the table's (a folder of runs named `rm` is listed as `./rm`)."""

    allow_interspersed_args = True

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        valued = {name for param in self.get_params(ctx) if getattr(param, "is_flag", True) is False
                  for name in param.opts}  # the table's options that take a value (--sort COLUMN)
        at = next((i for i, arg in enumerate(args) if arg in self.commands and (i == 0 or args[i - 1] not in valued)),
                  None)
        if at is None or "--" in args[:at]:
            return super().parse_args(ctx, args)
        super().parse_args(ctx, args[:at])  # DIR and the table's options
        protected = "_protected_args" if hasattr(ctx, "_protected_args") else "protected_args"  # click 8.2 / 8.1
        if getattr(ctx, protected) or ctx.args:
            ctx.fail(f"unexpected argument {[*getattr(ctx, protected), *ctx.args][0]!r} before {args[at]}")
        setattr(ctx, protected, args[at:at + 1])
        ctx.args = args[at + 1:]
        return ctx.args


runs_app = typer.Typer(cls=_RunsGroup, no_args_is_help=False, rich_markup_mode=None, context_settings=HELP_SETTINGS)


def _keys(text: str | None, option: str) -> list[str]:
    keys = [key.strip() for key in (text or "").split(",") if key.strip()]
    if text is not None and not keys:
        raise SeqclfError(f"{option}: give columns or config keys, e.g. model.cell,model.num_layers")
    return keys


GROUP_BY = typer.Option(None, "--group-by", metavar="KEY,KEY", help="One row per distinct value of these config "
                        "keys (runs that differ only in seed): count, mean +- std.")
COLUMNS = typer.Option(None, "--columns", metavar="COLUMN,COLUMN",
                       help="The columns to show: any of the --json fields, the table's headers or config keys.")


@runs_app.callback(invoke_without_command=True, epilog=examples("runs"))
def runs_cmd(
    ctx: typer.Context,
    directory: Path = typer.Argument(Path("runs"), metavar="DIR", help="Folder of runs (also DIR/*/<run>)."),
    sort: Optional[str] = typer.Option(None, "--sort", metavar="COLUMN",
                                       help="Sort by a column or any config key (train.lr): accuracies best first, "
                                            "others ascending. Default: val_accuracy."),
    reverse: bool = typer.Option(False, "--reverse", metavar=options.FLAG, help="Reverse the order."),
    group_by: Optional[str] = GROUP_BY,
    columns_: Optional[str] = COLUMNS,
    json_: bool = typer.Option(False, "--json", metavar=options.FLAG, help="Print a JSON array of rows on stdout."),
    csv_: bool = typer.Option(False, "--csv", metavar=options.FLAG,
                              help="Print CSV (a header line, then one line per row) on stdout."),
    names_only: bool = typer.Option(False, "--quiet", "-q", metavar=options.FLAG,
                                    help="Print only the run names (paths under DIR), one per line."),
) -> None:
    """List the runs under DIR: model, data, learning rate, seed, accuracies (validation first), time, status.
    `seqclf runs rm RUN...` removes runs."""
    from seqclf.store import table as runs

    if ctx.invoked_subcommand is not None:
        return
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
        _show(out, rows, columns, whole_table=bool(chosen or keys))


def _show(out: Output, rows: list[dict[str, Any]], columns: list[str], whole_table: bool) -> None:
    """The table for a person. On a terminal (unless --columns or --group-by chose the columns) the model's
    columns follow the name, and those equal in every row are said once under the table."""
    from seqclf.store import table as runs

    same: list[str] = []
    if out.terminal and not whole_table:
        columns, same = runs.terminal_columns(rows, columns)
    headers, cells = runs.table(rows, columns)
    out.table(None, headers, cells, drop=[runs.header(c) for c in runs.DROP_ORDER if c in columns],
              keep_whole=("name", "status"), note=f"same in every run: {', '.join(same)}" if same else None)


@runs_app.command("rm", epilog=examples("runs rm"), short_help="Remove runs (--dry-run: say which, remove nothing).")
def rm_cmd(
    ctx: typer.Context,
    names: Optional[List[str]] = typer.Argument(None, metavar="RUN",
                                                help="Runs to remove: their names as seqclf runs lists them "
                                                     "(paths under DIR), or their paths."),
    directory: Optional[Path] = typer.Option(None, "--dir", metavar="DIR",
                                             help="The folder of runs, also given as `seqclf runs DIR rm`. "
                                                  "Default: runs."),
    status: Optional[str] = typer.Option(None, "--status", metavar="STATUS,STATUS",
                                         help="Only the runs with one of these statuses (failed, interrupted, "
                                              "damaged, ...): among RUN..., or all under DIR."),
    dry_run: bool = typer.Option(False, "--dry-run", "-n", metavar=options.FLAG,
                                 help="Print what would be removed; remove nothing."),
    json_: bool = options.JsonOption,
) -> None:
    """Remove runs: each run directory whole, never a run a process is training in. Exit 2, with nothing
    removed, when a name is not a run under DIR or a run is in use."""
    from seqclf.store import removal
    from seqclf.store.rundir import RunDir

    out = Output(json_mode=json_)
    removed: list[str] = []
    directory = directory or ctx.parent.params["directory"]  # `seqclf runs DIR rm RUN...`
    with reported(out):
        records = removal.chosen_runs(check_path("DIR", directory), names or [], _keys(status, "--status"))
        run_dirs = [RunDir(record.path) for record in records]
        if dry_run:
            for run_dir in run_dirs:
                removal.check_free(run_dir)
        for record, (_, left) in zip(records, [(d, None) for d in run_dirs] if dry_run
                                     else removal.remove_runs(run_dirs)):
            out.info(f"{'would remove' if dry_run else 'removed'} {record.row['name']} ({record.row['status']})")
            removed.append(record.row["name"])
            if left is not None:
                out.warn(f"some of its files could not be deleted: they are in {left} (no listing reads it); "
                         f"remove that folder by hand")
    if json_:
        emit_json({"removed": removed, "dry_run": dry_run})
    elif not records:
        out.info(f"no runs to remove under {directory}")
    elif dry_run:
        out.info(f"--dry-run: nothing removed; without it, {len(records)} run(s) would be removed")
