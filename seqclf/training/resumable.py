"""What `train --resume` may continue: the policy, and a refusal type for each way it says no.

A run continues with the config it trained with (stored in last.pt): only the keys marked
`resume` in the schema may change, train.precision only as seqclf.training.devices allows,
train.epochs not under a per-batch schedule and never below the epochs trained. best.pt must be
there or be rebuilt (RunDir.repair_best). Each refusal is an exception type that builds its
message from its fields, naming the fix; nothing in the run directory is changed by one.
"""

from __future__ import annotations

from typing import Any

from seqclf.config import (
    Config,
    apply_overrides,
    config_from_dict,
    flatten,
    keys_where,
    load_config,
    parse_overrides,
    to_dict,
)
from seqclf.errors import SeqclfError, first_line
from seqclf.store.checkpoint import Checkpoint, CheckpointError
from seqclf.store.rundir import RunDir
from seqclf.training.devices import has_fp16, precision_change_allowed, resolve_device
from seqclf.training.failures import stopped_early
from seqclf.training.optim import PER_BATCH_SCHEDULERS
from seqclf.training.state import stalled


def _start_new(run_dir: RunDir, config: object = "FILE", changes: str = "") -> str:
    """The command that starts a new run from this one's best weights."""
    return f"seqclf train --config {config}{changes} --init-from {run_dir.best}"


class NotARun(SeqclfError):
    def __init__(self, run_dir: RunDir) -> None:
        super().__init__(f"--resume {run_dir}: not a run directory (it should hold config.yaml and last.pt); "
                         f"`seqclf runs` lists the runs")


class NothingToResume(SeqclfError):
    def __init__(self, run_dir: RunDir) -> None:
        path = run_dir.path
        config, when = run_dir.config_path, "before its first epoch ended (no last.pt)"
        if not config.exists():
            config, when = "CONFIG", "in set-up, before it wrote config.yaml (CONFIG: the config it was started with)"
        super().__init__(f"--resume {run_dir}: nothing to resume: it stopped {when}. It is restartable under its "
                         f"name, losing nothing: seqclf train --config {config} --set output.dir={path.parent} "
                         f"--set output.name={path.name}")


class ChangeRefused(SeqclfError):
    def __init__(self, run_dir: RunDir, refused: list[str], allowed: frozenset[str]) -> None:
        super().__init__(f"--resume: cannot change {', '.join(refused)}: it would change what the run computes. "
                         f"Only {', '.join(sorted(allowed))} may change; start a new run for the rest (its weights "
                         f"can start from this run's: {_start_new(run_dir)}).")


class ConfigEdited(SeqclfError):
    """config.yaml differs from the config in last.pt in a key that may not change on resume."""

    def __init__(self, run_dir: RunDir, stored: dict[str, Any], edited: dict[str, Any], refused: list[str],
                 allowed: frozenset[str]) -> None:
        shown = "; ".join(f"{key}: {stored.get(key)!r} in last.pt, {edited[key]!r} in the file" for key in refused)
        super().__init__(f"--resume {run_dir}: {run_dir.config_path} was edited ({shown}), but a run continues "
                         f"with the config it trained with (stored in last.pt); only {', '.join(sorted(allowed))} "
                         f"may change on resume. Undo the edit, or start a new run with it (its weights can start "
                         f"from this run's: {_start_new(run_dir)}).")


class PrecisionRefused(SeqclfError):
    """A train.precision change other than fp16 -> bf16/fp32 on a device without fp16: it would change
    what the run computes, so it is a new run (from this one's weights)."""

    def __init__(self, run_dir: RunDir, saved: str, new: str) -> None:
        super().__init__(f"--resume: cannot change train.precision from {saved} to {new}: it would change what "
                         f"the run computes. Only a run trained in fp16 may continue in bf16 or fp32, on a device "
                         f"without fp16 (not CUDA); start a new run for the rest: "
                         f"{_start_new(run_dir, run_dir.config_path, f' --set train.precision={new}')}")


class NoFp16Here(SeqclfError):
    """An fp16 run resumed where fp16 does not run (not CUDA): it may go on in fp32 or bf16."""

    def __init__(self, run_dir: RunDir, device_name: str, device: object) -> None:
        fix = f"seqclf train --resume {run_dir} --set train.precision=fp32"
        super().__init__(f"--resume {run_dir}: the run trained with train.precision=fp16, which runs on CUDA "
                         f"only, and train.device={device_name} is {device} here. Continue it in fp32 (or bf16; "
                         f"its fp16 loss scale is then dropped): {fix}")


def _train_longer(run_dir: RunDir, cfg: Config, epochs: int) -> str:
    """The new run that trains `epochs` epochs from this one's best weights (under another name, if it has one)."""
    rename = f" --set output.name={cfg.output.name}-more" if cfg.output.name else ""
    return _start_new(run_dir, run_dir.config_path, f" --set train.epochs={epochs}{rename}")


class EpochsFixedBySchedule(SeqclfError):
    def __init__(self, run_dir: RunDir, cfg: Config, planned: int) -> None:
        super().__init__(f"--resume: train.epochs cannot change with scheduler={cfg.train.scheduler}: its "
                         f"schedule spans exactly the planned {planned} epochs. To train longer, start a new run "
                         f"from this one's weights: {_train_longer(run_dir, cfg, cfg.train.epochs)}")


