#!/usr/bin/env bash
# scripts/time_to_accuracy.sh: how long training takes to reach a good model, config against config.
#
# Trains configs/lstm.yaml and configs/fashion_fast.yaml on Fashion-MNIST, one after the other in
# this one invocation (same machine, same data, each with all the cores to itself), then prints for
# each the seconds of training until the validation accuracy first reached 0.88 and 0.90 (the
# per-epoch `seconds` of metrics.jsonl, summed: training only, not the scoring between epochs),
# and the final test accuracy (summary.json, scored with best.pt). A threshold the run never
# reached reads "not reached".
#
# Usage: scripts/time_to_accuracy.sh [DATA_ROOT] [-o OUT] [--set KEY=VALUE ...]
#   DATA_ROOT  the Fashion-MNIST IDX files  (env FASHION_MNIST_ROOT, default /usr/share/datasets/fashion-mnist)
#   -o OUT     keep the runs in OUT/<config>/ (env OUT, default a temporary folder, deleted at the end)
#   --set      for both runs, after the script's own (a later --set wins)
# Also: CONFIGS="lstm fashion_fast" (shipped names or files), THRESHOLDS="0.88 0.90",
# SEQCLF="seqclf" (the command, e.g. "python -m seqclf"), PYTHON=python3 (reads the files).
#
# Examples:
#   scripts/time_to_accuracy.sh                                     # run it twice to see the spread
#   scripts/time_to_accuracy.sh -o runs/tta --set train.num_threads=2
#
# Other processes on the machine slow both runs: check `uptime` (the table shows the load average
# before each run). Exit status: 0 both finished, 1 a run failed, 2 bad usage.
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
die() { echo "time_to_accuracy.sh: $*" >&2; exit 2; }

root=${FASHION_MNIST_ROOT:-/usr/share/datasets/fashion-mnist}
out=${OUT:-}
configs=${CONFIGS:-lstm fashion_fast}
thresholds=${THRESHOLDS:-0.88 0.90}
python=${PYTHON:-python3}
read -r -a seqclf <<< "${SEQCLF:-seqclf}"
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -o|--output) [[ $# -ge 2 ]] || die "-o needs a folder"; out="$2"; shift 2 ;;
    --set) [[ $# -ge 2 ]] || die "--set needs KEY=VALUE"; extra+=(--set "$2"); shift 2 ;;
    -h|--help) usage; exit 0 ;;
    -*) die "unknown option $1 (use DATA_ROOT, -o OUT, --set KEY=VALUE)" ;;
    *) root="$1"; shift ;;
  esac
done
[[ -d $root ]] || die "$root: no such folder; give the folder of the Fashion-MNIST IDX files"
for threshold in $thresholds; do
  [[ $threshold =~ ^(0(\.[0-9]+)?|1(\.0+)?)$ ]] || die "THRESHOLDS: $threshold is not an accuracy in [0, 1]"
done
if [[ -z $out ]]; then
  out="$(mktemp -d)"
  trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out"

results="$out/summaries.tsv"
: > "$results"
cpu="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1)"
for config in $configs; do
  load="$(cut -d ' ' -f 1 /proc/loadavg 2>/dev/null || echo '?')"
  echo "time_to_accuracy: training $config (1-minute load average $load) ..." >&2
  summary="$("${seqclf[@]}" train --config "$config" --json \
    --set data.name=fashion_mnist --set "data.root=$root" --set data.download=false \
    --set "output.dir=$out/$(basename "$config" .yaml)" ${extra[@]+"${extra[@]}"})" \
    || { echo "time_to_accuracy: training $config failed (its messages are above)" >&2; exit 1; }
  printf '%s\t%s\t%s\n' "$config" "$load" "$summary" >> "$results"
done

"$python" - "$results" "$thresholds" "$root" "$(nproc 2>/dev/null || echo '?')" "${cpu:-unknown CPU}" <<'EOF'
import json, sys
from pathlib import Path

results, thresholds, root, cores, cpu = sys.argv[1], [float(t) for t in sys.argv[2].split()], *sys.argv[3:]
header = ["config", "load", "epochs", *(f"val {t:.2f} after" for t in thresholds), "training s", "best val",
          "test accuracy"]
rows = []
for line in open(results):
    config, load, text = line.rstrip("\n").split("\t", 2)
    summary = json.loads(text)
    history = [json.loads(row) for row in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    reached, elapsed = {}, 0.0
    for row in history:  # seconds of training up to the end of each epoch
        elapsed += row["seconds"]
        for t in thresholds:
            if t not in reached and row["val_accuracy"] is not None and row["val_accuracy"] >= t:
                reached[t] = f"{elapsed:.1f} s (epoch {row['epoch']})"
    rows.append([config, load, str(summary["epochs"]), *(reached.get(t, "not reached") for t in thresholds),
                 f"{summary['seconds']:.1f}", f"{summary['val_accuracy']:.4f}", f"{summary['test_accuracy']:.4f}"])
print(f"time to accuracy on Fashion-MNIST ({root}), {cpu}, {cores} cores; training seconds (metrics.jsonl) "
      f"until the validation accuracy first reached each threshold; load: the 1-minute load average before the run")
print("| " + " | ".join(header) + " |")
print("| --- | ---: | ---: | " + " | ".join("---:" for _ in header[3:]) + " |")
for row in rows:
    print("| " + " | ".join(row) + " |")
EOF
