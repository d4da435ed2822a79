"""Throughput of `seqclf predict` against `seqclf eval` on one IDX test file, in one process.

    python scripts/predict_speed.py runs/<run>/best.pt /usr/share/datasets/fashion-mnist

Times, interleaved and repeated (median of --repeats): the whole of evaluate_checkpoint (which
also reads the training file) against the whole of predict_files on t10k-images (reading,
scoring, one record per image); then the scoring alone: seqclf.training.scoring.score on the test split
against Predictor.probabilities on the same images as uint8.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

from seqclf.data.datasets import load_data
from seqclf.data.idx import read_idx
from seqclf.training.scoring import score
from seqclf.use.evaluate import evaluate_checkpoint
from seqclf.use.predict import Predictor, predict_files


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("root", type=Path, help="folder of the dataset's four IDX files")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    images_file = next(args.root / name for name in ("t10k-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz")
                       if (args.root / name).exists())
    overrides = [f"data.root={args.root}"]
    n = len(predict_files(args.checkpoint, [images_file])["predictions"])  # also a warm-up
    evaluate_checkpoint(args.checkpoint, overrides)
    whole = {"eval": [], "predict": []}
    for _ in range(args.repeats):
        whole["eval"].append(timed(lambda: evaluate_checkpoint(args.checkpoint, overrides)))
        whole["predict"].append(timed(lambda: predict_files(args.checkpoint, [images_file])))
    predictor = Predictor.from_checkpoint(args.checkpoint)
    images = read_idx(images_file)
    cfg = predictor.cfg
    split = load_data(dataclasses.replace(cfg.data, root=str(args.root)), cfg.seed, splits=("test",),
                      stats=(predictor.mean, predictor.std), perm=predictor.permutation).test
    alone = {"eval": [], "predict": []}
    for _ in range(args.repeats):
        alone["eval"].append(timed(lambda: score(predictor.model, split, len(predictor.class_names))))
        alone["predict"].append(timed(lambda: predictor.probabilities(images)))
    for title, times in (("whole command", whole), ("scoring alone", alone)):
        e, p = statistics.median(times["eval"]), statistics.median(times["predict"])
        print(f"{title}: eval {n / e:,.0f} images/s ({e:.3f} s), predict {n / p:,.0f} images/s ({p:.3f} s): "
              f"predict at {e / p:.2f}x eval's throughput")


if __name__ == "__main__":
    main()
