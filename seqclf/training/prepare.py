"""The one set-up path: where a run computes and the data it computes on.

Training, resuming, evaluation and the benchmark all start here: pick the device (placed
per rank under torchrun), set the CPU threads, load the requested splits (normalized with
the training data's statistics, or with a checkpoint's), resolve `hidden_size: auto` from
the data's (T, F), and, given a checkpoint's DataMeta, check that the data fits its model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from seqclf.config import Config
from seqclf.data.datasets import SPLITS, Data, load_data
from seqclf.data.folders import FOLDER
from seqclf.data.idx import DataError
from seqclf.model.classifier import (
    MORE_MEMORY,
    SMALLER,
    check_fits,
    resolve_hidden_size,
)
from seqclf.store.checkpoint import DataMeta
from seqclf.store.rundir import RunDir
from seqclf.training import distributed
from seqclf.training.devices import configure, configure_threads, resolve_device


@dataclass
class Prepared:
    cfg: Config  # with hidden_size resolved
    device: torch.device
    data: Data
    threads: int


def prepare(cfg: Config, *, splits: tuple[str, ...] = SPLITS, meta: DataMeta | None = None,
            source: str | Path = "", dist: distributed.Context | None = None) -> Prepared:
    """Device, threads, data and the resolved config for `cfg`.

    With `meta` (a checkpoint's DataMeta, `source` its path) the data is normalized and permuted
    exactly as the checkpoint's training data was, and must fit its model.
    """
    dist = dist or distributed.Context()
    t = cfg.train
    device = dist.place(resolve_device(t.device, t.precision), t.device, t.dist_backend)
    configure(t)  # TF32 and determinism: before any CUDA work (cuBLAS reads its workspace setting once)
    threads = configure_threads(t.num_threads, share=dist.local_world_size)
    if meta is None:
        data = load_data(cfg.data, cfg.seed, device, splits=splits)
    else:
        data = load_data(cfg.data, cfg.seed, device, splits=splits, stats=(meta.mean, meta.std),
                         perm=meta.permutation)
        check_data_fits(data, meta, cfg.data.root, source)
        if cfg.data.name == FOLDER:
            check_same_classes(data, meta, cfg.data.root, source)
    num_classes = meta.num_classes if meta is not None else data.num_classes
    cfg = resolve_hidden_size(cfg, data.input_size, num_classes)
    check_fits(cfg.model, data.input_size, num_classes, SMALLER if meta is None else MORE_MEMORY)  # before a run dir
    return Prepared(cfg, device, data, threads)


def check_data_fits(data: Data, meta: DataMeta, root: str, source: str | Path) -> None:
    """The data found under `root` must have the shape the checkpoint's model was trained on."""
    trained = (meta.seq_len, meta.input_size)
    if (data.seq_len, data.input_size) != trained or data.num_classes > meta.num_classes:
        raise DataError(f"data.root {root}: its data ({data.seq_len} steps of {data.input_size} features, "
                        f"{data.num_classes} classes) does not fit {source}, trained on {trained[0]} steps of "
                        f"{trained[1]} features and {meta.num_classes} classes; point data.root at the "
                        f"dataset the run was trained on")


def check_same_classes(data: Data, meta: DataMeta, root: str, source: str | Path) -> None:
    """Image folders (data.name=folder) name their classes: the same count of other names would score
    each label as another class."""
    if data.class_names != list(meta.class_names):
        raise DataError(f"data.root {root}: its class folders ({', '.join(data.class_names)}) are not the classes "
                        f"{source} was trained on ({', '.join(meta.class_names)}); label i must mean the same "
                        f"class: point data.root at image folders of those classes")


def check_same_data(data: Data, meta: DataMeta, root: str, run_dir: RunDir) -> None:
    """A resumed run continues on the data it trained on: same split sizes, same file contents."""
    if meta.fingerprint is None or data.fingerprint is None:  # a checkpoint from before fingerprints
        return
    if data.fingerprint == meta.fingerprint:
        return

    def describe(fingerprint: dict) -> str:
        return (f"{fingerprint.get('train')} train / {fingerprint.get('val')} val / {fingerprint.get('test')} test "
                f"examples, digest {str(fingerprint.get('digest'))[:12]}")

    raise DataError(f"data.root {root}: its data ({describe(data.fingerprint)}) is not the data {run_dir} trained "
                    f"on ({describe(meta.fingerprint)}); a resumed run must continue on the same data, or its "
                    f"scores would mix two datasets, so nothing was changed. Point data.root at the run's data, or "
                    f"score its model on other data with: seqclf eval {run_dir.best} --set "
                    f"data.root={root}")
