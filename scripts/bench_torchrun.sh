#!/usr/bin/env bash
# Training speed under torchrun: one epoch of configs/lstm.yaml on real Fashion-MNIST (CPU, gloo) in
# NPROC processes against the same epoch in one process, alternated REPEATS times. Each way gets the
# machine's cores (a rank takes its share). Prints a Markdown table of examples/s (metrics.jsonl's
# examples_per_s: training steps only) and the median ratio.
#
#   bash scripts/bench_torchrun.sh                                  # 2 processes vs 1
#   NPROC=4 REPEATS=3 bash scripts/bench_torchrun.sh --set data.max_train=20000
#
# Environment: FASHION_MNIST_ROOT (default /usr/share/datasets/fashion-mnist), NPROC (default 2),
# REPEATS (default 2), PYTHON (default python3, with seqclf and torch installed). Other processes on the
# machine skew the numbers: check `uptime` first.
set -euo pipefail

root="${FASHION_MNIST_ROOT:-/usr/share/datasets/fashion-mnist}"
nproc="${NPROC:-2}"
repeats="${REPEATS:-2}"
python="${PYTHON:-python3}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
extra=("$@")
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
common=(train --config "$here/configs/lstm.yaml" --set data.name=fashion_mnist --set "data.root=$root"
        --set data.download=false --set train.epochs=1 --set train.device=cpu --json)

speed() {  # run directory of the last JSON line on stdin -> its examples_per_s
  "$python" -c 'import json, sys; d = json.loads(sys.stdin.read().splitlines()[-1])["run_dir"]
print(json.loads(open(d + "/metrics.jsonl").readline())["examples_per_s"])'
}

rows=()
for ((i = 1; i <= repeats; i++)); do
  echo "bench_torchrun: repeat $i, 1 process ..." >&2
  one="$("$python" -m seqclf "${common[@]}" --set "output.dir=$out/one" ${extra[@]+"${extra[@]}"} 2>/dev/null | speed)"
  echo "bench_torchrun: repeat $i, $nproc processes ..." >&2
  many="$("$python" -m torch.distributed.run --standalone --nproc_per_node="$nproc" -m seqclf "${common[@]}" \
    --set "output.dir=$out/many" ${extra[@]+"${extra[@]}"} 2>/dev/null | speed)"
  rows+=("$one $many")
done

"$python" - "$nproc" "${rows[@]}" <<'PY'
import statistics, sys
nproc, rows = sys.argv[1], [tuple(map(float, r.split())) for r in sys.argv[2:]]
print(f"| repeat | 1 process ex/s | {nproc} processes ex/s | ratio |")
print("| ---: | ---: | ---: | ---: |")
for i, (one, many) in enumerate(rows, 1):
    print(f"| {i} | {one:,.0f} | {many:,.0f} | {many / one:.2f} |")
print(f"\nmedian ratio {nproc} processes / 1: {statistics.median(m / o for o, m in rows):.2f}")
PY
