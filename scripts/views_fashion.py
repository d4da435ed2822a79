"""Train the same model on every sequence view of Fashion-MNIST and report accuracy and time.

    python scripts/views_fashion.py [--root /usr/share/datasets/fashion-mnist] [--max-train 10000]
                                    [--pixel-max-train N] [--hidden 64] [--threads 1] [--json]

One process, one model size (LSTM, `--hidden`), one epoch per view, the same optimizer settings;
the pixel views read 784 steps instead of 28, so they may train on fewer examples
(`--pixel-max-train`, default: the same as `--max-train`): seconds per epoch are also given per
1,000 examples for a fair ratio. Times are wall-clock seconds of the epoch (what train reports); other
processes on the machine make them noisy, so the CPU time this process used is given too.
The numbers in the README's "Sequence views" table come from this script.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

from seqclf.config import load_config
from seqclf.console import Output
from seqclf.data.views import SEQUENCES
from seqclf.training.start import train

VAL_SIZE = 1000  # held out of --max-train to pick best.pt, as in every run

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--max-train", type=int, default=10000, help="examples for rows and columns")
    parser.add_argument("--pixel-max-train", type=int, default=None, help="examples for the 784-step views")
    parser.add_argument("--max-test", type=int, default=2000)
    parser.add_argument("--views", default=",".join(SEQUENCES))
    # one thread: on a shared machine torch's OpenMP threads wait for each other and times swing 10x+
    parser.add_argument("--threads", type=int, default=1, help="train.num_threads (0 = all cores)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as runs_dir:
        for view in args.views.split(","):
            n = args.pixel_max_train if "pixels" in view and args.pixel_max_train else args.max_train
            cfg = load_config(None, [
                "data.name=fashion_mnist", f"data.root={args.root}", "data.download=false",
                f"data.sequence={view}", f"data.max_train={n}", f"data.val_size={VAL_SIZE}",
                f"data.max_test={args.max_test}",
                "model.cell=lstm", f"model.hidden_size={args.hidden}", "train.epochs=1", "train.batch_size=64",
                "train.lr=2e-3", "train.grad_clip=1.0", "train.device=cpu", f"train.num_threads={args.threads}",
                f"output.dir={runs_dir}"])
            cpu = time.process_time()
            summary = train(cfg, out=Output(json_mode=True, quiet=True))
            cpu = time.process_time() - cpu  # this process's CPU time: data loading, the epoch, val and test
            examples = n - VAL_SIZE
            rows.append({"view": view, "train_examples": examples, "test_accuracy": summary["test_accuracy"],
                         "seconds_per_epoch": summary["seconds"],
                         "seconds_per_1000_examples": 1000 * summary["seconds"] / examples,
                         "cpu_seconds_whole_run": cpu, "parameters": summary["parameters"]})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    base = next((r for r in rows if r["view"] == "rows"), rows[0])["seconds_per_1000_examples"]
    for row in rows:
        row["time_ratio"] = row["seconds_per_1000_examples"] / base
    if args.json:
        print(json.dumps(rows))
        return
    print("| view | train examples | test accuracy | s/epoch | s per 1k examples | time vs rows | CPU s, whole run "
          "| parameters |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| `{r['view']}` | {r['train_examples']:,} | {r['test_accuracy']:.4f} | {r['seconds_per_epoch']:.1f} | "
              f"{r['seconds_per_1000_examples']:.2f} | {r['time_ratio']:.1f} | {r['cpu_seconds_whole_run']:.1f} | "
              f"{r['parameters']:,} |")


if __name__ == "__main__":
    main()
