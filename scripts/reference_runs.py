"""Five reference configs trained 3 epochs on a fixed tiny IDX dataset through the real CLI, as a JSON
digest: metrics.jsonl without its timing fields, the test scores and `seqclf eval` of best.pt.

A change that should not change what seqclf computes (a restructure, a refactor) keeps the digest:

    python scripts/reference_runs.py > before.json        # on the old commit
    python scripts/reference_runs.py --compare before.json  # on the new one: exit 1 on any difference

Fields a newer seqclf adds (to eval's JSON, say) are listed, not counted as differences.

The configs cover the three cells, both directions, dropout, proj_size, the hand-stepped
implementation, every optimizer and schedule, clipping, the columns view and `hidden_size: auto`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REFERENCE = {
    "lstm16": ["model.cell=lstm", "model.hidden_size=16"],
    "bigru": ["model.cell=gru", "model.num_layers=2", "model.hidden_size=12", "model.bidirectional=true",
              "model.dropout=0.2", "train.scheduler=cosine"],
    "rnn_relu": ["model.cell=rnn", "model.nonlinearity=relu", "model.hidden_size=20", "train.optimizer=sgd",
                 "train.lr=0.05", "train.scheduler=step", "train.step_size=1", "train.gamma=0.5",
                 "train.grad_clip=0.5"],
    "lstm_proj_cell": ["model.cell=lstm", "model.hidden_size=16", "model.proj_size=8", "model.impl=cell",
                       "train.optimizer=adamw", "train.weight_decay=0.01", "train.scheduler=onecycle"],
    "gru_columns_auto": ["model.cell=gru", "data.sequence=columns", "model.hidden_size=auto",
                         "model.param_budget=3000", "seed=3"],
}
TIMING = {"seconds", "examples_per_s"}

def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    path.write_bytes(header + array.astype(np.uint8).tobytes())



def make_data(root: Path) -> None:
    """600 train and 200 test 28x28 images: class k has a bright band over rows and columns 2k..2k+1."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for n, prefix in ((600, "train"), (200, "t10k")):
        labels = rng.permutation(np.arange(n) % 10)
        images = rng.integers(0, 40, size=(n, 28, 28))
        for k in range(10):
            images[labels == k, 2 * k:2 * k + 2, :] = 250
            images[labels == k, :, 2 * k:2 * k + 2] = np.maximum(images[labels == k, :, 2 * k:2 * k + 2], 220)
        write_idx(root / f"{prefix}-images-idx3-ubyte", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte", labels)



def seqclf(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "seqclf", *args], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"seqclf {' '.join(args)} failed:\n{done.stderr}")
    return json.loads(done.stdout)



def digest() -> dict:
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        make_data(root)
        for name, items in REFERENCE.items():
            base = ["data.name=idx", f"data.root={root}", "data.val_size=100", "train.epochs=3",
                    "train.batch_size=32", "train.device=cpu", "train.num_threads=1", f"output.dir={tmp}/runs",
                    f"output.name={name}"]
            args = [a for item in base + items for a in ("--set", item)]
            summary = seqclf("train", "--config", "lstm", *args, "--json")
            run = Path(tmp) / "runs" / name
            rows = [{k: v for k, v in json.loads(line).items() if k not in TIMING}
                    for line in (run / "metrics.jsonl").read_text().splitlines()]
            evaluated = seqclf("eval", str(run / "best.pt"), "--json")
            evaluated.pop("checkpoint")  # a temporary path
            result[name] = {"metrics": rows, "test_accuracy": summary.get("test_accuracy"),
                            "test_loss": summary.get("test_loss"), "eval": evaluated}
    return result


def main() -> None:
    result = digest()
    if sys.argv[1:2] != ["--compare"]:
        json.dump(result, sys.stdout, indent=1, sort_keys=True)
        return
    expected = json.loads(Path(sys.argv[2]).read_text())
    same = True
    for name in REFERENCE:
        changed = sorted(key for key in expected.get(name, {}) if not _kept(expected[name][key], result[name][key]))
        added = sorted(set(result[name]["eval"]) - set(expected.get(name, {}).get("eval", {})))
        same = same and not changed and name in expected
        print(f"{name}: {'same' if not changed and name in expected else 'DIFFERENT: ' + ', '.join(changed)}"
              + (f" (eval adds {', '.join(added)})" if added else ""))
    sys.exit(0 if same else 1)


def _kept(old: object, new: object) -> bool:
    """`new` holds every field of `old` with the same value: fields added since are not changes."""
    if isinstance(old, dict) and isinstance(new, dict):
        return all(key in new and _kept(value, new[key]) for key, value in old.items())
    return old == new


if __name__ == "__main__":
    main()
