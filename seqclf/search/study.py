"""`seqclf tune`: hyperparameter search with Optuna, every trial an ordinary run.

Optuna is the engine (samplers, pruners, storages shared by processes and machines). This module
opens storages and studies and describes them (--show, --json, plot --study); seqclf.search.trials runs
the trials. The objectives (OBJECTIVES) are measured on the validation split or the run itself: the test
split never chooses. One objective gives a best trial; several give a Pareto front.
Optuna is an optional extra (`pip install "seqclf[tune]"`), imported only when a study is opened.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqclf.config import Config
from seqclf.config.limits import folder_name_problem
from seqclf.errors import SeqclfError
from seqclf.search.space import Distribution
from seqclf.search.storage import open_storage, require_optuna

SAMPLERS = ("tpe", "nsga2", "random", "grid")
PRUNERS = ("median", "hyperband", "none")
# objective -> (direction, its label in tables and messages); trial_values says where each comes from
OBJECTIVES = {
    "accuracy": ("maximize", "val accuracy"),  # the best validation accuracy (the epoch best.pt keeps)
    "loss": ("minimize", "val loss"),  # the lowest validation loss of any epoch
    "seconds": ("minimize", "seconds"),  # training seconds (summary.json's seconds)
    "parameters": ("minimize", "parameters"),  # the model's parameter count
}
PER_EPOCH = {"accuracy": "val_accuracy", "loss": "val_loss"}  # what a pruner can judge after each epoch
# complete trials under which importances are shown as rough: a handful of points says little about 6-8 keys
TELLING_IMPORTANCES = 10


@dataclass(frozen=True)
class Settings:
    base: Config  # the config every trial starts from (--config and --set)
    space: dict[str, Distribution]
    study: str = "tune"
    storage: str | None = None  # an Optuna URL; None: the journal file in output.dir/<study>/
    trials: int = 20  # finished (complete + pruned) trials the study should have
    timeout: float | None = None  # seconds after which this process starts no new trial
    sampler: str = "tpe"
    pruner: str | None = None  # None: median where pruning is possible (see `prunable`), else none
    objectives: tuple[str, ...] = ("accuracy",)

    @property
    def prunable(self) -> bool:
        """Optuna prunes only single-objective studies, on a value reported after every epoch."""
        return len(self.objectives) == 1 and self.objectives[0] in PER_EPOCH

    @property
    def pruner_name(self) -> str:
        return self.pruner or ("median" if self.prunable else "none")


def parse_objectives(text: str) -> tuple[str, ...]:
    """`--objective accuracy,seconds` -> ("accuracy", "seconds"), checked."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in names if name not in OBJECTIVES]
    if not names or unknown:
        raise SeqclfError(f"--objective {text!r}: {'unknown ' + ', '.join(unknown) if unknown else 'empty'}; give "
                          f"one or more of {', '.join(OBJECTIVES)}, separated by commas")
    if len(set(names)) != len(names):
        raise SeqclfError(f"--objective {text!r}: each objective once")
    return names


def label(objective: str) -> str:
    """How tables and messages name an objective (the name itself for one this seqclf does not know)."""
    return OBJECTIVES[objective][1] if objective in OBJECTIVES else objective


def formatted(objective: str, value: float | None) -> str:
    """A value as a person reads it: accuracy and loss to 4 places, seconds to 0.01, parameters whole."""
    if value is None:
        return ""
    if objective == "parameters":
        return f"{value:,.0f}"
    return f"{value:.2f}" if objective == "seconds" else f"{value:.4f}"


def importance_caveat(complete: int) -> str:
    """" (rough: only 3 complete trials)" under TELLING_IMPORTANCES complete trials, else ""."""
    if complete >= TELLING_IMPORTANCES:
        return ""
    return f" (rough: only {complete} complete trial{'s' * (complete != 1)})"


def trial_values(objectives: tuple[str, ...], summary: dict[str, Any], history: list[dict[str, Any]]) -> list[float]:
    """A finished trial's value for each objective, from its summary.json and metrics rows."""
    found = {"accuracy": summary["val_accuracy"], "seconds": summary["seconds"],
             "parameters": summary["parameters"], "loss": min(row["val_loss"] for row in history)}
    return [float(found[name]) for name in objectives]


def study_dir(base: Config, study: str) -> Path:
    """output.dir/STUDY; a name that is not one plain folder name ('../x', 'a/b', '') is refused."""
    problem = folder_name_problem("--study", study)
    if problem:
        raise SeqclfError(problem)
    return Path(base.output.dir) / study


def open_study(settings: Settings, pruner: Any = None) -> Any:
    """Create the study, or load it when it exists: the same command run again continues it, with
    the same objectives (a study's directions cannot change)."""
    optuna = require_optuna()
    storage, _ = open_storage(settings.storage, study_dir(settings.base, settings.study), create=True)
    study = optuna.create_study(storage=storage, study_name=settings.study, load_if_exists=True,
                                directions=[OBJECTIVES[name][0] for name in settings.objectives],
                                sampler=_sampler(settings), pruner=pruner if pruner is not None else _pruner(settings))
    directions = [direction.name.lower() for direction in study.directions]
    if ("objectives" not in study.user_attrs and not study.get_trials(deepcopy=False)
            and directions == [OBJECTIVES[name][0] for name in settings.objectives]):  # a new study
        study.set_user_attr("objectives", list(settings.objectives))
    held = objectives_of(study)
    if tuple(held) != settings.objectives:
        raise SeqclfError(f"--study {settings.study} optimizes {','.join(held)}; continue it with --objective "
                          f"{','.join(held)}, or start another --study for --objective {','.join(settings.objectives)}")
    return study


