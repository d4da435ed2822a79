"""Every random number generator a run uses, saved as tensors and plain values (so that last.pt
loads with weights_only=True) and restored, for runs that resume to the bit."""

from __future__ import annotations

from typing import Any

import torch


def rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """Every RNG in use, as tensors and plain values (so it survives weights_only loading).

    For a CUDA `device` its generator's state as {"cuda": {index: state}}: the device the run uses,
    not every visible GPU, so that a machine with fewer GPUs can restore it.
    """
    import random

    import numpy as np

    version, mt, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": {"version": version, "state": torch.tensor(mt, dtype=torch.int64), "gauss": gauss},
        "numpy": {"name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
    }
    if device is not None and device.type == "cuda" and torch.cuda.is_initialized():
        index = device.index if device.index is not None else torch.cuda.current_device()
        state["cuda"] = {index: torch.cuda.get_rng_state(index)}
    if device is not None and device.type == "mps":  # MPS draws dropout masks from its own generator
        state["mps"] = torch.mps.get_rng_state()
    return state


def cuda_states(saved: Any, device_count: int, target: int | None = None) -> dict[int, torch.Tensor]:
    """The saved CUDA generator states that fit `device_count` devices: {index: state}.

    `saved` is {index: state} (the devices the run used) or, from older files, a list with one state
    per GPU that was visible; a state for a device this machine lacks is left out. With `target` (the
    index of the device the run uses now) the one device's state a run saved goes to that device.
    """
    states = dict(enumerate(saved)) if isinstance(saved, (list, tuple)) else dict(saved or {})
    if target is not None and len(states) == 1:
        return {target: next(iter(states.values()))} if 0 <= target < device_count else {}
    return {int(index): state for index, state in states.items() if 0 <= int(index) < device_count}


def set_rng_state(state: dict[str, Any], device: torch.device | None = None, device_count: int | None = None) -> None:
    """Restore rng_state()'s RNGs; CUDA's for the devices that exist (`device_count`: how many, default
    the visible ones), a one-device run's onto `device` when that is the CUDA device it uses now."""
    import random

    import numpy as np

    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"].tolist()), py["gauss"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        count = torch.cuda.device_count() if device_count is None else device_count
        target = None
        if device is not None and device.type == "cuda":
            target = device.index if device.index is not None else torch.cuda.current_device()
        for index, cuda_state in cuda_states(state["cuda"], count, target).items():
            torch.cuda.set_rng_state(cuda_state, index)
    if "mps" in state and device is not None and device.type == "mps":
        torch.mps.set_rng_state(state["mps"])


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (those a run does not pass explicitly)."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
