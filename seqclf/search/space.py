"""The search space of `seqclf tune`: a YAML file of dotted config keys mapped to distributions.

    train.lr: {log_uniform: [1.0e-4, 1.0e-2]}
    model.hidden_size: {int: [32, 256], step: 32}
    model.cell: {choice: [lstm, gru]}
    model.dropout: {uniform: [0.0, 0.5]}

The whole file is checked against the config schema before any trial starts: every key must
be a config key, the kind of distribution must fit the key's type, and both ends of a range
(and every choice) must make a valid config together with the base config. Range rules live in
seqclf.config alone: a candidate config is built at each end through `config_from_dict`.
Every problem is reported at once (ConfigError, exit 2). torch-free and optuna-free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from seqclf.config import (
    SECTIONS,
    Config,
    ConfigError,
    all_keys,
    apply_overrides,
    config_from_dict,
    hints_of,
    read_yaml,
    suggest,
    to_dict,
)
from seqclf.config.limits import dropout_unused
from seqclf.console import as_yaml

KINDS = ("uniform", "log_uniform", "int", "log_int", "choice")
NUMERIC = {"uniform": float, "log_uniform": float, "int": int, "log_int": int}
FIXED = ("output.dir", "output.name")  # set by tune for every trial


@dataclass(frozen=True)
class Distribution:
    """One key's distribution: a numeric range [low, high] (with an optional step) or choices."""

    key: str
    kind: str  # one of KINDS
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    @property
    def log(self) -> bool:
        return self.kind.startswith("log_")

    def grid(self) -> list[Any] | None:
        """Every value, for the grid sampler; None when the range is continuous."""
        if self.kind == "choice":
            return list(self.choices)
        if self.log or (self.kind == "uniform" and self.step is None):
            return None
        step = self.step or 1
        count = int(math.floor((self.high - self.low) / step + 1e-9)) + 1
        values = [self.low + i * step for i in range(count)]
        return [round(v, 12) for v in values] if self.kind == "uniform" else values

    def describe(self) -> str:
        if self.kind == "choice":
            return f"choice [{', '.join(map(as_yaml, self.choices))}]"
        return f"{self.kind} [{self.low}, {self.high}]" + (f" step {self.step}" if self.step is not None else "")

    def extreme(self, pick: Any) -> Any:
        """The least (pick=min) or greatest (pick=max) value the distribution can draw."""
        values = self.grid()
        return pick(values) if values is not None else pick(self.low, self.high)


def _key_type(key: str) -> tuple[set[type], tuple[Any, ...] | None]:
    """The plain types a key accepts (int, float, str, bool, NoneType) and its choices, if any."""
    if key == "seed":
        return {int}, None
    section, name = key.split(".", 1)
    cls = SECTIONS[section]
    hint = hints_of(cls)[name]
    kinds = set(get_args(hint)) if get_origin(hint) is Union else {hint}
    field = next(f for f in cls.__dataclass_fields__.values() if f.name == name)
    return kinds, field.metadata.get("choices")


