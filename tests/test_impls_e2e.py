"""A checkpoint trained with model.impl=fused scores the same under `cell` and `scratch`."""

from __future__ import annotations


import pytest

from conftest import ROOT, cli_json, set_args



@pytest.mark.parametrize("model", [
    ["model.cell=lstm", "model.num_layers=2", "model.bidirectional=true", "model.proj_size=8"],
    ["model.cell=gru", "model.num_layers=2"],
    ["model.cell=rnn", "model.bidirectional=true", "model.nonlinearity=relu"],
])
def test_train_fused_then_eval_with_cell_and_scratch(tiny_overrides: list[str], model: list[str]) -> None:
    summary = cli_json("train", "--config", str(ROOT / "configs/lstm.yaml"),
                       *set_args([*tiny_overrides, *model, "model.impl=fused", "train.lr=0.003"]))
    assert summary["test_accuracy"] > 0.2  # it learned something (chance is 0.1), so equality is not trivial
    scores = {impl: cli_json("eval", summary["checkpoint"], "--set", f"model.impl={impl}")
              for impl in ("fused", "cell", "scratch")}
    for impl, result in scores.items():
        assert result["n"] == 200
        assert result["accuracy"] == summary["test_accuracy"], impl
        assert result["loss"] == pytest.approx(summary["test_loss"], abs=1e-5), impl
        assert result["confusion_matrix"] == scores["fused"]["confusion_matrix"], impl
