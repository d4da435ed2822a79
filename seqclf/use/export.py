"""`seqclf export`: a checkpoint as a self-contained ONNX or torch.export (.pt2) model.

The exported model takes raw images, float32 pixel values 0..255 of shape (N, H, W) with N
free, and returns `logits` and `probabilities` (N, num_classes): the checkpoint's sequence
view (as a gather of pixel indices made by data.to_sequences itself) and normalization are
inside, so ONNX deployment needs neither seqclf nor torch. It computes in float32.

Every file is checked before it is written: the reloaded model (onnxruntime, or
torch.export.load) must give Predictor.probabilities within TOLERANCE on a fixed batch, or
nothing is written.
"""

from __future__ import annotations

import dataclasses
import io
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from seqclf.errors import SeqclfError, first_line
from seqclf.use.predict import Predictor

FORMATS = ("onnx", "pt2")
TOLERANCE = 1e-4  # largest difference in any probability between the file and Predictor.probabilities
INSTALL = 'pip install "seqclf[export]"  (or: pip install onnx onnxruntime onnxscript)'
OPSET = 17


class Exportable(nn.Module):
    """pixels (N, H, W) float32 0..255 -> (logits, probabilities), each (N, C)."""

    def __init__(self, model: nn.Module, predictor: Predictor) -> None:
        from seqclf.data.views import to_sequences

        super().__init__()
        h, w = predictor.height, predictor.width
        # which pixel each step and feature reads: the view applied to an image of pixel numbers
        index = to_sequences(torch.arange(h * w).view(1, h, w), predictor.cfg.data.sequence, predictor.permutation)[0]
        self.register_buffer("index", index.reshape(-1).clone())  # (T*F,) int64
        self.steps, self.features = index.shape  # T, F
        self.frame = (h, w)
        self.normalize = predictor.cfg.data.normalize
        self.mean, self.std = predictor.mean, predictor.std
        self.model = model

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # one blank image more, dropped at the end: onnxruntime's recurrent operators abort on a batch of 0
        pixels = torch.cat([pixels, pixels.new_zeros(1, *self.frame)])  # (N+1, H, W)
        n = pixels.shape[0]
        x = pixels.reshape(n, self.steps * self.features).index_select(1, self.index)
        x = x.view(n, self.steps, self.features)  # (N+1, T, F)
        x = x / 255  # the same operations, in the same order, as Predictor.logits
        if self.normalize:
            x = (x - self.mean) / self.std
        logits = self.model(x)[:-1]  # (N, C)
        return logits, torch.softmax(logits, dim=1)


def exportable(predictor: Predictor, impl: str) -> Exportable:
    """The predictor's weights in a model built with `impl` (all impls share one parameter layout)."""
    from seqclf.model.classifier import SequenceClassifier

    cfg = dataclasses.replace(predictor.cfg.model, impl=impl)
    model = SequenceClassifier(cfg, predictor.model.rnn.input_size, len(predictor.class_names))
    model.load_state_dict(predictor.model.state_dict())
    return Exportable(model.eval(), predictor).eval()


