"""The example command lines each command's --help ends with, in one place (`examples(name)` gives
the epilog), kept apart from the commands' declarations so that those stay short."""

from __future__ import annotations

EXAMPLES: dict[str, tuple[str, ...]] = {
    "train": (
        "seqclf train --config lstm   # a shipped config (seqclf config list)",
        "seqclf train --config my.yaml --set model.cell=gru --set train.epochs=3",
        "seqclf train --config lstm --set train.epochs=30 --set train.patience=3   # early stopping",
        "seqclf train --resume runs/lstm-1x128-s0-20261123-101500",
        "seqclf train --config lstm --set train.lr=1e-4 --init-from runs/<run>/best.pt",
        "seqclf train --config lstm --set data.name=folder --set data.root=shapes   # shapes/{train,test}/<class>/",
    ),
    "eval": (
        "seqclf eval runs/<run>/best.pt",
        "seqclf eval runs/<run>/best.pt --json | jq .accuracy",
        "seqclf eval runs/<run>/best.pt --set data.root=/usr/share/datasets/fashion-mnist --split val",
    ),
    "shapes": (
        "seqclf shapes --config bilstm",
        "seqclf shapes --config lstm --set data.sequence=pixels --batch 32",
        "seqclf shapes --config lstm --set model.proj_size=64 --json | jq .total_parameters",
    ),
    "bench": (
        "seqclf bench --config lstm --set data.name=fashion_mnist --set data.root=/usr/share/datasets/fashion-mnist",
        "seqclf bench --config lstm --set model.hidden_size=256 --set train.batch_size=256 --json",
        "seqclf bench --config lstm --baseline --steps 200   # also the DataLoader pipeline",
        "bash scripts/bench.sh -o bench.md   # the standard table",
    ),
    "config show": (
        "seqclf config show --config gru",
        "seqclf config show -c lstm --set model.cell=gru --set model.cell=rnn   # later wins",
        "seqclf config show -c gru --set model.hidden_size=auto --set model.param_budget=50000",
    ),
    "config validate": (
        "seqclf config validate my.yaml other.yaml",
        "seqclf config validate my.yaml && scripts/sweep.sh -c my.yaml   # check before a long sweep",
    ),
    "config diff": (
        "seqclf config diff runs/lstm-1x128-s0-20261123-101500 runs/gru-1x128-s0-20261123-103000",
        "seqclf config diff runs/<run> lstm --json   # a run against the shipped config it came from",
    ),
    "config list": (
        "seqclf config list",
        "seqclf train --config gru",
    ),
    "config cp": (
        "seqclf config cp lstm my.yaml",
        "seqclf config cp lstm experiments/   # writes experiments/lstm.yaml",
        "seqclf train --config my.yaml",
    ),
    "runs": (
        "seqclf runs   # best validation accuracy first",
        "seqclf runs runs/sweep --group-by model.cell,model.num_layers,model.bidirectional",
        "seqclf runs --sort train.lr --columns name,lr,train.batch_size,val_accuracy,status",
        "for run in $(seqclf runs -q); do seqclf eval runs/$run/best.pt --split val; done",
        'seqclf runs --json | jq -r \'.[] | select(.status == "finished") | .name\'',
        "seqclf runs --csv > runs.csv",
    ),
    "runs rm": (
        "seqclf runs rm lstm-1x128-s0-20261123-101500 --dry-run   # what would go; removes nothing",
        "seqclf runs rm lstm-1x128-s0-20261123-101500 sweep/gru-1x64-s1-20261123-103000",
        "seqclf runs rm --status failed,interrupted --dry-run   # every run under runs/ that did not finish",
        "seqclf runs rm --dir runs/sweep --status damaged",
    ),
    "plot": (
        "seqclf plot runs/lstm-1x128-s0-20261123-101500",
        "seqclf plot runs/lstm-* runs/gru-* -o curves.png",
        "seqclf plot runs/sweep -o sweep.svg   # every run in the folder",
        "seqclf plot --confusion runs/<run>/best.pt -o confusion.png",
        "seqclf plot --mistakes runs/<run>/best.pt -n 24 -o mistakes.png",
        "seqclf plot --study fashion -o study.png",
    ),
    "predict": (
        "seqclf predict runs/<run>/best.pt digit.png",
        "seqclf predict runs/<run>/best.pt scans/ --top-k 3",
        "seqclf predict runs/<run>/best.pt t10k-images-idx3-ubyte.gz --csv > predictions.csv",
        "seqclf predict runs/<run>/best.pt photo.jpg --json | jq -r '.predictions[0].predicted_class'",
        "seqclf predict runs/<run>/best.pt test/ --labels folders   # test/<class>/*.png: accuracy, confusion",
        "seqclf predict runs/<run>/best.pt scans/ --labels labels.csv   # rows file,label",
    ),
    "export": (
        "seqclf export runs/<run>/best.pt -o model.onnx",
        "seqclf export runs/<run>/best.pt -o model.pt2 --format pt2",
    ),
    "trace": (
        "seqclf trace runs/<run>/best.pt digit.png",
        "seqclf trace runs/<run>/best.pt scans/ --top-k 2 -o trace.png",
        "seqclf trace runs/<run>/best.pt five.npy --json | jq '.traces[0].decided_at'",
    ),
    "report": (
        "seqclf report runs/<run>",
        "seqclf report runs/<run> -o lstm.html",
        "seqclf report runs/lstm-* runs/gru-* -o compare.html",
        "seqclf report runs/<run> --set data.root=/usr/share/datasets/fashion-mnist",
    ),
    "tune": (
        "seqclf tune --config lstm --space configs/space.yaml --trials 30",
        "seqclf tune --config lstm --space configs/space.yaml --jobs 2 --pruner hyperband",
        "seqclf tune --config lstm --space configs/space.yaml --objective accuracy,seconds   # a Pareto front",
        "seqclf tune --config lstm --space configs/space.yaml --study fashion \\",
        "  --storage postgresql://seqclf:secret@db.example/optuna   # the same on every machine",
        "seqclf tune --show --study fashion --json",
        "seqclf plot --study fashion -o study.png",
    ),
}


def examples(command: str) -> str:
    """A command's epilog: its example command lines, kept as written (`\\b`: click must not rewrap)."""
    return "Examples:\n\n\b\n" + "\n".join(f"  {line}" for line in EXAMPLES[command])
