"""Configs from YAML files and `--set` overrides, validated against the schema (seqclf.config.schema).

The schema's dataclass fields are the single source of truth for every key: its type, default,
valid choices and help text. YAML files and `--set key=value` only override them, and the
whole config is validated before any data is touched, reporting every problem at once. The
names are re-exported by the package: `from seqclf.config import Config, load_config`.
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml

from seqclf.config import limits, safe_yaml
from seqclf.config.schema import (
    AUTO,
    MAX_THREADS,
    SECTIONS,
    Config,
    all_keys,
    fields_of,
    hints_of,
    type_name,
)
from seqclf.errors import SeqclfError, preview, shorten

SHOWN = 50  # problems listed at most: more only come from a hostile file or checkpoint


class ConfigError(SeqclfError):
    """Every problem found in a config, one per line, each naming its key and source."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = problems
        head = f"Invalid config ({source})" if source else "Invalid config"
        more = [f"  ... and {len(problems) - SHOWN} more problems"] if len(problems) > SHOWN else []  # a hostile file
        super().__init__(head + ":\n" + "\n".join([f"  - {p}" for p in problems[:SHOWN]] + more))


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
        return None, f"{key}: expected {type_name(hint)}, got null"
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
    expected = "a positive integer or `auto`" if key == "model.hidden_size" else type_name(hint)
    return None, f"{key}: expected {expected}, got {shown}"


# ---------------------------------------------------------------- building a Config


def _build(raw: Any, source: str) -> tuple[Config | None, list[str]]:
    """Turn a nested dict into a Config, collecting every key, type, choice and range problem."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        return None, [f"the top level must be a mapping of keys (seed, data, model, train, output), "
                      f"got {type(raw).__name__}"]
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
            if key in all_keys():  # `train.lr: 0.01` at the top level: a --set key, or a search space file
                section, name = key.split(".", 1)
                problems.append(f"{key}: a dotted key belongs nested in a config file ({section}: then {name}: "
                                f"under it) or in --set {key}=VALUE; a file of dotted keys with ranges is a search "
                                f"space for seqclf tune --space")
                continue
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
        hints, known = hints_of(cls), fields_of(cls)
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
    if t.patience < 0:
        problems.append(f"train.patience: must be 0 (off) or a number of epochs, got {preview(t.patience)}")
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
    if cfg.output.name is not None and (problem := limits.folder_name_problem("output.name", cfg.output.name)):
        problems.append(problem)
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
        from seqclf.config.shipped import (
            resolve_config_path,  # `--config lstm`: the shipped lstm.yaml
        )

        path = resolve_config_path(path)
    raw = read_yaml(path) if path is not None else {}
    source = str(path) if path is not None else "defaults"
    if overrides:
        source += " with --set " + " ".join(shorten(item) for item in overrides)
    return config_from_dict(apply_overrides(raw, parse_overrides(overrides)), source)
