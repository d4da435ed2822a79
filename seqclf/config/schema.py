"""The config schema: frozen dataclasses whose fields hold every key's type, default, choices,
help text and roles (what may change on resume or eval), and what is read off them.

config.py loads YAML and `--set` into these and validates them; everything else reads the
sections (`cfg.model`, `cfg.train`, ...). The README's config reference is generated here.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

AUTO = "auto"
MAX_THREADS = 4096  # torch.set_num_threads overflows past 2**31 - 1; no machine needs more than this


# What a key's value changes, as field metadata (one home for these key sets):
#   resume: `train --resume --set` may change it (it does not change what the run computes)
#   eval: `eval --set` may change it (where the data is and how to compute, never what is scored)
#   incidental: runs that differ only in it are the same experiment (`seqclf runs --group-by`)
ROLES = ("resume", "eval", "incidental")


def config_field(default: Any, help: str, choices: tuple[str, ...] | None = None, *,
                 roles: tuple[str, ...] = ()) -> Any:
    """A config field: its default, a one-line help text, for strings the valid choices, and its ROLES."""
    return field(default=default, metadata={"help": help, "choices": choices, "roles": roles})


WHERE = ("resume", "eval", "incidental")  # where the data is and where it runs: never what is computed


@dataclass(frozen=True)
class DataConfig:
    name: str = config_field(
        "mnist", "dataset: torchvision's MNIST-format sets, any folder of four IDX files, or image files in "
        "one folder per class (folder)", ("mnist", "fashion_mnist", "kmnist", "idx", "folder"))
    root: str = config_field(
        "data", "folder with torchvision's layout (ROOT/MNIST/raw), the four IDX files (plain or .gz), or for "
        "folder ROOT/train/<class>/* and ROOT/test/<class>/* images", roles=WHERE)
    download: bool = config_field(True, "download with torchvision when the files are not under root", roles=WHERE)
    val_size: int = config_field(
        5000, "examples held out of the training file for validation (seeded), before max_train")
    max_train: Union[int, None] = config_field(
        None, "train on at most this many of the remaining examples (null = all)")
    max_test: Union[int, None] = config_field(
        None, "score at most this many test examples (null = all)", roles=("eval",))
    normalize: bool = config_field(True, "standardize pixels with the training data's mean and std")
    sequence: str = config_field(
        "rows", "how an image becomes a sequence: 28 rows, 28 columns, 784 pixels, or permuted pixels",
        ("rows", "columns", "pixels", "permuted_pixels"))
    permutation_seed: int = config_field(0, "seed of the fixed pixel permutation for sequence=permuted_pixels")


@dataclass(frozen=True)
class ModelConfig:
    cell: str = config_field("lstm", "recurrent layer", ("rnn", "lstm", "gru"))
    impl: str = config_field(
        "fused", "fused torch layer, torch cells stepped by hand, or the equations from scratch",
        ("fused", "cell", "scratch"), roles=("eval",))
    hidden_size: Union[int, str] = config_field(
        128, "features in the hidden state h; `auto` picks the largest within param_budget")
    param_budget: Union[int, None] = config_field(
        None, "with hidden_size: auto, the most parameters the model may have")
    num_layers: int = config_field(1, "stacked recurrent layers")
    bidirectional: bool = config_field(False, "also read the sequence backwards; the head sees both final states")
    dropout: float = config_field(0.0, "dropout between recurrent layers, in [0, 1) (no effect with num_layers=1)")
    nonlinearity: str = config_field("tanh", "activation of a plain RNN (cell=rnn only)", ("tanh", "relu"))
    proj_size: int = config_field(0, "LSTM only: project h to this size (0 = off); must be < hidden_size")
    bias: bool = config_field(True, "use the b_ih and b_hh bias vectors")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = config_field(8, "passes over the training data", roles=("resume",))
    patience: int = config_field(
        0, "stop early after this many epochs without a better val accuracy (0 = off)", roles=("resume",))
    batch_size: int = config_field(128, "examples per optimizer step (the global batch under torchrun)")
    optimizer: str = config_field("adam", "optimizer", ("sgd", "adam", "adamw"))
    lr: float = config_field(1e-3, "learning rate (the peak rate for scheduler=onecycle)")
    momentum: float = config_field(0.9, "SGD momentum (sgd only)")
    weight_decay: float = config_field(0.0, "L2 penalty (decoupled for adamw)")
    scheduler: str = config_field(
        "none", "learning-rate schedule, stepped per batch (step: per step_size epochs)",
        ("none", "cosine", "step", "onecycle"))
    step_size: int = config_field(5, "scheduler=step: multiply the rate by gamma every step_size epochs")
    gamma: float = config_field(0.1, "scheduler=step: the factor applied every step_size epochs")
    grad_clip: float = config_field(
        0.0, "clip the gradient norm at this value (0 = off); RNNs can have exploding gradients")
    device: str = config_field("auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps", roles=WHERE)
    num_threads: int = config_field(
        0, "CPU threads for torch (0 = auto: the machine's cores, shared between torchrun ranks)",
        roles=WHERE)
    precision: str = config_field(
        "fp32", "fp32, bf16 (the recurrent layer in bf16, the head under autocast) or fp16 "
        "autocast (CUDA only)", ("fp32", "bf16", "fp16"),
        roles=("eval",))
    dist_backend: str = config_field(
        "auto", "under torchrun: nccl on CUDA, gloo otherwise, or force one", ("auto", "gloo", "nccl"),
        roles=("resume",))
    tf32: bool = config_field(
        False, "CUDA: let fp32 matmuls and cuDNN RNNs use TF32 (faster, ~1e-3 relative error); "
        "false = IEEE fp32", roles=("eval",))
    deterministic: bool = config_field(
        False, "CUDA: deterministic algorithms, so that a resumed run matches to the bit "
        "(slower; see docs/devices.md)")


@dataclass(frozen=True)
class OutputConfig:
    dir: str = config_field("runs", "folder that holds the run directories", roles=("incidental",))
    name: Union[str, None] = config_field(
        None, "run directory name (null = derived from the model and the time)",
        roles=("incidental",))
    tensorboard: bool = config_field(
        False, "also write TensorBoard event files into the run directory", roles=("incidental",))


@dataclass(frozen=True)
class Config:
    seed: int = config_field(
        0, "drives the validation split, initialisation, shuffling and dropout", roles=("incidental",))
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output: OutputConfig = field(default_factory=OutputConfig)


SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "output": OutputConfig}


# ---------------------------------------------------------------- schema helpers


def fields_of(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


@functools.cache
def hints_of(cls: type) -> dict[str, Any]:
    """A section's field types, evaluated once (its annotations are strings: `from __future__ import annotations`).
    Read only: the dict is shared."""
    return get_type_hints(cls)


def all_keys() -> list[str]:
    """Every dotted key, e.g. `seed`, `model.hidden_size`."""
    keys = ["seed"]
    for section, cls in SECTIONS.items():
        keys += [f"{section}.{name}" for name in fields_of(cls)]
    return keys


def describe_keys() -> list[tuple[str, str, Any, str]]:
    """(dotted key, type, default, help) for every key: the README's reference is tested against it."""
    rows = []
    for key in all_keys():
        cls, name = (Config, key) if "." not in key else (SECTIONS[key.split(".")[0]], key.split(".")[1])
        f = field_of(key)
        hint = hints_of(cls)[name]
        choices = f.metadata.get("choices")
        kind = " / ".join(choices) if choices else type_name(hint).replace(" | ", " / ")
        if key == "model.hidden_size":
            kind = "int / auto"
        rows.append((key, kind, f.default, f.metadata["help"]))
    return rows