class FewerEpochs(SeqclfError):
    def __init__(self, epochs: int, trained: int) -> None:
        super().__init__(f"--resume: train.epochs={epochs} is fewer than the {trained} epochs already trained")


class BestLost(CheckpointError):
    def __init__(self, run_dir: RunDir, best_epoch: int, epoch: int) -> None:
        super().__init__(f"--resume {run_dir}: {run_dir.best} is missing or unreadable, so the weights of the "
                         f"best epoch ({best_epoch}) are lost and the run cannot finish as it would have (its "
                         f"test score comes from best.pt). last.pt (epoch {epoch}) is intact: score it with seqclf "
                         f"eval {run_dir.last}, or start a new run from its weights with --init-from "
                         f"{run_dir.last}. Nothing was changed.")


class StateDoesNotFit(CheckpointError):
    def __init__(self, saved: Checkpoint, exc: Exception) -> None:
        super().__init__(f"{saved.path}: its training state is incomplete or does not fit its config "
                         f"({type(exc).__name__}: {first_line(exc)})")


def read_resumable(run_dir: RunDir, overrides: list[str] | tuple[str, ...]) -> tuple[Config, Checkpoint]:
    """The run's config with the allowed `--set` changes, and its last.pt, both checked; the run is
    locked for this process from here on."""
    if not run_dir.exists():
        raise NotARun(run_dir)
    run_dir.lock()  # refuses while another process trains in it
    if run_dir.restartable():
        raise NothingToResume(run_dir)
    saved = run_dir.read_last()
    allowed = keys_where("resume")
    changes = [*_edited(run_dir, saved.config, allowed), *parse_overrides(overrides)]
    refused = sorted({key for key, _ in changes} - allowed - {"train.precision"})  # precision: _check_precision
    if refused:
        raise ChangeRefused(run_dir, refused, allowed)
    planned = saved.config.train.epochs
    cfg = config_from_dict(apply_overrides(to_dict(saved.config), changes), f"{run_dir.config_path} with --set")
    _check_precision(run_dir, saved.config.train.precision, cfg)
    if cfg.train.epochs != planned and cfg.train.scheduler in PER_BATCH_SCHEDULERS:
        raise EpochsFixedBySchedule(run_dir, cfg, planned)
    if cfg.train.epochs < saved.epoch:
        raise FewerEpochs(cfg.train.epochs, saved.epoch)
    if not run_dir.repair_best(saved):  # best.pt gives the test score at the end
        raise BestLost(run_dir, saved.state.get("best_epoch", 0) if saved.state else 0, saved.epoch)
    return cfg, saved


def nothing_to_train(run_dir: RunDir, cfg: Config, saved: Checkpoint) -> tuple[str, dict[str, Any]] | None:
    """(What to say, its summary) when the run has finished and `cfg` asks for no more epochs (all done, or
    train.patience still stops it): the resume then ends at once and changes no file; None when there is
    training (or the final scoring) left."""
    summary = run_dir.read_summary()
    if not isinstance(summary, dict) or summary.get("status") != "finished":
        return None
    done, more, best_epoch = saved.epoch, 2 * saved.epoch, (saved.state or {}).get("best_epoch", 0)
    if done < cfg.train.epochs and stalled(done, best_epoch, cfg.train.patience):
        return (f"{run_dir} {stopped_early(done, cfg.train, best_epoch)}; nothing to resume. To train on: seqclf "
                f"train --resume {run_dir} --set train.patience=0 (off, or a larger patience)", summary)
    if done < cfg.train.epochs:
        return None
    if cfg.train.scheduler in PER_BATCH_SCHEDULERS:
        how = (f"its scheduler={cfg.train.scheduler} spans exactly these epochs, so start a new run from its "
               f"weights: {_train_longer(run_dir, cfg, more)}")
    else:
        how = f"seqclf train --resume {run_dir} --set train.epochs={more} (any number above {done})"
    return f"{run_dir} has finished {done}/{cfg.train.epochs} epochs; nothing to resume. To train it longer: {how}", \
        summary


def _edited(run_dir: RunDir, trained: Config, allowed: frozenset[str]) -> list[tuple[str, Any]]:
    """config.yaml's edits to the config stored in last.pt (the run's truth), as (key, value) changes:
    keys that may change on resume are applied, any other edit is refused naming it. train.precision is
    applied too and checked by _check_precision: a resume that left fp16 wrote it into config.yaml before
    training, and the same command after a crash before the next last.pt finds it there."""
    stored, written = flatten(to_dict(trained)), flatten(to_dict(load_config(run_dir.config_path)))
    edited = {key: value for key, value in written.items() if stored.get(key) != value}
    refused = sorted(set(edited) - allowed - {"train.precision"})
    if refused:
        raise ConfigEdited(run_dir, stored, edited, refused, allowed)
    return sorted(edited.items())


def _check_precision(run_dir: RunDir, saved: str, cfg: Config) -> None:
    """train.precision stays on resume, except that a CUDA fp16 run may go on in bf16 or fp32 where the
    device has no fp16 (seqclf.training.devices.precision_change_allowed)."""
    new, device = cfg.train.precision, resolve_device(cfg.train.device)
    if not precision_change_allowed(saved, new, device.type):
        raise PrecisionRefused(run_dir, saved, new)
    if new == "fp16" and not has_fp16(device.type):
        raise NoFp16Here(run_dir, cfg.train.device, device)
