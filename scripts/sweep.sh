#!/usr/bin/env bash
# scripts/sweep.sh: train a grid of runs with the seqclf CLI, then print the grouped comparison.
#
# The grid is cell x layers x direction x seed. Each point is one `seqclf train` run written
# under OUT; at the end `seqclf runs OUT --group-by model.cell,model.num_layers,model.bidirectional`
# prints one row per model with the mean +- std over the seeds. With -j N, N runs train at once,
# each with cores/N torch threads (so they do not fight over the cores).
#
# Usage: scripts/sweep.sh [-j N] [-o OUT] [-c CONFIG] [-e EPOCHS] [-- --set KEY=VALUE ...]
#   -j N       runs at once                      (env JOBS, default 1)
#   -o OUT     folder of the sweep's runs        (env OUT, default runs/sweep-<time>)
#   -c CONFIG  base config: a file or a shipped name (env CONFIG, default lstm: seqclf config list)
#   -e EPOCHS  epochs per run                    (env EPOCHS, default: the config's train.epochs)
#   -- ARGS    --set flags for every run, after the grid's own (a later --set wins)
# The grid, as space-separated lists in the environment:
#   CELLS="rnn lstm gru"  LAYERS="1 2"  DIRECTIONS="uni bi"  SEEDS="0 1 2"
# Also: EXTRA="--set k=v ..." (more --set flags, split on spaces), SEQCLF="seqclf" (the command,
# e.g. "python -m seqclf").
#
# Examples:
#   scripts/sweep.sh -j 2 -e 3 -- --set data.name=fashion_mnist --set data.root=/usr/share/datasets/fashion-mnist
#   CELLS="lstm gru" LAYERS=1 DIRECTIONS=uni SEEDS="0 1 2 3" OUT=runs/sweep scripts/sweep.sh -j 2
#   EXTRA="--set model.hidden_size=auto --set model.param_budget=50000" scripts/sweep.sh   # equal sizes
#   seqclf plot runs/sweep -o sweep.png                                                   # afterwards
#
# Each run's output goes to OUT/logs/<cell>-<layers>-<direction>-s<seed>.log. Needs bash >= 4.3.
# Exit status: 0 every run finished, 1 some run failed or was stopped (the table shows the rest),
# 2 bad usage or config (checked before anything trains).
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
die() { echo "sweep.sh: $*" >&2; exit 2; }

JOBS=${JOBS:-1}
OUT=${OUT:-runs/sweep-$(date +%Y%m%d-%H%M%S)}
CONFIG=${CONFIG:-lstm}  # the shipped lstm.yaml, found by name from any folder
EPOCHS=${EPOCHS:-}
CELLS=${CELLS:-rnn lstm gru}
LAYERS=${LAYERS:-1 2}
DIRECTIONS=${DIRECTIONS:-uni bi}
SEEDS=${SEEDS:-0 1 2}
EXTRA=${EXTRA:-}
SEQCLF=${SEQCLF:-seqclf}

while getopts "j:o:c:e:h" flag; do
    case $flag in
        j) JOBS=$OPTARG ;;
        o) OUT=$OPTARG ;;
        c) CONFIG=$OPTARG ;;
        e) EPOCHS=$OPTARG ;;
        h) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
read -r -a seqclf <<< "$SEQCLF"
read -r -a extra <<< "$EXTRA"
extra+=("$@")

[[ $JOBS =~ ^[1-9][0-9]*$ ]] || die "-j $JOBS: give a positive number of parallel runs"
[[ -z $EPOCHS || $EPOCHS =~ ^[1-9][0-9]*$ ]] || die "-e $EPOCHS: give a positive number of epochs"
for direction in $DIRECTIONS; do
    [[ $direction == uni || $direction == bi ]] || die "DIRECTIONS: '$direction' is not uni or bi"
done
[[ -n $CELLS && -n $LAYERS && -n $DIRECTIONS && -n $SEEDS ]] || die "CELLS, LAYERS, DIRECTIONS and SEEDS must not be empty"
cores=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
threads=$(( cores / JOBS > 0 ? cores / JOBS : 1 ))

# Fail fast (exit 2): the config with the grid's first point and every extra flag must validate.
read -r cell _ <<< "$CELLS"
read -r layers _ <<< "$LAYERS"
"${seqclf[@]}" config show --config "$CONFIG" --set "model.cell=$cell" --set "model.num_layers=$layers" \
    ${EPOCHS:+--set "train.epochs=$EPOCHS"} ${extra[@]+"${extra[@]}"} > /dev/null || exit 2
mkdir -p "$OUT/logs"

run_one() {  # cell layers direction seed: one `seqclf train`, its output in a log file
    local cell=$1 layers=$2 direction=$3 seed=$4 bidirectional=false status=0
    [[ $direction == bi ]] && bidirectional=true
    local log="$OUT/logs/$cell-$layers-$direction-s$seed.log"
    "${seqclf[@]}" train --config "$CONFIG" --set "model.cell=$cell" --set "model.num_layers=$layers" \
        --set "model.bidirectional=$bidirectional" --set "seed=$seed" --set "output.dir=$OUT" \
        --set "train.num_threads=$threads" ${EPOCHS:+--set "train.epochs=$EPOCHS"} \
        ${extra[@]+"${extra[@]}"} > "$log" 2>&1 &
    local pid=$!
    trap 'kill -TERM "$pid" 2>/dev/null || true' TERM  # seqclf saves last.pt and stops (exit 143)
    until wait "$pid"; do  # a trap interrupts `wait`: wait again until seqclf has exited
        status=$?
        kill -0 "$pid" 2>/dev/null || break
    done
    if (( status == 0 )); then
        echo "finished $cell layers=$layers $direction seed=$seed: $(grep -m 1 '^best val accuracy' "$log" | cut -d';' -f1)"
    else
        echo "FAILED   $cell layers=$layers $direction seed=$seed (exit $status): see $log" >&2
    fi
    return "$status"
}

trap 'echo "sweep.sh: stopping the runs (each saves its last.pt)" >&2; kill -TERM $(jobs -p) 2>/dev/null || true; wait; exit 130' INT TERM

total=0 running=0 failed=0
echo "sweep: CELLS=($CELLS) LAYERS=($LAYERS) DIRECTIONS=($DIRECTIONS) SEEDS=($SEEDS), $JOBS at once x $threads threads, into $OUT"
for cell in $CELLS; do
    for layers in $LAYERS; do
        for direction in $DIRECTIONS; do
            for seed in $SEEDS; do
                if (( running >= JOBS )); then
                    wait -n || failed=$((failed + 1))
                    running=$((running - 1))
                fi
                run_one "$cell" "$layers" "$direction" "$seed" &
                running=$((running + 1)) total=$((total + 1))
            done
        done
    done
done
while (( running > 0 )); do
    wait -n || failed=$((failed + 1))
    running=$((running - 1))
done

echo "sweep: $total runs in ${SECONDS}s, $failed failed; runs in $OUT"
"${seqclf[@]}" runs "$OUT" --group-by model.cell,model.num_layers,model.bidirectional
(( failed == 0 )) || exit 1