def check_images(predictor: Predictor) -> np.ndarray:
    """A fixed batch the file is checked on: (34, H, W) uint8, random pixels plus a black and a white image."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(32, predictor.height, predictor.width), dtype=np.uint8)
    flat = np.stack([np.zeros_like(noise[0]), np.full_like(noise[0], 255)])
    return np.concatenate([noise, flat])


def export(checkpoint: str | Path, output: str | Path, format: str = "onnx") -> dict[str, Any]:
    """Write the checkpoint as `format` to `output` after checking it; returns what was checked."""
    from seqclf.store.files import atomic_write, output_file, probe_new_file

    if format not in FORMATS:
        raise SeqclfError(f"--format {format!r}: choose one of {', '.join(FORMATS)}")
    if format == "onnx":
        _require_onnx()
    output = Path(output)
    if output.is_dir():
        raise SeqclfError(f"-o {output} is a folder; give a file name such as {output / ('model.' + format)}")
    output_file(output, "-o")  # /dev/full, a FIFO: refused before any work
    if not output.parent.is_dir():
        raise SeqclfError(f"-o {output}: the folder {output.parent} does not exist")
    try:  # a folder that takes no new file (read-only, /sys): said now, not after the seconds of exporting
        probe_new_file(output.parent)
    except OSError as exc:
        raise SeqclfError(f"-o {output}: could not be written ({exc.strerror or exc}); nothing was exported. "
                          f"Choose another path with -o.") from None
    predictor = Predictor.from_checkpoint(checkpoint, "cpu", precision="fp32")
    images = check_images(predictor)
    expected = predictor.probabilities(images)  # (34, C)
    data, run = (_onnx if format == "onnx" else _pt2)(predictor)
    found = run(images.astype(np.float32))
    difference = float(np.abs(found - expected).max())
    if not difference <= TOLERANCE:
        raise SeqclfError(f"{checkpoint}: the exported {format} model differs from the checkpoint by up to "
                          f"{difference:.2g} in a probability (more than {TOLERANCE}); nothing was written")
    atomic_write(output, lambda handle: handle.write(data), fix="Choose another path with -o.")
    return {"checkpoint": str(checkpoint), "output": str(output), "format": format, "bytes": len(data),
            "input": ["N", predictor.height, predictor.width], "class_names": predictor.class_names,
            "max_difference": difference}


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise SeqclfError(f"--format onnx needs the optional extra `export` ({exc.name} is not installed): "
                          f"{INSTALL}") from None


def _onnx(predictor: Predictor) -> tuple[bytes, Callable[[np.ndarray], np.ndarray]]:
    """ONNX bytes and a function running them in onnxruntime.

    torch's TorchScript-based exporter turns the fused layers into ONNX's own RNN, GRU and LSTM
    operators; ONNX's LSTM has no projection, so proj_size models are exported step by step
    (the `scratch` equations, unrolled over the T steps).
    """
    import onnx
    import onnxruntime

    impl = "scratch" if predictor.cfg.model.proj_size else "fused"
    module = exportable(predictor, impl)
    buffer = io.BytesIO()
    example = torch.zeros(2, predictor.height, predictor.width)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about the exporter's deprecation and batch_first shapes
            torch.onnx.export(module, (example,), buffer, input_names=["pixels"],
                              output_names=["logits", "probabilities"], opset_version=OPSET, dynamo=False,
                              dynamic_axes={name: {0: "N"} for name in ("pixels", "logits", "probabilities")})
    except Exception as exc:  # the exporter raises many types for what it cannot express
        raise SeqclfError(f"this model cannot be exported to ONNX ({type(exc).__name__}: "
                          f"{first_line(exc)[:200]}); try --format pt2. Nothing was written") from None
    model = onnx.load_from_string(buffer.getvalue())
    meta = {"class_names": json.dumps(predictor.class_names), "config": json.dumps(_config(predictor)),
            "input": f"pixels: float32 (N, {predictor.height}, {predictor.width}), values 0..255",
            "producer": "seqclf", "checkpoint": predictor.source}
    onnx.helper.set_model_props(model, meta)
    data = model.SerializeToString()
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    return data, lambda pixels: session.run(["probabilities"], {"pixels": pixels})[0]


def _pt2(predictor: Predictor) -> tuple[bytes, Callable[[np.ndarray], np.ndarray]]:
    """torch.export bytes (class names and config in its extra file seqclf.json) and a function running
    the reloaded file."""
    module = exportable(predictor, "fused")
    example = torch.zeros(2, predictor.height, predictor.width)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fused layers' flat weight lists are re-assigned during tracing
            program = torch.export.export(module, (example,),
                                          dynamic_shapes={"pixels": {0: torch.export.Dim("N", min=0)}})
    except Exception as exc:
        raise SeqclfError(f"torch.export cannot express this model ({type(exc).__name__}: "
                          f"{first_line(exc)[:200]}); nothing was written") from None
    buffer = io.BytesIO()
    extra = {"seqclf.json": json.dumps({"class_names": predictor.class_names, "config": _config(predictor)})}
    torch.export.save(program, buffer, extra_files=extra)
    data = buffer.getvalue()
    reloaded = torch.export.load(io.BytesIO(data)).module()

    def run(pixels: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return reloaded(torch.from_numpy(pixels))[1].numpy()

    return data, run


def _config(predictor: Predictor) -> dict[str, Any]:
    from seqclf.config import to_dict

    return to_dict(predictor.cfg)