def reference_markdown() -> str:
    """The README's config reference table, generated from the schema (a test keeps them equal)."""
    lines = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for key, kind, default, help_text in describe_keys():
        shown = yaml.safe_dump(default, default_flow_style=True).strip().removesuffix("...").strip()
        lines.append(f"| `{key}` | {kind} | `{shown}` | {help_text} |")
    return "\n".join(lines)


def type_name(hint: Any) -> str:
    """int, str | null, ...: a field's type as the reference and the messages show it."""
    if get_origin(hint) is Union:
        return " | ".join("null" if a is type(None) else a.__name__ for a in get_args(hint))
    return hint.__name__


def keys_where(role: str) -> frozenset[str]:
    """The dotted keys whose field has `role` (see ROLES), e.g. keys_where("resume")."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; valid: {', '.join(ROLES)}")
    return frozenset(key for key in all_keys() if role in field_of(key).metadata["roles"])


def field_of(key: str) -> dataclasses.Field:
    """The dataclass field behind a dotted key (`seed`, `model.hidden_size`)."""
    if "." not in key:
        return fields_of(Config)[key]
    section, name = key.split(".", 1)
    return fields_of(SECTIONS[section])[name]


def to_dict(cfg: Config) -> dict[str, Any]:
    """Plain nested dict (YAML- and checkpoint-safe) of a Config."""
    return dataclasses.asdict(cfg)


def to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def replace(cfg: Config, key: str, value: Any) -> Config:
    """A copy of cfg with one dotted key changed (no validation: for resolved values)."""
    if "." not in key:
        return dataclasses.replace(cfg, **{key: value})
    section, name = key.split(".", 1)
    return dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), **{name: value})})


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"model": {"cell": "gru"}} -> {"model.cell": "gru"}: a nested config dict by dotted keys."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_diff(a: Config, b: Config) -> dict[str, list[Any]]:
    """{dotted key: [value in a, value in b]} for every key whose value differs, in the schema's order."""
    flat_a, flat_b = flatten(to_dict(a)), flatten(to_dict(b))
    return {key: [flat_a[key], flat_b[key]] for key in all_keys() if flat_a[key] != flat_b[key]}
