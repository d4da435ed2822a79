#!/usr/bin/env bash
# The standard speed table: `seqclf bench --json --baseline` for four models on real Fashion-MNIST,
# written as a Markdown table to stdout and, with -o FILE (or BENCH_OUT=FILE), to a file.
#
#   bash scripts/bench.sh                          # table on stdout
#   bash scripts/bench.sh -o bench.md              # and in bench.md
#   bash scripts/bench.sh --set train.precision=bf16 --set train.num_threads=1   # extra --set for every row
#
# Environment: FASHION_MNIST_ROOT (default /usr/share/datasets/fashion-mnist), BENCH_STEPS (timed steps per
# pipeline, default 100), BENCH_OUT (output file), SEQCLF (the command, default: seqclf on PATH),
# PYTHON (formats the table, default python3). Other processes on the machine skew absolute numbers;
# the ratios are measured in one process and hold better. Check `uptime` first.
set -euo pipefail

root="${FASHION_MNIST_ROOT:-/usr/share/datasets/fashion-mnist}"
steps="${BENCH_STEPS:-100}"
output="${BENCH_OUT:-}"
seqclf="${SEQCLF:-seqclf}"
python="${PYTHON:-python3}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -o|--output) output="$2"; shift 2 ;;
    --set) extra+=(--set "$2"); shift 2 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench.sh: unknown argument $1 (use -o FILE, --set KEY=VALUE)" >&2; exit 2 ;;
  esac
done

# name | --set items: the seed-sized model, the default LSTM, a big GRU, a matmul-bound LSTM
rows=(
  "LSTM 10 x 2 (seed-sized)|model.cell=lstm model.hidden_size=10 model.num_layers=2 train.batch_size=128"
  "LSTM 128 x 1|model.cell=lstm model.hidden_size=128 model.num_layers=1 train.batch_size=128"
  "GRU 128 x 2 bidirectional|model.cell=gru model.hidden_size=128 model.num_layers=2 model.bidirectional=true train.batch_size=128"
  "LSTM 256 x 1|model.cell=lstm model.hidden_size=256 model.num_layers=1 train.batch_size=256"
)

results="$(mktemp)"
trap 'rm -f "$results"' EXIT
for row in "${rows[@]}"; do
  name="${row%%|*}"
  sets=()
  for item in ${row#*|}; do sets+=(--set "$item"); done
  echo "bench: $name ..." >&2
  json="$("$seqclf" bench --config "$here/configs/lstm.yaml" --json --baseline --steps "$steps" \
    --set data.name=fashion_mnist --set "data.root=$root" --set data.download=false \
    "${sets[@]}" ${extra[@]+"${extra[@]}"})"
  printf '%s\t%s\n' "$name" "$json" >> "$results"
done

table="$("$python" - "$results" <<'EOF'
import json, sys

print("| model | batch | train ex/s | bare step ex/s | loop efficiency | eval ex/s | eval / train "
      "| conventional ex/s | speedup | MFLOP/ex (train) | GFLOP/s | fp32 matmul GFLOP/s | of matmul |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for line in open(sys.argv[1]):
    name, text = line.rstrip("\n").split("\t", 1)
    r = json.loads(text)
    print(f"| {name} | {r['batch_size']} | {r['train_examples_per_s']:,.0f} | {r['bare_examples_per_s']:,.0f} "
          f"| {r['loop_efficiency']:.0%} | {r['eval_examples_per_s']:,.0f} | {r['eval_to_train']:.1f}x "
          f"| {r['baseline_train_examples_per_s']:,.0f} | {r['speedup']:.1f}x | {r['flops_per_example'] / 1e6:.2f} "
          f"| {r['achieved_gflops']:.1f} | {r['peak_gflops']:.0f} | {r['efficiency']:.0%} |")
rows = [json.loads(line.split("\t", 1)[1]) for line in open(sys.argv[1])]
r = rows[0]
print(f"\n{r['device']}, train.num_threads {r['threads']}, {r['precision']}; medians of {r['rounds']} interleaved rounds, "
      f"{r['steps']} timed steps per pipeline; 1-minute load average {max(x['load_average'] for x in rows):.2f} "
      f"at most.")
EOF
)"
echo "$table"
if [[ -n "$output" ]]; then
  printf '%s\n' "$table" > "$output"
  echo "bench: wrote $output" >&2
fi
