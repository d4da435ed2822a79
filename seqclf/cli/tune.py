"""`seqclf tune`: the command line of seqclf.search (a command group that seqclf.cli.app adds; parse, call,
render)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, List, Optional

import typer

from seqclf.cli import options
from seqclf.cli.common import emit_json, reported, sub_app
from seqclf.cli.examples import examples
from seqclf.console import Output, as_yaml
from seqclf.errors import SeqclfError

tune_app = sub_app("Search hyperparameters with Optuna.")

StudyOption = typer.Option("tune", "--study", metavar="NAME",
                           help="Study name; trials go to output.dir/NAME/ (and the default storage).")
StorageOption = typer.Option(None, "--storage", metavar="URL",
                             help="Optuna storage URL (sqlite:///tune.db, postgresql://user:pw@host/db) "
                                  "[default: a journal file in output.dir/NAME/].")

ObjectiveOption = typer.Option("accuracy", "--objective", metavar="NAME[,NAME...]",
                               help="What to optimize: accuracy (max), loss, seconds, parameters (min); several "
                                    "make a multi-objective study with a Pareto front.")
PrunerOption = typer.Option(None, "--pruner", metavar="NAME", show_default=False,
                            help="median, hyperband or none, on the objective per epoch [default: median; none "
                                 "for several objectives, which cannot be pruned].")


@tune_app.command(epilog=examples("tune"))
def tune(
    config: Optional[Path] = options.OptionalConfigOption,
    space: Optional[Path] = typer.Option(None, "--space", metavar="SPACE.yaml",
                                         help="Search space: dotted keys to distributions (configs/space.yaml)."),
    set_: Optional[List[str]] = options.SetOption,
    trials: int = typer.Option(20, "--trials", min=1, metavar="N",
                               help="Finished (complete + pruned) trials the study should have; run again "
                                    "to continue."),
    timeout: Optional[float] = typer.Option(None, "--timeout", min=0, metavar="SECONDS",
                                            help="Start no new trial after this long."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, metavar="J",
                             help="Worker processes on this machine, each with its share of the cores."),
    study: str = StudyOption,
    storage: Optional[str] = StorageOption,
    objective: str = ObjectiveOption,
    sampler: str = typer.Option("tpe", "--sampler", metavar="NAME", help="tpe, nsga2, random or grid."),
    pruner: Optional[str] = PrunerOption,
    show: bool = typer.Option(False, "--show", metavar=options.FLAG,
                              help="Show an existing study: trials, best or front, importances."),
    json_: bool = options.JsonOption,
    worker: bool = typer.Option(False, "--worker", hidden=True),  # one of --jobs J processes
    quiet: bool = options.QuietOption,
) -> None:
    """Search hyperparameters with Optuna: every trial is an ordinary run under output.dir/STUDY/.

    Needs Optuna: pip install "seqclf[tune]".
    """
    from seqclf.config import load_config
    from seqclf.search import study as tuning
    from seqclf.search import trials as running
    from seqclf.search.space import load_space
    from seqclf.search.storage import require_optuna
    from seqclf.training.signals import GracefulStop

    out = Output(json_mode=json_, quiet=quiet)
    with reported(out):
        base = load_config(config, set_ or [])
        if show:
            info = tuning.study_info(study, storage, base)
        else:
            if space is None:
                raise SeqclfError("seqclf tune needs --space SPACE.yaml (configs/space.yaml is an example), "
                                  "or --show to look at a study")
            require_optuna()
            settings = tuning.Settings(base, load_space(space, base), study, storage, trials, timeout, sampler,
                                       pruner, tuning.parse_objectives(objective))
            tuning.check_choices(settings)
            if jobs > 1 and not worker:
                running.spawn(settings, jobs, _worker_args(config, space, set_ or [], settings, quiet), out)
            else:
                running.work(settings, out, GracefulStop(), noted=worker)
            if worker:
                return
            info = tuning.study_info(study, storage, base)
    if json_:
        emit_json(info)
    else:
        render(info, out, trials_table=show)


def _worker_args(config: Path | None, space: Path, overrides: list[str], settings: Any, quiet: bool) -> list[str]:
    """The command line of one of `--jobs J` worker processes: this command's own, with --worker."""
    s = settings
    return [*(["--config", str(config)] if config else []), "--space", str(space),
            *[part for item in overrides for part in ("--set", item)], "--trials", str(s.trials),
            *(["--timeout", str(s.timeout)] if s.timeout is not None else []), "--study", s.study,
            *(["--storage", s.storage] if s.storage else []), "--sampler", s.sampler,
            *(["--pruner", s.pruner] if s.pruner else []), "--objective", ",".join(s.objectives),
            "--worker", *(["--quiet"] if quiet else [])]


def render(info: dict[str, Any], out: Output, trials_table: bool) -> None:
    """The study as a person reads it: each trial's run (named within the folder said above the table) with
    its parameters below it, as YAML writes them, so that the table fits the width, piped too (80 columns,
    or COLUMNS); long lines wrap at spaces."""
    from seqclf.search.study import formatted, importance_caveat, label

    names = info["objectives"]
    whole = ("trial", "status", *map(label, names))
    folders = {os.path.dirname(t["run_dir"]) for t in info["trials"] if t["run_dir"]}
    folder = os.path.commonpath(folders) if folders and len({os.path.isabs(f) for f in folders}) == 1 else ""
    best = info["best"]

    def scores(values: dict[str, float] | None) -> list[str]:
        return [formatted(name, (values or {}).get(name)) for name in names]

    def params(values: dict[str, Any]) -> str:
        return " ".join(f"{k}={as_yaml(v)}" for k, v in values.items())

    def run_and_params(trial: dict[str, Any]) -> str:
        run = os.path.relpath(trial["run_dir"], folder) if trial["run_dir"] and folder else trial["run_dir"]
        return "\n".join(part for part in (run, params(trial["params"])) if part)

    if folder and (trials_table or (best is None and info["front"])):  # the tables name runs within it
        out.info(f"runs in {folder}{os.sep}", wrap=True)
    if trials_table:
        rows = [[str(t["number"]), t["state"], *scores(t["values"]), run_and_params(t)] for t in info["trials"]]
        out.table(None, [*whole, "run and params"], rows, keep_whole=whole, fit=True)
    out.info(f"study [bold]{info['study']}[/] ({info['storage']}): {info['complete']} complete, "
             f"{info['pruned']} pruned, {info['failed']} failed", wrap=True)
    if best is not None:
        out.info(f"best: trial {best['trial']}, {label(names[0])} [bold]{formatted(names[0], best['value'])}[/], "
                 f"{best['run_dir']}; {params(best['params'])}", wrap=True)
    elif info["front"]:
        out.info(f"Pareto front of {', '.join(map(label, names))}: {len(info['front'])} trials", wrap=True)
        out.table(None, ["trial", *map(label, names), "run and params"],
                  [[str(t["trial"]), *scores(t["values"]), run_and_params(t)] for t in info["front"]],
                  keep_whole=whole, fit=True)
    importances = info["importances"] or {}
    for name, found in (importances.items() if len(names) > 1 else [(None, importances)]):
        if found:
            out.info(f"importances{f' for {label(name)}' if name else ''}{importance_caveat(info['complete'])}: "
                     + ", ".join(f"{k} {v:.2f}" for k, v in found.items()), wrap=True)