def objectives_of(study: Any) -> list[str]:
    """The objectives a study was created with (a study from before --objective: accuracy)."""
    named = study.user_attrs.get("objectives")
    if named:
        return list(named)
    return ["accuracy"] if len(study.directions) == 1 else [f"value{i}" for i in range(len(study.directions))]


def _sampler(settings: Settings) -> Any:
    optuna = require_optuna()
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler()
    if settings.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler()
    if settings.sampler == "grid":
        grid = {key: dist.grid() for key, dist in settings.space.items()}
        continuous = sorted(key for key, values in grid.items() if values is None)
        if continuous:
            raise SeqclfError(f"--sampler grid: {', '.join(continuous)} have no finite set of values; give them "
                              f"choice, int, or uniform with a step")

        class Grid(optuna.samplers.GridSampler):
            def after_trial(self, *args: Any) -> None:
                """GridSampler calls Study.stop here, which works only inside study.optimize(); the
                worker loop asks and tells, and ends itself when the grid is exhausted."""

        return Grid(grid)
    return optuna.samplers.TPESampler()


def _pruner(settings: Settings) -> Any:
    optuna = require_optuna()
    if settings.pruner_name == "median":  # compare with the median of earlier trials from epoch 2 on
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if settings.pruner_name == "hyperband":
        epochs = "auto" if "train.epochs" in settings.space else settings.base.train.epochs
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs, reduction_factor=3)
    return optuna.pruners.NopPruner()


def check_choices(settings: Settings) -> None:
    for flag, value, valid in (("--sampler", settings.sampler, SAMPLERS), ("--pruner", settings.pruner_name, PRUNERS)):
        if value not in valid:
            raise SeqclfError(f"{flag} {value!r}: choose one of {', '.join(valid)}")
    if settings.pruner_name != "none" and not settings.prunable:
        why = ("Optuna cannot prune a multi-objective study" if len(settings.objectives) > 1
               else f"{settings.objectives[0]} has no value after each epoch to judge")
        raise SeqclfError(f"--pruner {settings.pruner_name}: {why} (--objective {','.join(settings.objectives)}); "
                          f"leave --pruner out or give --pruner none")
    study_dir(settings.base, settings.study)  # the name is checked before any worker starts


# ---------------------------------------------------------------- what a study holds (--show, --json, plot)


def study_info(name: str, storage: str | None, base: Config) -> dict[str, Any]:
    """An existing study: what `seqclf tune --show --json` prints."""
    optuna = require_optuna()
    store, label = open_storage(storage, study_dir(base, name), create=False)
    try:
        study = optuna.load_study(study_name=name, storage=store)
    except KeyError:
        names = optuna.get_all_study_names(store)
        raise SeqclfError(f"--study {name}: no such study in {label}; it holds "
                          f"{', '.join(names) if names else 'no study'}") from None
    return describe(study, label)


def describe(study: Any, label: str) -> dict[str, Any]:
    """{"study", "storage", "objectives", "trials", "complete", "pruned", "failed", "best", "front", "importances"}.

    `values` (of a trial row, of a front entry) maps each objective to the trial's value. One objective:
    `best` is the best complete trial and a row's `value` its number; several: `best` and `value` are null
    and `front` (the Pareto-optimal complete trials; with one objective, those tied for best) chooses.
    """
    optuna = require_optuna()
    states = optuna.trial.TrialState
    names = objectives_of(study)
    single = len(names) == 1
    trials = study.get_trials(deepcopy=False)

    def values(t: Any) -> dict[str, float] | None:
        return None if t.values is None else dict(zip(names, t.values))

    rows = [{"number": t.number, "state": t.state.name.lower(), "value": t.values[0] if single and t.values else None,
             "values": values(t), "params": t.params, "run_dir": t.user_attrs.get("run_dir")} for t in trials]
    complete = [t for t in trials if t.state == states.COMPLETE]
    front = sorted(study.best_trials, key=lambda t: t.number) if complete else []
    best = front[0] if single and front else None
    return {"study": study.study_name, "storage": label, "objectives": names, "trials": rows,
            "complete": len(complete), "pruned": sum(t.state == states.PRUNED for t in trials),
            "failed": sum(t.state == states.FAIL for t in trials),
            "best": None if best is None else {"trial": best.number, "value": best.values[0], "params": best.params,
                                               "run_dir": best.user_attrs.get("run_dir")},
            "front": [{"trial": t.number, "values": values(t), "params": t.params,
                       "run_dir": t.user_attrs.get("run_dir")} for t in front],
            "importances": _importances(study, names, len(complete))}


def _importances(study: Any, names: list[str], complete: int) -> dict[str, Any] | None:
    """Optuna's importances of the parameters for the value (its default evaluator, PED-ANOVA in
    Optuna 5.0), summing to 1; with several objectives, one such mapping per objective; None with
    fewer than 2 complete trials."""
    if complete < 2:
        return None
    if len(names) == 1:
        return _importance(study, None)
    return {name: _importance(study, lambda t, i=i: t.values[i]) for i, name in enumerate(names)}


def _importance(study: Any, target: Any) -> dict[str, float] | None:
    optuna = require_optuna()
    try:
        with warnings.catch_warnings():  # "importances will be equal" on tiny studies: the numbers say so
            warnings.simplefilter("ignore")
            found = optuna.importance.get_param_importances(study, target=target)
        return {key: float(value) for key, value in found.items()}
    except (ValueError, RuntimeError, ZeroDivisionError):  # e.g. every complete trial had the same params
        return None
