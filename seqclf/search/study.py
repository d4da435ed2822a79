"""`seqclf tune`: hyperparameter search with Optuna, every trial an ordinary run.

Optuna is the engine (samplers, pruners, storages shared by processes and machines). This module
opens storages and studies and describes them (--show, --json, plot --study); seqclf.search.trials runs
the trials. The objective is a trial's best validation accuracy: the test split never chooses.
Optuna is an optional extra (`pip install "seqclf[tune]"`), imported only when a study is opened.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqclf.config import Config
from seqclf.config.limits import folder_name_problem
from seqclf.errors import SeqclfError, first_line
from seqclf.search.space import Distribution

INSTALL = 'pip install "seqclf[tune]"'
JOURNAL = "journal.log"  # the default storage, in output.dir/<study>/
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "hyperband", "none")


@dataclass(frozen=True)
class Settings:
    base: Config  # the config every trial starts from (--config and --set)
    space: dict[str, Distribution]
    study: str = "tune"
    storage: str | None = None  # an Optuna URL; None: the journal file in output.dir/<study>/
    trials: int = 20  # finished (complete + pruned) trials the study should have
    timeout: float | None = None  # seconds after which this process starts no new trial
    sampler: str = "tpe"
    pruner: str = "median"


def require_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise SeqclfError(f"seqclf tune needs Optuna, an optional extra: {INSTALL} "
                          f"(or pip install optuna; add 'psycopg[binary]' for PostgreSQL storage)") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def study_dir(base: Config, study: str) -> Path:
    """output.dir/STUDY; a name that is not one plain folder name ('../x', 'a/b', '') is refused."""
    problem = folder_name_problem("--study", study)
    if problem:
        raise SeqclfError(problem)
    return Path(base.output.dir) / study


def without_password(url: str) -> str:
    """The storage URL without its password."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def open_storage(url: str | None, folder: Path, create: bool) -> tuple[Any, str]:
    """(Optuna storage, how to show it). The default is a journal file that processes share safely."""
    optuna = require_optuna()
    if url is None:
        path = folder / JOURNAL
        if not create and not path.exists():
            raise SeqclfError(f"no study at {path}: start one with seqclf tune --space SPACE.yaml, or give "
                              f"--storage URL (and --study NAME, --set output.dir=DIR) where it lives")
        folder.mkdir(parents=True, exist_ok=True)
        return _journal(path, folder), str(path)
    # sqlite: wait up to 60 s for another worker's write lock instead of failing "database is locked"
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs), without_password(url)
    except ImportError as exc:  # Optuna's message hides the module; SQLAlchemy's says which one
        raise SeqclfError(f"--storage {without_password(url)}: needs a database driver ({exc.__cause__ or exc}); for "
                          f'postgresql:// URLs: pip install "seqclf[tune]" (psycopg 3), or psycopg2-binary '
                          f"with postgresql+psycopg2:// URLs") from None
    except Exception as exc:  # sqlalchemy's many connection and URL errors
        first = first_line(exc)
        raise SeqclfError(f"--storage {without_password(url)}: cannot be opened ({first}); give an Optuna storage "
                          f"URL such as sqlite:///tune.db or postgresql://user:password@host/database") from None


def _journal(path: Path, folder: Path) -> Any:
    """The journal storage at `path`, replayed once; a damaged file (bytes overwritten, NUL bytes) is a SeqclfError."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    try:
        with open(path, "ab+") as handle:  # Optuna skips a last line without its newline, NUL bytes too
            handle.seek(0)
            if any(b"\0" in chunk for chunk in iter(lambda: handle.read(1 << 20), b"")):
                raise ValueError("NUL bytes in the file")
        storage = JournalStorage(JournalFileBackend(str(path)))  # replays the whole journal
        storage.get_all_studies()
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:  # JSONDecodeError: a ValueError
        raise SeqclfError(f"{path}: the study's journal is damaged ({type(exc).__name__}: {first_line(exc)[:120]}), "
                          f"so its trials cannot be read; move it aside to start the study afresh (the trials' runs "
                          f"stay in {folder}), or use another --study NAME") from None
    return storage


def open_study(settings: Settings, pruner: Any = None) -> Any:
    """Create the study, or load it when it exists: the same command run again continues it."""
    optuna = require_optuna()
    storage, _ = open_storage(settings.storage, study_dir(settings.base, settings.study), create=True)
    return optuna.create_study(storage=storage, study_name=settings.study, direction="maximize",
                               load_if_exists=True, sampler=_sampler(settings),
                               pruner=pruner if pruner is not None else _pruner(settings))


def _sampler(settings: Settings) -> Any:
    optuna = require_optuna()
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler()
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
    if settings.pruner == "median":  # compare with the median of earlier trials from epoch 2 on
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if settings.pruner == "hyperband":
        epochs = "auto" if "train.epochs" in settings.space else settings.base.train.epochs
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs, reduction_factor=3)
    return optuna.pruners.NopPruner()


def check_choices(settings: Settings) -> None:
    for flag, value, valid in (("--sampler", settings.sampler, SAMPLERS), ("--pruner", settings.pruner, PRUNERS)):
        if value not in valid:
            raise SeqclfError(f"{flag} {value!r}: choose one of {', '.join(valid)}")
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
    """{"study", "storage", "trials", "complete", "pruned", "failed", "best", "importances"}."""
    optuna = require_optuna()
    states = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    rows = [{"number": t.number, "state": t.state.name.lower(), "value": t.value, "params": t.params,
             "run_dir": t.user_attrs.get("run_dir")} for t in trials]
    complete = [t for t in trials if t.state == states.COMPLETE]
    best = max(complete, key=lambda t: t.value) if complete else None
    return {"study": study.study_name, "storage": label, "trials": rows, "complete": len(complete),
            "pruned": sum(t.state == states.PRUNED for t in trials),
            "failed": sum(t.state == states.FAIL for t in trials),
            "best": None if best is None else {"trial": best.number, "value": best.value, "params": best.params,
                                               "run_dir": best.user_attrs.get("run_dir")},
            "importances": _importances(study, len(complete))}


def _importances(study: Any, complete: int) -> dict[str, float] | None:
    """Optuna's importances of the parameters for the value (its default evaluator, PED-ANOVA in
    Optuna 5.0), summing to 1; None with fewer than 2 complete trials."""
    if complete < 2:
        return None
    optuna = require_optuna()
    try:
        with warnings.catch_warnings():  # "importances will be equal" on tiny studies: the numbers say so
            warnings.simplefilter("ignore")
            found = optuna.importance.get_param_importances(study)
        return {key: float(value) for key, value in found.items()}
    except (ValueError, RuntimeError, ZeroDivisionError):  # e.g. every complete trial had the same params
        return None
