"""seqclf: train and compare RNN/LSTM/GRU classifiers that read images as sequences."""

from typing import Any

from seqclf.config import Config, load_config
from seqclf.errors import SeqclfError

__version__ = "0.1.0"
__all__ = ["Config", "Predictor", "SeqclfError", "load_config", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Predictor":  # imported on first use: it needs torch, which `import seqclf` does not load
        from seqclf.use.predict import Predictor

        return Predictor
    raise AttributeError(f"module 'seqclf' has no attribute {name!r}")
