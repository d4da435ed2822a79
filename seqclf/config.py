"""The config schema (frozen dataclasses), YAML loading, `--set` overrides and validation.

The dataclass fields are the single source of truth for every key: its type, default,
valid choices and help text. YAML files and `--set key=value` only override them, and the
whole config is validated before any data is touched, reporting every problem at once.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

from seqclf import limits, safe_yaml
from seqclf.errors import SeqclfError, preview, shorten

AUTO = "auto"
SHOWN = 50  # problems listed at most: more only come from a hostile file or checkpoint
MAX_THREADS = 4096  # torch.set_num_threads overflows past 2**31 - 1; no machine needs more than this


# What a key's value changes, as field metadata (one home for these key sets):
#   resume: `train --resume --set` may change it (it does not change what the run computes)
#   eval: `eval --set` may change it (where the data is and how to compute, never what is scored)
#   incidental: runs that differ only in it are the same experiment (`seqclf runs --group-by`)
ROLES = ("resume", "eval", "incidental")


def opt(default: Any, help: str, choices: tuple[str, ...] | None = None, *, roles: tuple[str, ...] = ()) -> Any:
    """A config field: its default, a one-line help text, for strings the valid choices, and its ROLES."""
    return field(default=default, metadata={"help": help, "choices": choices, "roles": roles})


WHERE = ("resume", "eval", "incidental")  # where the data is and where it runs: never what is computed


@dataclass(frozen=True)
class DataConfig:
    name: str = opt("mnist", "dataset: torchvision's MNIST-format sets, or any folder of four IDX files",
                    ("mnist", "fashion_mnist", "kmnist", "idx"))
    root: str = opt("data", "folder with torchvision's layout (ROOT/MNIST/raw) or the four IDX files (plain or .gz)",
                    roles=WHERE)
    download: bool = opt(True, "download with torchvision when the files are not under root", roles=WHERE)
    val_size: int = opt(5000, "examples held out of the training file for validation (seeded), before max_train")
    max_train: Union[int, None] = opt(None, "train on at most this many of the remaining examples (null = all)")
    max_test: Union[int, None] = opt(None, "score at most this many test examples (null = all)", roles=("eval",))
    normalize: bool = opt(True, "standardize pixels with the training data's mean and std")
    sequence: str = opt("rows", "how an image becomes a sequence: 28 rows, 28 columns, 784 pixels, or permuted pixels",
                        ("rows", "columns", "pixels", "permuted_pixels"))
    permutation_seed: int = opt(0, "seed of the fixed pixel permutation for sequence=permuted_pixels")


@dataclass(frozen=True)
class ModelConfig:
    cell: str = opt("lstm", "recurrent layer", ("rnn", "lstm", "gru"))
    impl: str = opt("fused", "fused torch layer, torch cells stepped by hand, or the equations from scratch",
                    ("fused", "cell", "scratch"), roles=("eval",))
    hidden_size: Union[int, str] = opt(128, "features in the hidden state h; `auto` picks the largest within param_budget")
    param_budget: Union[int, None] = opt(None, "with hidden_size: auto, the most parameters the model may have")
    num_layers: int = opt(1, "stacked recurrent layers")
    bidirectional: bool = opt(False, "also read the sequence backwards; the head sees both final states")
    dropout: float = opt(0.0, "dropout between recurrent layers, in [0, 1) (no effect with num_layers=1)")
    nonlinearity: str = opt("tanh", "activation of a plain RNN (cell=rnn only)", ("tanh", "relu"))
    proj_size: int = opt(0, "LSTM only: project h to this size (0 = off); must be < hidden_size")
    bias: bool = opt(True, "use the b_ih and b_hh bias vectors")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = opt(8, "passes over the training data", roles=("resume",))
    batch_size: int = opt(128, "examples per optimizer step (the global batch under torchrun)")
    optimizer: str = opt("adam", "optimizer", ("sgd", "adam", "adamw"))
    lr: float = opt(1e-3, "learning rate (the peak rate for scheduler=onecycle)")
    momentum: float = opt(0.9, "SGD momentum (sgd only)")
    weight_decay: float = opt(0.0, "L2 penalty (decoupled for adamw)")
    scheduler: str = opt("none", "learning-rate schedule, stepped per batch (step: per step_size epochs)",
                         ("none", "cosine", "step", "onecycle"))
    step_size: int = opt(5, "scheduler=step: multiply the rate by gamma every step_size epochs")
    gamma: float = opt(0.1, "scheduler=step: the factor applied every step_size epochs")
    grad_clip: float = opt(0.0, "clip the gradient norm at this value (0 = off); RNNs can have exploding gradients")
    device: str = opt("auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps", roles=WHERE)
    num_threads: int = opt(0, "CPU threads for torch (0 = auto: the machine's cores, shared between torchrun ranks)",
                            roles=WHERE)
    precision: str = opt("fp32", "fp32, bf16 (the recurrent layer in bf16, the head under autocast) or fp16 "
                                 "autocast (CUDA only)", ("fp32", "bf16", "fp16"),
                          roles=("eval",))
    dist_backend: str = opt("auto", "under torchrun: nccl on CUDA, gloo otherwise, or force one", ("auto", "gloo", "nccl"),
                             roles=("resume",))
    tf32: bool = opt(False, "CUDA: let fp32 matmuls and cuDNN RNNs use TF32 (faster, ~1e-3 relative error); "
                           "false = IEEE fp32", roles=("eval",))
    deterministic: bool = opt(False, "CUDA: deterministic algorithms, so that a resumed run matches to the bit "
                                     "(slower; see docs/devices.md)")


@dataclass(frozen=True)
class OutputConfig:
    dir: str = opt("runs", "folder that holds the run directories", roles=("incidental",))
    name: Union[str, None] = opt(None, "run directory name (null = derived from the model and the time)",
                                 roles=("incidental",))
    tensorboard: bool = opt(False, "also write TensorBoard event files into the run directory", roles=("incidental",))


@dataclass(frozen=True)
class Config:
    seed: int = opt(0, "drives the validation split, initialisation, shuffling and dropout", roles=("incidental",))
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output: OutputConfig = field(default_factory=OutputConfig)


SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "output": OutputConfig}


class ConfigError(SeqclfError):
    """Every problem found in a config, one per line, each naming its key and source."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = problems
        head = f"Invalid config ({source})" if source else "Invalid config"
        more = [f"  ... and {len(problems) - SHOWN} more problems"] if len(problems) > SHOWN else []  # a hostile file
        super().__init__(head + ":\n" + "\n".join([f"  - {p}" for p in problems[:SHOWN]] + more))


