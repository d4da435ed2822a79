"""A trained model, one call away: `Predictor.from_checkpoint(path).predict(["digit.png"])`.

The Predictor rebuilds the model from the checkpoint alone and feeds it exactly what training
and `seqclf eval` feed it: uint8 pixels -> the checkpoint's sequence view (with its stored
permutation) -> float / 255 -> its normalization, in batches of eval's size, under its precision.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from seqclf.config import Config, TrainConfig
from seqclf.data import pixels
from seqclf.data.images import ImageError, Inputs, read_inputs
from seqclf.data.truth import listed, read_truth
from seqclf.errors import SeqclfError
from seqclf.model.classifier import SequenceClassifier, load_weights
from seqclf.store import checkpoint
from seqclf.store.checkpoint import DataMeta
from seqclf.training.devices import autocast, resolve_device
from seqclf.training.scoring import EVAL_BATCH_SIZE, confusion_counts, summarize


class Predictor:
    """Classifies images with a trained model; build it with `Predictor.from_checkpoint(path)`."""

    def __init__(self, model: torch.nn.Module, cfg: Config, meta: DataMeta, device: torch.device,
                 source: str = "", precision: str | None = None) -> None:
        _check_choice("precision", precision, PRECISIONS)
        self.model, self.cfg, self.meta, self.device, self.source = model.eval(), cfg, meta, device, source
        self.class_names = list(meta.class_names)
        self.mean, self.std = meta.mean, meta.std
        self.permutation = meta.permutation  # (H*W,) int64 for permuted_pixels, else None
        self.height, self.width = meta.height, meta.width
        # eval's precision; fp16 autocast exists on CUDA only, so elsewhere the model runs in fp32
        precision = precision or cfg.train.precision
        if precision == "fp16" and device.type != "cuda":
            precision = "fp32"
        self._train = dataclasses.replace(cfg.train, precision=precision)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | None = None, precision: str | None = None) -> Predictor:
        """Load best.pt or last.pt of a run.

        `device`: cpu, cuda[:N], mps or auto; by default the checkpoint's train.device as eval uses
        it, or the CPU where that device is missing. `precision`: fp32, bf16 or fp16 (autocast), by
        default the checkpoint's train.precision, as eval uses it.
        """
        _check_choice("precision", precision, PRECISIONS)
        saved = checkpoint.read(path)
        try:
            where = resolve_device(device or saved.config.train.device)
        except SeqclfError:
            if device is not None:
                raise
            where = torch.device("cpu")  # trained on a GPU this machine lacks
        meta = saved.data
        model = SequenceClassifier(saved.config.model, meta.input_size, meta.num_classes).to(where)
        load_weights(model, saved.model, str(path))
        if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            raise SeqclfError(f"{path}: its weights hold NaN or infinite values (a diverged run), so its "
                              f"predictions would be meaningless; use an earlier checkpoint of the run (best.pt)")
        return cls(model, saved.config, meta, where, str(path), precision)

    @torch.no_grad()
    def logits(self, images: np.ndarray | torch.Tensor, batch_size: int = EVAL_BATCH_SIZE) -> torch.Tensor:
        """(N, H, W) uint8 pixels -> (N, num_classes) float32 logits on the CPU."""
        return self._run(self.model, images, batch_size, "logits() and probabilities()")

    @torch.no_grad()
    def logits_by_step(self, images: np.ndarray | torch.Tensor, batch_size: int = EVAL_BATCH_SIZE) -> torch.Tensor:
        """(N, H, W) uint8 pixels -> (N, T, num_classes) float32 logits after each step read, on the CPU.

        [:, -1] is logits(); see SequenceClassifier.logits_by_step for what a step's logits mean.
        """
        return self._run(self.model.logits_by_step, images, batch_size, "logits_by_step()")

    def _run(self, forward: Any, images: np.ndarray | torch.Tensor, batch_size: int, caller: str) -> torch.Tensor:
        from seqclf.data.views import to_sequences

        _check_count("batch_size", batch_size)
        if isinstance(images, np.ndarray):
            images = np.ascontiguousarray(images)  # torch takes no negative strides (a flipped view)
        images = torch.as_tensor(images)
        if images.dim() != 3 or tuple(images.shape[1:]) != (self.height, self.width) or images.dtype != torch.uint8:
            raise ImageError(f"{caller} take an (N, {self.height}, {self.width}) uint8 array; got "
                             f"{tuple(images.shape)} {images.dtype} (use predict() for files and other images)")
        out = []
        for start in range(0, len(images), batch_size):
            # as load_data builds a split: view the bytes, move them, scale on the device
            x = to_sequences(images[start:start + batch_size], self.cfg.data.sequence, self.permutation)
            x = x.to(self.device).float().div_(255)  # (B, T, F)
            if self.cfg.data.normalize:
                x.sub_(self.mean).div_(self.std)
            with autocast(self._train, self.device):
                out.append(forward(x).float().cpu())  # (B, C) or (B, T, C)
        if out:
            return torch.cat(out)
        return torch.zeros(0, *(() if forward is self.model else (self.meta.seq_len,)), len(self.class_names))

    def probabilities(self, images: np.ndarray | torch.Tensor, batch_size: int = EVAL_BATCH_SIZE) -> np.ndarray:
        """(N, H, W) uint8 pixels, as in the dataset -> (N, num_classes) float32 probabilities."""
        return torch.softmax(self.logits(images, batch_size), dim=1).numpy()

    def predict(self, images: Any, top_k: int = 1, preprocess: bool = True,
                batch_size: int = EVAL_BATCH_SIZE) -> list[dict[str, Any]]:
        """A list of paths (files, folders, IDX, .npy), PIL images or arrays (or one of them) -> one record per image.

        Each record is {"input", "predicted_label", "predicted_class", "probability", "top_k":
        [{"predicted_label", "predicted_class", "probability"}, ...]} (and, deprecated, "label" and
        "class": the predicted ones again), as `seqclf predict --json` prints. Image files and PIL images get
        MNIST-style preprocessing unless `preprocess` is False; arrays are taken as dataset images.
        Raises ImageError naming every input that could not be used.
        """
        _check_count("top_k", top_k)
        _check_count("batch_size", batch_size)
        sources = list(images) if isinstance(images, (list, tuple)) else [images]  # one path, image or array
        inputs = read_inputs(sources, self.height, self.width, preprocess)
        if inputs.errors:
            raise ImageError("; ".join(f"{name}: {why}" for name, why in inputs.errors))
        return self.records(inputs, top_k, batch_size)

    def records(self, inputs: Inputs, top_k: int = 1, batch_size: int = EVAL_BATCH_SIZE) -> list[dict[str, Any]]:
        """The predictions for inputs already read (see images.read_inputs), in their order."""
        _check_count("batch_size", batch_size)
        self.check_top_k(top_k)
        probabilities = torch.softmax(self.logits(inputs.stacked(self.height, self.width), batch_size), dim=1)
        return self.guesses(inputs.names, probabilities, top_k)

    def check_top_k(self, top_k: Any) -> None:
        if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k:
            raise ImageError(f"--top-k {top_k}: give a number from 1 to {len(self.class_names)}")

    def guesses(self, names: list[str], probabilities: torch.Tensor, top_k: int = 1) -> list[dict[str, Any]]:
        """One record per name from (N, num_classes) probabilities: the K likeliest classes, best first.

        `label` and `class` repeat `predicted_label` and `predicted_class` (deprecated: the next release
        drops them; beside a file of true labels, "label" read like the truth).
        """
        self.check_top_k(top_k)
        values, labels = probabilities.topk(min(top_k, len(self.class_names)), dim=1)  # (N, k) each, best first
        records = []
        for name, row_p, row_l in zip(names, values.tolist(), labels.tolist()):
            guesses = [{"predicted_label": label, "predicted_class": self.class_names[label], "probability": p,
                        "label": label, "class": self.class_names[label]} for p, label in zip(row_p, row_l)]
            records.append({"input": name, **guesses[0], "top_k": guesses})
        return records


# train.precision's choices, from the schema
PRECISIONS = {f.name: f for f in dataclasses.fields(TrainConfig)}["precision"].metadata["choices"]


def _check_count(name: str, value: Any) -> None:
    """A positive whole number, or a SeqclfError naming the argument and the value."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise SeqclfError(f"{name}={value!r}: give a positive whole number (an int >= 1)")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value is not None and value not in choices:
        raise SeqclfError(f"{name}={value!r}: choose one of {', '.join(choices)} (or None: the checkpoint's)")


