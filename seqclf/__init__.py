"""seqclf: train and compare RNN/LSTM/GRU classifiers that read images as sequences."""

from seqclf.config import Config, load_config
from seqclf.errors import SeqclfError

__version__ = "0.1.0"
__all__ = ["Config", "SeqclfError", "load_config", "__version__"]