def _parse_one(key: str, spec: Any) -> tuple[Distribution | None, list[str]]:
    """One entry of the file, checked for its own shape and the key's type (not yet the ranges)."""
    where = f"{key}"
    if not isinstance(spec, dict):
        return None, [f"{where}: expected a mapping such as {{uniform: [0.0, 0.5]}} or {{choice: [lstm, gru]}}, "
                      f"got {spec!r}"]
    kinds = [k for k in spec if k in KINDS]
    extra = [str(k) for k in spec if k not in KINDS and k != "step"]
    if len(kinds) != 1 or extra:
        return None, [f"{where}: give exactly one of {', '.join(KINDS)} (and optionally step), got "
                      f"{', '.join(map(str, spec)) or 'nothing'}"]
    kind, args, step = kinds[0], spec[kinds[0]], spec.get("step")
    accepts, choices = _key_type(key)
    if kind == "choice":
        if not isinstance(args, list) or not args:
            return None, [f"{where}: choice takes a non-empty list, got {args!r}"]
        if step is not None:
            return None, [f"{where}: step applies to a numeric range, not to choice"]
        if len({repr(a) for a in args}) != len(args):
            return None, [f"{where}: choice lists a value twice: {args}"]
        return Distribution(key, kind, choices=tuple(args)), []
    if choices or not accepts & {int, float}:
        names = "/".join(sorted("null" if t is type(None) else t.__name__ for t in accepts))
        return None, [f"{where}: a {names} key takes {{choice: [...]}}, not {kind}"]
    if kind in ("int", "log_int") and int not in accepts:
        return None, [f"{where}: a float key takes uniform or log_uniform, not {kind}"]
    if kind in ("uniform", "log_uniform") and float not in accepts:
        return None, [f"{where}: an integer key takes int or log_int, not {kind}"]
    want = NUMERIC[kind]
    numbers = [_number(a, want) for a in args] if isinstance(args, list) else []
    if len(numbers) != 2 or None in numbers:
        return None, [f"{where}: {kind} takes [low, high] ({want.__name__}s), got {args!r}"]
    low, high = numbers
    problems = []
    if low >= high:
        problems.append(f"{where}: low ({low}) must be below high ({high})")
    if kind.startswith("log_") and low <= 0:
        problems.append(f"{where}: {kind} needs a positive low end, got {low}")
    if step is not None:
        step = _number(step, want)
        if step is None or step <= 0 or kind.startswith("log_"):
            problems.append(f"{where}: step must be a positive {want.__name__} and cannot go with {kind}"
                            if kind.startswith("log_") else f"{where}: step must be a positive {want.__name__}, "
                                                             f"got {spec['step']!r}")
    return (None if problems else Distribution(key, kind, low, high, step)), problems


def _number(value: Any, want: type) -> float | int | None:
    if isinstance(value, bool):
        return None
    if want is int:
        return value if isinstance(value, int) else None
    try:  # PyYAML reads `1e-3` as a string
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def parse_space(raw: Any, base: Config, source: str = "space") -> dict[str, Distribution]:
    """Check a loaded space file against the schema and `base`; every problem at once."""
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(["the space file must map dotted config keys to distributions, e.g. "
                           "train.lr: {log_uniform: [1.0e-4, 1.0e-2]}"], source)
    problems: list[str] = []
    space: dict[str, Distribution] = {}
    for key, spec in raw.items():
        key = str(key)
        if key not in all_keys():
            problems.append(f"{key}: unknown key" + suggest(key, all_keys()))
            continue
        if key in FIXED:
            problems.append(f"{key}: cannot be searched: tune puts every trial under output.dir/<study>/")
            continue
        dist, found = _parse_one(key, spec)
        problems += found
        if dist is not None:
            space[key] = dist
    base_raw = to_dict(base)
    for key, dist in space.items():
        values = list(dist.choices) if dist.kind == "choice" else [dist.low, dist.high]
        for value in values:
            try:
                config_from_dict(apply_overrides(base_raw, [(key, value)]))
            except ConfigError as exc:
                problems += [f"{key}: {value!r} is outside what the key accepts ({p})" for p in exc.problems]
    if problems:
        raise ConfigError(problems, source)
    return space


def dropout_note(space: dict[str, Distribution], base: Config) -> str | None:
    """What to say once, before the first trial, when a trial can draw dropout with one layer (where it
    has no effect): training would otherwise say it for every such trial."""
    layers, dropout = space.get("model.num_layers"), space.get("model.dropout")
    fewest = layers.extreme(min) if layers else base.model.num_layers
    most = dropout.extreme(max) if dropout else base.model.dropout
    if not dropout_unused(most, fewest):
        return None
    return (f"model.dropout (up to {as_yaml(most, 3)}) has no effect in the trials with model.num_layers=1: it acts "
            f"between recurrent layers (said once here, not for each trial)")


def load_space(path: str | Path, base: Config) -> dict[str, Distribution]:
    return parse_space(read_yaml(path), base, str(path))