def predict_files(checkpoint: str | Path, sources: list[Any], top_k: int = 1, preprocess: bool = True,
                  batch_size: int = EVAL_BATCH_SIZE, device: str | None = None,
                  labels: str | Path | None = None) -> dict[str, Any]:
    """What `seqclf predict` prints: {"checkpoint", "predictions", "errors": [{"input", "error"}], "warnings"}.

    Bad inputs do not stop the good ones: they are listed under "errors". `labels`: a CSV of
    file,label or "folders" (seqclf.data.truth); each record then has "true_label", "true_class" and
    "correct", and "scores" holds eval's figures (accuracy, loss, n, per_class_accuracy,
    confusion_matrix) with "class_names" and "labels".
    """
    from seqclf.training.devices import configure_threads

    if batch_size < 1:
        raise ImageError(f"--batch-size {batch_size}: give a positive number of images per batch")
    predictor = Predictor.from_checkpoint(checkpoint, device)
    configure_threads(predictor.cfg.train.num_threads)  # as eval does
    inputs = read_inputs(sources, predictor.height, predictor.width, preprocess)
    names = predictor.class_names
    truth = None if labels is None else read_truth(labels, inputs.names, sources, names)
    images = inputs.stacked(predictor.height, predictor.width)  # (N, H, W) uint8
    predictor.check_top_k(top_k)
    logits = predictor.logits(images, batch_size)  # (N, C)
    records = predictor.guesses(inputs.names, torch.softmax(logits, dim=1), top_k)
    result = {"checkpoint": str(checkpoint), "predictions": records,
              "errors": [{"input": name, "error": why} for name, why in inputs.errors],
              "warnings": polarity_warnings(predictor, images, inputs.names, preprocess)}
    if truth is not None:
        y = torch.tensor(truth, dtype=torch.int64)  # (N,)
        confusion = confusion_counts(y, logits.argmax(1), len(names)).view(len(names), len(names))
        loss_sum = F.cross_entropy(logits, y, reduction="sum").double() if len(y) else torch.zeros(())
        result["scores"] = {"labels": str(labels), **summarize(loss_sum, confusion), "class_names": names}
        for record, label in zip(records, truth):
            record.update(true_label=label, true_class=names[label], correct=record["predicted_label"] == label)
    return result