# ---------------------------------------------------------------- schema helpers


def fields_of(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


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
        hint = get_type_hints(cls)[name]
        choices = f.metadata.get("choices")
        kind = " / ".join(choices) if choices else _type_name(hint).replace(" | ", " / ")
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


def _type_name(hint: Any) -> str:
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


def suggest(key: str, candidates: list[str]) -> str:
    candidates = list(dict.fromkeys(candidates))  # in order, each once
    match = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    return f"; did you mean `{match[0]}`?" if match else f"; valid keys: {', '.join(candidates)}"


def _coerce(key: str, value: Any, hint: Any, choices: tuple[str, ...] | None) -> tuple[Any, str | None]:
    """Return (value, None) when `value` fits the field's type, else (None, problem)."""
    allowed = get_args(hint) if get_origin(hint) is Union else (hint,)
    if value is None:
        if type(None) in allowed:
            return None, None
        return None, f"{key}: expected {_type_name(hint)}, got null"
    for kind in allowed:
        if kind is bool and isinstance(value, bool):
            return value, None
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value, None
        if kind is float and not isinstance(value, bool) and isinstance(value, (int, float, str)):
            try:  # PyYAML reads `1e-3` as a string
                number = float(value)
            except (ValueError, OverflowError):
                continue
            if not math.isfinite(number):
                return None, f"{key}: expected a finite number, got {preview(value)}"
            return number, None
        if kind is str and isinstance(value, str):
            if "\x00" in value:  # no path or name may hold one; the OS would refuse it later
                return None, f"{key}: must not contain a NUL character, got {preview(value)}"
            if key == "model.hidden_size" and value != AUTO:
                return None, f"{key}: expected a positive integer or `auto`, got {preview(value)}"
            if choices and value not in choices:
                return None, f"{key}: {preview(value)} is not one of: {', '.join(choices)}"
            return value, None
    shown = preview(value) if isinstance(value, (int, float, str, bool)) else type(value).__name__
    expected = "a positive integer or `auto`" if key == "model.hidden_size" else _type_name(hint)
    return None, f"{key}: expected {expected}, got {shown}"


# ---------------------------------------------------------------- building a Config


def _build(raw: Any, source: str) -> tuple[Config | None, list[str]]:
    """Turn a nested dict into a Config, collecting every key, type, choice and range problem."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        return None, [f"the top level must be a mapping of keys (seed, data, model, train, output), got {type(raw).__name__}"]
    problems: list[str] = []
    failed: list[str] = []  # keys (or `section.`) whose value did not parse: they keep their defaults below
    values: dict[str, Any] = {}
    for key, value in raw.items():
        key = str(key)
        if key == "seed":
            coerced, problem = _coerce("seed", value, int, None)
            if problem:
                problems.append(problem)
                failed.append("seed")
            else:
                values["seed"] = coerced
            continue
        if key not in SECTIONS:
            hint = suggest(key, ["seed", *SECTIONS, *all_keys()]) if len(problems) < SHOWN else ""  # never shown
            problems.append(f"{key:.40}: unknown key{hint}")
            continue
        cls = SECTIONS[key]
        if value is None:
            value = {}
        if not isinstance(value, dict):
            problems.append(f"{key}: expected a mapping of {key}.* keys, got {preview(value)}")
            failed.append(key + ".")
            continue
        hints, known = get_type_hints(cls), fields_of(cls)
        section: dict[str, Any] = {}
        for name, item in value.items():
            name = str(name)
            if name not in known:
                others = [k.split(".", 1)[1] for k in all_keys() if k.startswith(key + ".")]
                hint = suggest(name, others) if len(problems) < SHOWN else ""
                problems.append(f"{key}.{name:.40}: unknown key{hint}")
                continue
            coerced, problem = _coerce(f"{key}.{name}", item, hints[name], known[name].metadata.get("choices"))
            if problem:
                problems.append(problem)
                failed.append(f"{key}.{name}")
            else:
                section[name] = coerced
        values[key] = cls(**section)
    cfg = Config(**values)
    # ranges and combinations of the fields that parsed, so one type error does not hide the rest;
    # a problem that names a key which failed to parse would judge its default, so it is left out
    names = [re.compile(r"(?<![\w.])" + re.escape(key) + ("" if key.endswith(".") else r"\b")) for key in failed]
    problems += [p for p in _check(cfg) if not any(n.search(p) for n in names)]
    return (None if problems else cfg), problems


def _check(cfg: Config) -> list[str]:
    """Ranges and combinations that no single field's type can express."""
    d, m, t = cfg.data, cfg.model, cfg.train
    problems = []

    def positive(key: str, value: Any) -> None:
        if value is not None and value <= 0:
            problems.append(f"{key}: must be positive, got {preview(value)}")

    for key, value in [("data.max_train", d.max_train), ("data.max_test", d.max_test),
                       ("model.num_layers", m.num_layers), ("train.epochs", t.epochs),
                       ("train.batch_size", t.batch_size), ("train.lr", t.lr), ("train.step_size", t.step_size),
                       ("model.param_budget", m.param_budget)]:
        positive(key, value)
    if isinstance(m.hidden_size, int):
        positive("model.hidden_size", m.hidden_size)
    for key, value in [("seed", cfg.seed), ("data.permutation_seed", d.permutation_seed)]:
        if not -2**63 <= value < 2**64:  # torch's generators take 64-bit seeds
            problems.append(f"{key}: must fit in 64 bits ({-2**63} to {2**64 - 1}), got {preview(value)}")
    if d.val_size < 1:  # best.pt is the epoch with the best validation accuracy: it needs examples
        problems.append(f"data.val_size: must be at least 1 (best.pt is chosen on the validation split), "
                        f"got {preview(d.val_size)}")
    if not 0.0 <= m.dropout < 1.0:
        problems.append(f"model.dropout: must be in [0, 1), got {m.dropout}")
    if m.proj_size < 0:
        problems.append(f"model.proj_size: must be 0 (off) or positive, got {preview(m.proj_size)}")
    if m.proj_size > 0 and m.cell != "lstm":
        problems.append(f"model.proj_size: only an LSTM has a projection; set it to 0 for cell={m.cell}")
    if m.proj_size > 0 and isinstance(m.hidden_size, int) and m.proj_size >= m.hidden_size:
        problems.append(f"model.proj_size ({preview(m.proj_size)}) must be smaller than model.hidden_size "
                        f"({preview(m.hidden_size)})")
    if m.nonlinearity != "tanh" and m.cell != "rnn":
        problems.append(f"model.nonlinearity: only cell=rnn has a choice of activation; remove it for cell={m.cell}")
    if m.hidden_size == AUTO and m.param_budget is None:
        problems.append("model.hidden_size: `auto` needs model.param_budget (the most parameters allowed)")
    # param_budget with an integer hidden_size is what a resolved `auto` config records (config.yaml,
    # checkpoints); training checks that such a model stays within it (model.resolve_hidden_size).
    for key, value in [("train.momentum", t.momentum), ("train.weight_decay", t.weight_decay),
                       ("train.grad_clip", t.grad_clip), ("train.gamma", t.gamma)]:
        if value < 0:
            problems.append(f"{key}: must be 0 or more, got {preview(value)}")
    if not 0 <= t.num_threads <= MAX_THREADS:
        problems.append(f"train.num_threads: must be 0 (auto) or a thread count up to {MAX_THREADS}, "
                        f"got {preview(t.num_threads)}")
    if not _valid_device(t.device):
        problems.append(f"train.device: {preview(t.device)} is not one of: auto, cpu, cuda, cuda:N, mps")
    if t.precision == "fp16" and t.device in ("cpu", "mps"):
        problems.append(f"train.precision: fp16 runs on CUDA only; use bf16 or fp32 on {t.device}")
    if cfg.output.name is not None and (cfg.output.name in ("", ".", "..") or "/" in cfg.output.name):
        problems.append(f"output.name: {preview(cfg.output.name)} must be a plain folder name (no '/')")
    return problems + limits.config_problems(cfg)  # sizes, names and paths: before anything is allocated


def _valid_device(device: str) -> bool:
    if device in ("auto", "cpu", "cuda", "mps"):
        return True
    prefix, _, index = device.partition(":")
    return prefix == "cuda" and index.isdigit()


# ---------------------------------------------------------------- public API


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> list[tuple[str, Any]]:
    """`["model.cell=gru", "train.epochs=3"]` -> [(key, yaml value)], raising on malformed items."""
    parsed, problems = [], []
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            problems.append(f"--set {preview(item)}: expected KEY=VALUE, e.g. --set model.cell=gru")
            continue
        if key not in all_keys():
            problems.append(f"--set {key:.40}: unknown key" + suggest(key, all_keys()))
            continue
        try:
            value = safe_yaml.load(text) if text.strip() else None
        except safe_yaml.YamlRefused as exc:
            problems.append(f"--set {key}: {exc}")
            continue
        except yaml.YAMLError:
            value = text  # a bare string YAML cannot parse (e.g. `a: b`); the type check decides
        if isinstance(value, (dict, list)):
            problems.append(f"--set {key}: expected a single value, got {preview(text)}")
            continue
        parsed.append((key, value))
    if problems:
        raise ConfigError(problems, "--set")
    return parsed


def apply_overrides(raw: dict[str, Any], overrides: list[tuple[str, Any]]) -> dict[str, Any]:
    """A copy of the nested dict with each dotted override set in order (later ones win)."""
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for key, value in overrides:
        if "." in key:
            section, name = key.split(".", 1)
            if not isinstance(merged.get(section), dict):
                merged[section] = {}
            merged[section][name] = value
        else:
            merged[key] = value
    return merged


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file, turning every I/O and syntax problem into a ConfigError."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(safe_yaml.MAX_BYTES + 1)  # bounded: a huge file or /dev/zero is refused
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(["no such file, nor a shipped config of that name (seqclf config list shows "
                           "them, e.g. --config lstm)"], str(path)) from None
    except IsADirectoryError:
        raise ConfigError(["is a folder, not a YAML file"], str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"cannot be read: {exc}"], str(path)) from None
    if len(data) > safe_yaml.MAX_BYTES:
        raise ConfigError([f"larger than the {safe_yaml.MAX_BYTES:,} bytes a config may have"], str(path))
    try:
        raw = safe_yaml.load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([safe_yaml.describe(exc)], str(path)) from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError([f"the top level must be a mapping of keys (seed, data, model, train, output), "
                           f"got {type(raw).__name__}"], str(path))
    return raw or {}


def config_from_dict(raw: Any, source: str = "config") -> Config:
    cfg, problems = _build(raw, source)
    if problems or cfg is None:
        raise ConfigError(problems, source)
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a YAML file (or only defaults), apply `--set` overrides, validate everything."""
    if path is not None:
        from seqclf.shipped import resolve_config_path  # `--config lstm`: the shipped lstm.yaml

        path = resolve_config_path(path)
    raw = read_yaml(path) if path is not None else {}
    source = str(path) if path is not None else "defaults"
    if overrides:
        source += " with --set " + " ".join(shorten(item) for item in overrides)
    return config_from_dict(apply_overrides(raw, parse_overrides(overrides)), source)


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
