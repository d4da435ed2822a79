"""Running trials of `seqclf tune`: the worker loop, one trial as an ordinary run, several workers.

A worker asks the study for trials until it has `--trials` finished (complete + pruned) ones,
counting running trials too so that workers on many machines stop together; each trial is
`seqclf.training.start.train` under `output.dir/<study>/trial-NNNN` with a callback that reports the
objective (validation accuracy or loss) to the pruner after every epoch, where the study can prune.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from typing import Any

from seqclf.config import ConfigError, apply_overrides, config_from_dict, to_dict
from seqclf.config.limits import UNUSED_DROPOUT
from seqclf.console import Output, as_yaml
from seqclf.errors import Interrupted, Pruned, SeqclfError, TrainingError
from seqclf.search.space import Distribution, dropout_note
from seqclf.search.storage import require_optuna
from seqclf.search.study import (
    PER_EPOCH,
    Settings,
    formatted,
    label,
    open_study,
    study_dir,
    trial_values,
)
from seqclf.search.workers import capped_jobs, dies_with, storage_failure
from seqclf.store.files import pid_alive

FAILURES_IN_A_ROW = 5  # a worker gives up after this many failed trials in a row (a broken space or data)
UNCLAIMED_AFTER = 60  # seconds: a running trial no worker has claimed by then is an orphan (see _fail_orphans)

# ---------------------------------------------------------------- the worker loop


def work(settings: Settings, out: Output, stop: Any, pruner: Any = None, noted: bool = False) -> None:
    """Run trials in this process until the study has `settings.trials` finished ones.

    `stop` (a signals.GracefulStop) is entered for the whole loop, so a signal between trials
    is seen too; the trial running at that moment is told FAIL and Interrupted propagates. `noted`: a
    worker of `--jobs J`, whose parent said what the space does (announce) once for all of them.
    """
    optuna = require_optuna()
    if noted:
        out.warned.add(UNUSED_DROPOUT)
    announce(settings, out)
    study = open_study(settings, pruner)
    states = optuna.trial.TrialState
    started, failures = time.monotonic(), 0
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with stop:
            while not stop.should_stop() and failures < FAILURES_IN_A_ROW:
                if settings.timeout is not None and time.monotonic() - started >= settings.timeout:
                    break
                _fail_orphans(study, states)
                if _claimed(study, states, None) >= settings.trials or _exhausted(study):
                    break
                trial = study.ask()
                if _claimed(study, states, trial.number) > settings.trials:  # another worker took the last one
                    trial.set_user_attr("surplus", True)
                    study.tell(trial, state=states.FAIL)
                    break
                failures = 0 if run_trial(study, trial, settings, out, stop) else failures + 1
    except Exception as exc:  # a database restarted or unreachable: one line, not its traceback
        lost = storage_failure(settings, exc)
        if lost is None:
            raise
        raise lost from None
    finally:
        for sig, handler in saved.items():  # train() re-enters `stop`; put back what was here before
            signal.signal(sig, handler)
    if stop.should_stop():
        name = signal.Signals(stop.signum).name
        raise Interrupted(f"{name}: the search stopped; run the same command again to continue the study",
                          stop.signum)
    if failures >= FAILURES_IN_A_ROW:
        raise TrainingError(f"{FAILURES_IN_A_ROW} trials in a row failed (see the messages above); the study "
                            f"stopped. Check the search space and the data")


def announce(settings: Settings, out: Output) -> None:
    """What the whole space does, said once before the first trial (each trial's own warning of it is
    then not shown again): dropout drawn with one layer."""
    note = dropout_note(settings.space, settings.base)
    if note:
        out.warn(note, once=UNUSED_DROPOUT)


def _claimed(study: Any, states: Any, upto: int | None) -> int:
    """Trials finished or running (numbered up to `upto`): what counts towards --trials."""
    counted = (states.COMPLETE, states.PRUNED, states.RUNNING)
    return sum(1 for t in study.get_trials(deepcopy=False, states=counted) if upto is None or t.number <= upto)


def _fail_orphans(study: Any, states: Any) -> None:
    """Tell FAIL the running trials whose worker process on this machine is gone (killed with
    SIGKILL, or a second Ctrl-C mid-write), and those that no worker claimed within UNCLAIMED_AFTER
    seconds (on any machine): they would count towards --trials forever."""
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(states.RUNNING,)):
        worker_host, _, pid = str(trial.user_attrs.get("worker", "")).rpartition(":")
        if "worker" not in trial.user_attrs:  # its worker lost the storage between ask() and saying who it is
            started = trial.datetime_start or datetime.datetime.now()
            if (datetime.datetime.now() - started).total_seconds() < UNCLAIMED_AFTER:
                continue
        elif worker_host != host or not pid.isdigit() or pid_alive(int(pid)):
            continue
        try:
            study.tell(trial.number, state=states.FAIL)
        except (ValueError, RuntimeError):  # another worker told it first
            pass


def _exhausted(study: Any) -> bool:
    is_exhausted = getattr(study.sampler, "is_exhausted", None)
    return bool(is_exhausted and is_exhausted(study))


def _params(study: Any, trial: Any, settings: Settings) -> dict[str, Any]:
    """The trial's values; a key whose distribution differs from the one the study's earlier trials
    drew it from (another kind, log scale or choices) ends the search with a SeqclfError."""
    params = {}
    for key, dist in settings.space.items():
        try:
            params[key] = _suggested(trial, dist)
        except ValueError as exc:  # Optuna's check_distribution_compatibility
            study.tell(trial, state=require_optuna().trial.TrialState.FAIL)
            before = next((t.distributions[key] for t in study.get_trials(deepcopy=False) if key in t.distributions),
                          None)
            raise SeqclfError(f"--study {settings.study}: {key} is now {dist.describe()}, but the study's earlier "
                              f"trials drew it from {before} ({exc}); to continue this study give {key} its "
                              f"earlier distribution, or start a new study with --study NAME") from None
    return params


def _suggested(trial: Any, dist: Distribution) -> Any:
    if dist.kind == "choice":
        return trial.suggest_categorical(dist.key, list(dist.choices))
    if dist.kind in ("int", "log_int"):
        return trial.suggest_int(dist.key, dist.low, dist.high, step=dist.step or 1, log=dist.log)
    return trial.suggest_float(dist.key, dist.low, dist.high, step=dist.step, log=dist.log)


def run_trial(study: Any, trial: Any, settings: Settings, out: Output, stop: Any) -> bool:
    """Train one trial as an ordinary run and tell the study how it ended; False when it failed."""
    optuna = require_optuna()
    from seqclf.training.start import train

    folder = study_dir(settings.base, settings.study)
    name = f"trial-{trial.number:04d}"
    if (folder / name).exists():  # a study of this name in another storage already used the number
        name += f"-{uuid.uuid4().hex[:6]}"
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")  # which machine and process ran it
    params = _params(study, trial, settings)
    trial.set_user_attr("run_dir", str(folder / name))
    out.info(f"[bold]trial {trial.number}[/]: " + ", ".join(f"{k}={as_yaml(v)}" for k, v in params.items()))

    history: list[dict[str, Any]] = []

    def report(row: dict[str, Any]) -> None:  # after every epoch: the pruner sees the objective's value
        history.append(row)
        if settings.prunable:  # Optuna cannot prune several objectives
            trial.report(row[PER_EPOCH[settings.objectives[0]]], row["epoch"])
            if trial.should_prune():
                raise Pruned(f"trial {trial.number} pruned after epoch {row['epoch']}")

    try:
        raw = apply_overrides(to_dict(settings.base), [*params.items(), ("output.dir", str(folder)),
                                                       ("output.name", name)])
        cfg = config_from_dict(raw, f"trial {trial.number}")
        summary = train(cfg, out=out, stop=stop, callbacks=[report],
                        summary_extra={"study": settings.study, "trial": trial.number})
    except Pruned as exc:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        out.info(str(exc))
        return True
    except Interrupted:  # a signal: last.pt is saved; the trial is failed, the loop ends (stop is set)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        out.warn(f"trial {trial.number} interrupted and recorded as failed; its run {folder / name} keeps last.pt")
        return True
    except (TrainingError, ConfigError) as exc:  # this trial's values: the next trial may do better
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        out.warn(f"trial {trial.number} failed: {exc}")
        return False
    except BaseException:  # bad data, a full disk, a second Ctrl-C, a lost storage: recorded, then reported
        with contextlib.suppress(Exception):  # the storage may be down: the next run tells it (_fail_orphans)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    values = trial_values(settings.objectives, summary, history)
    study.tell(trial, values)
    out.info(f"trial {trial.number}: " + ", ".join(f"{label(name)} {formatted(name, value)}"
                                                   for name, value in zip(settings.objectives, values)))
    return True


# ---------------------------------------------------------------- several worker processes


def spawn(settings: Settings, jobs: int, worker_args: list[str], out: Output) -> None:
    """Run `jobs` worker processes (`seqclf tune ... --worker`) on one study, sharing the cores.

    The study is created here first. Workers run in their own process group: this process
    forwards each SIGINT/SIGTERM to them once, waits for them, then raises Interrupted.
    """
    open_study(settings)
    announce(settings, out)  # here once: the workers are told not to
    jobs = capped_jobs(jobs, out)
    threads = settings.base.train.num_threads or max(1, (os.cpu_count() or 1) // jobs)
    command = [sys.executable, "-m", "seqclf", "tune", *worker_args, "--set", f"train.num_threads={threads}"]
    received: list[int] = []
    procs: list[subprocess.Popen] = []

    def forward(signum: int, frame: Any) -> None:
        received.append(signum)
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    saved = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for _ in range(jobs):
            procs.append(subprocess.Popen(command, stdout=out.console.file, start_new_session=True,
                                          preexec_fn=dies_with(os.getpid())))
        codes = [proc.wait() for proc in procs]
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    if received:
        raise Interrupted(f"{signal.Signals(received[0]).name}: the workers stopped; run the same command again "
                          f"to continue the study", received[0])
    failed = [code for code in codes if code != 0]
    if failed:  # exit 2 if any worker met bad input, else 1
        error = SeqclfError if 2 in failed else TrainingError
        raise error(f"{len(failed)} of {jobs} workers failed (exit {', '.join(map(str, failed))}); their messages "
                    f"are above")
