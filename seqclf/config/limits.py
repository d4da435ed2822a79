"""Sizes that cannot work, refused before anything is allocated, each with its estimate.

Torch-free, so `seqclf config validate` checks them in a fraction of a second: a lower bound
on the model's parameters (the exact count is model.parameter_count), names and paths the
file system would refuse, and memory a forward pass or a data file would need beyond what
the machine has.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from seqclf.errors import SeqclfError, preview

if TYPE_CHECKING:
    from seqclf.config.schema import Config, ModelConfig

PathT = TypeVar("PathT", str, Path)
# 4 GB of float32 weights, 16 GB to train with Adam (weights, gradients, two moments): more than any
# recurrent classifier of 28x28 images needs, and about what one large accelerator holds.
MAX_PARAMETERS = 10**9
MAX_LAYERS = 1000  # building and stepping more stacked layers takes minutes before the first batch
NAME_MAX = 255  # bytes in one file or folder name (Linux, macOS and Windows file systems)
PATH_MAX = 4096  # bytes in a whole path (Linux)
FLOAT_BYTES = 4


UNUSED_DROPOUT = "unused dropout"  # the `once` key of the warning below (tune says it once for the study)


def dropout_unused(dropout: float, num_layers: int) -> bool:
    """torch's recurrent layers apply dropout between stacked layers: with one layer it does nothing.
    Allowed, so that a sweep over depth keeps one config; training (and tune, for its space) says so."""
    return dropout > 0 and num_layers < 2


def size(nbytes: int) -> str:
    """1234567 -> '1.23 MB'; from 1000 EB on, a count of EB."""
    units = ("B", "KB", "MB", "GB", "TB", "PB", "EB")
    power = 0
    while power < len(units) - 1 and nbytes >= 1000 ** (power + 1):
        power += 1
    if nbytes >= 1000 ** len(units):
        return f"{count(nbytes // 1000 ** power)} EB"  # too large for a float
    return f"{nbytes / 1000 ** power:.3g} {units[power]}"


def count(number: int) -> str:
    """12345 -> '12,345'; 4 * 10**18 -> '4.00e+18'; past a float's range '10^400' (its order)."""
    if number < 10**15:
        return f"{number:,}"
    if number < 10**300:
        return f"{number:.2e}"
    return f"10^{int(number.bit_length() * math.log10(2))}"


def config_problems(cfg: Config) -> list[str]:
    """Names and paths too long for a file system, and models too large to build, in a Config."""
    paths = [("data.root", cfg.data.root), ("output.dir", cfg.output.dir), ("output.name", cfg.output.name or "")]
    problems = [problem for key, path in paths if (problem := path_problem(key, path))]
    return problems + model_problems(cfg.model)


def model_problems(m: ModelConfig) -> list[str]:
    """Models too large for any data, by a lower bound on their parameters (model.check_fits applies
    the exact count once the data's input size is known)."""
    problems = []
    if m.num_layers > MAX_LAYERS:
        problems.append(f"model.num_layers: {count(m.num_layers)} is more than the {MAX_LAYERS} layers allowed")
    if m.param_budget is not None and m.param_budget > MAX_PARAMETERS:
        problems.append(f"model.param_budget: {count(m.param_budget)} parameters would take "
                        f"{size(m.param_budget * FLOAT_BYTES)} as float32; at most {count(MAX_PARAMETERS)} "
                        f"({size(MAX_PARAMETERS * FLOAT_BYTES)})")
    if problems or not isinstance(m.hidden_size, int) or m.hidden_size < 1 or m.num_layers < 1 or m.proj_size < 0:
        return problems  # the count needs sane numbers; other checks report the rest
    # a lower bound for any cell and data: weight_hh alone is (gates*hidden, h_out) in each layer and direction
    least = m.num_layers * (2 if m.bidirectional else 1) * m.hidden_size * (m.proj_size or m.hidden_size)
    if least > MAX_PARAMETERS:
        problems.append(f"model.hidden_size: a {m.cell} of {m.num_layers} layer(s) with hidden_size "
                        f"{count(m.hidden_size)} has at least {count(least)} parameters "
                        f"({size(least * FLOAT_BYTES)} as float32, about 4x that to train); at most "
                        f"{count(MAX_PARAMETERS)} ({size(MAX_PARAMETERS * FLOAT_BYTES)}) are allowed: lower "
                        f"model.hidden_size or model.num_layers")
    return problems


def forward_bytes(m: ModelConfig, gates: int, batch: int, seq_len: int, input_size: int) -> int:
    """About the memory of one forward pass without gradients: the input (B, T, F), a layer's
    output and the next one's (B, T, D*H_out) each, and one step's gates (B, gates*hidden)."""
    assert isinstance(m.hidden_size, int)
    directions, h_out = 2 if m.bidirectional else 1, m.proj_size or m.hidden_size
    per_example = seq_len * (input_size + 2 * directions * h_out) + gates * m.hidden_size
    return FLOAT_BYTES * batch * per_example


def path_problem(option: str, path: str | Path) -> str | None:
    """Why the file system would refuse `path` by its length alone, or None."""
    text = os.fsencode(path)
    if len(text) > PATH_MAX:
        return f"{option}: the path is {len(text):,} bytes long; file systems allow at most {PATH_MAX}"
    for part in Path(path).parts:
        length = len(os.fsencode(part))
        if length > NAME_MAX:
            return (f"{option}: the name {preview(part, 40)} in the path is {length} bytes long; "
                    f"file systems allow at most {NAME_MAX}")
    return None


def folder_name_problem(option: str, name: str) -> str | None:
    """Why `name` cannot be one folder directly under another (output.name, a study's name), or None:
    '', '.', '..' and names with '/' would land outside it or in it; control characters (a newline)
    would turn into other names in listings and shell commands."""
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        return f"{option}: {preview(name)} must be a plain folder name (not '', '.' or '..', and no '/')"
    if any(ord(char) < 32 or ord(char) == 127 for char in name):
        return f"{option}: {preview(name)} holds a control character (a newline or tab); use a plain folder name"
    return path_problem(option, name)


def check_path(option: str, path: PathT) -> PathT:
    """`path` itself, or a SeqclfError when it is too long for any file system (see path_problem)."""
    problem = path_problem(option, path)
    if problem:
        raise SeqclfError(problem)
    return path


def available_memory() -> int | None:
    """Bytes of memory this machine can still hand out (Linux: MemAvailable), None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def default_threads(share: int = 1) -> int:
    """This process's share of the cores it may run on (taskset/cgroup affinity where known).

    torch's own default is every core; under torchrun each of `share` local ranks gets its
    part so that ranks do not oversubscribe the machine.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, share))


def check_parameters(what: str, parameters: int, fix: str) -> None:
    """Refuse a model of more than MAX_PARAMETERS, or whose float32 weights exceed the free memory."""
    if parameters > MAX_PARAMETERS:
        raise SeqclfError(f"{what} has {count(parameters)} parameters ({size(parameters * FLOAT_BYTES)} as "
                          f"float32); at most {count(MAX_PARAMETERS)} are allowed: {fix}")
    check_memory(what, parameters * FLOAT_BYTES, fix)


def check_memory(what: str, nbytes: int, fix: str, error: type[SeqclfError] = SeqclfError) -> None:
    """Refuse to allocate `nbytes` for `what` when the machine has less memory available."""
    free = available_memory()
    if free is not None and nbytes > free:
        raise error(f"{what} would need about {size(nbytes)}, more than the {size(free)} of memory "
                          f"available; {fix}")