def trained_background(meta: DataMeta, normalize: bool) -> float | None:
    """The training images' background (seqclf.data.pixels); for a checkpoint written before it was
    recorded, guessed from the normalization's mean (ink on black averages well under a half), else None."""
    if meta.pixels is not None:
        return meta.pixels["background"]
    if normalize and not 0.35 <= meta.mean <= 0.65:
        return 0.0 if meta.mean < 0.35 else 1.0
    return None


def polarity_warnings(predictor: Predictor, images: np.ndarray, names: list[str], preprocess: bool) -> list[str]:
    """A warning naming the inputs whose background is of the other shade than the training images' (bright
    paper where training had black): the model would see their negative."""
    trained = trained_background(predictor.meta, predictor.cfg.data.normalize)
    if trained is None or not len(images):
        return []
    own = pixels.shade(trained)
    other = "bright" if own == "dark" else "dark"
    odd = [name for name, found in zip(names, pixels.shades(torch.as_tensor(images))) if found == other]
    if not odd:
        return []
    fix = ("drop --no-preprocess (image files are then made light ink on dark, as the training images are) or "
           if not preprocess and own == "dark" else "")
    return [f"{len(odd)} of {len(names)} inputs have a {other} background ({listed(odd)}), but the images "
            f"{predictor.source} was trained on have a {own} one: the model reads them as their negative, so its "
            f"predictions for them are close to guesses. To fix: {fix}invert them (255 - pixel value)"]
