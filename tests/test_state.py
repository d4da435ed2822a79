"""What a run carries from step to step (seqclf/training/state.py): sums, the best epoch, state_dict to the bit."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from seqclf.config import load_config
from seqclf.model.classifier import SequenceClassifier
from seqclf.store import checkpoint
from seqclf.training.devices import DtypePolicy, dtype_policy
from seqclf.training.prepare import prepare
from seqclf.training.state import SUMS, TrainingState


def tiny_state(seed: int = 0, policy: DtypePolicy | None = None) -> TrainingState:
    """A TrainingState of a hidden-8 LSTM for 28 x 28 inputs, Adam and a step schedule, its shuffle seeded."""
    torch.manual_seed(seed)
    model = SequenceClassifier(load_config(None, ["model.hidden_size=8"]).model, 28, 10)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    return TrainingState(model, optimizer, scheduler, torch.Generator().manual_seed(seed), torch.device("cpu"),
                         policy=policy)


def step(state: TrainingState, x: torch.Tensor, y: torch.Tensor) -> None:
    """One plain optimizer step on the examples the epoch's order picks next, its metrics into the sums."""
    idx = state.cursor.order[state.cursor.step * 4:(state.cursor.step + 1) * 4]  # (4,)
    state.optimizer.zero_grad()
    logits = state.model(x[idx])  # (4, 10)
    loss = torch.nn.functional.cross_entropy(logits, y[idx], reduction="sum")
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(state.model.parameters(), 1.0)
    state.optimizer.step()
    state.add_step(loss.detach().double(), (logits.argmax(1) == y[idx]).sum(), norm, 1.0)
    state.cursor.step += 1


def test_a_state_restored_mid_epoch_continues_to_the_bit() -> None:
    data = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 28, 28, generator=data), torch.randint(0, 10, (16,), generator=data)
    a = tiny_state()
    a.begin_epoch(16)
    step(a, x, y)
    buffer = io.BytesIO()  # through bytes, as last.pt: the state shares no tensor with the running one
    torch.save(a.state_dict(), buffer)
    saved = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)  # tensors and plain values only
    b = tiny_state(seed=7)  # other weights, other shuffling: all replaced by the saved state
    b.load_state_dict(saved)
    for state in (a, b):
        step(state, x, y)
        state.scheduler.step()
        state.end_epoch({"epoch": 1, "val_accuracy": 0.5})
        state.begin_epoch(16)  # the next epoch's order comes from the restored shuffling generator
    assert all(torch.equal(a.model.state_dict()[k], b.model.state_dict()[k]) for k in a.model.state_dict())
    assert torch.equal(a.cursor.order, b.cursor.order) and a.cursor.lr == b.cursor.lr == 0.005
    assert a.optimizer.state_dict()["state"][0]["step"] == b.optimizer.state_dict()["state"][0]["step"] == 2
    assert (a.epoch, a.best_epoch, a.history) == (b.epoch, b.best_epoch, b.history) == (1, 1, [{"epoch": 1,
                                                                                             "val_accuracy": 0.5}])


def test_end_epoch_keeps_the_first_best_and_starts_a_fresh_cursor() -> None:
    state = tiny_state()
    state.begin_epoch(8)
    state.cursor.elapsed = 2.5
    assert state.end_epoch({"val_accuracy": 0.4}) and state.best_epoch == 1
    assert state.cursor.order is None and state.total_seconds == 2.5
    assert not state.end_epoch({"val_accuracy": 0.4})  # a tie is not an improvement: the earlier epoch stays
    assert state.end_epoch({"val_accuracy": 0.6})
    assert (state.best_epoch, state.best_accuracy, state.epoch) == (3, 0.6, 3)
    assert not state.end_epoch({"val_accuracy": 0.1}) and state.best_epoch == 3


def test_without_float64_the_steps_wait_on_the_device_until_settled() -> None:
    """A device without float64 (MPS) keeps each step's values apart and adds them on the host; the sums
    come out as float64 does them, and state_dict() settles first, so last.pt never misses a step."""
    exact, host = tiny_state(), tiny_state(policy=dtype_policy("mps"))
    for state in (exact, host):
        state.begin_epoch(8)
        for loss, norm in ((1.25, 0.5), (2.5, 3.0)):
            state.add_step(torch.tensor(loss, dtype=state.policy.step_dtype), torch.tensor(2), torch.tensor(norm), 1.0)
    assert len(host.cursor.pending) == 2 and float(host.cursor.sums["loss"]) == 0.0  # not yet added
    saved = host.state_dict()
    assert host.cursor.pending == [] and set(saved["sums"]) == set(SUMS)
    assert {k: float(v) for k, v in saved["sums"].items()} == {k: float(v) for k, v in exact.cursor.sums.items()} \
        == {"loss": 3.75, "correct": 4.0, "grad_norm": 3.5, "clipped": 1.0, "skipped": 0.0, "steps": 2.0}


def test_skipped_fp16_steps_are_counted_apart_and_keep_the_sums_finite(tiny_overrides: list[str]) -> None:
    cfg = load_config(None, tiny_overrides)
    model = SequenceClassifier(cfg.model, 28, 10)
    state = TrainingState(model, torch.optim.SGD(model.parameters(), lr=0.1), None, torch.Generator(),
                          torch.device("cpu"))
    state.begin_epoch(64)
    for norm in (2.0, float("inf"), float("nan"), 0.5):  # GradScaler skipped the two non-finite steps
        state.add_step(torch.tensor(1.0, dtype=torch.float64), torch.tensor(3), torch.tensor(norm), 1.0)
    sums = {name: float(value) for name, value in state.cursor.sums.items()}
    assert sums == {"loss": 4.0, "correct": 12.0, "grad_norm": 2.5, "clipped": 1.0, "skipped": 2.0, "steps": 4.0}


def test_the_fp16_loss_scale_is_part_of_last_pt(tmp_path: Path, tiny_overrides: list[str]) -> None:
    cfg = load_config(None, tiny_overrides)
    ready = prepare(cfg)

    def state() -> TrainingState:
        model = SequenceClassifier(ready.cfg.model, ready.data.input_size, ready.data.num_classes)
        return TrainingState(model, torch.optim.Adam(model.parameters()), None, torch.Generator(), ready.device,
                             torch.amp.GradScaler("cpu", enabled=True))

    saved = state()
    saved.scaler.scale(torch.ones(()))
    saved.scaler.update(new_scale=1024.0)  # as after overflows lowered it from 65536
    payload = checkpoint.pack(ready.cfg, checkpoint.DataMeta.of(ready.data), saved.state_dict(), with_state=True)
    checkpoint.save(tmp_path / "last.pt", payload)
    restored = state()
    restored.load_state_dict(checkpoint.read(tmp_path / "last.pt").training_state())
    assert restored.scaler.get_scale() == 1024.0
    assert restored.scaler.state_dict() == saved.scaler.state_dict()
