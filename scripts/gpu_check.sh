#!/usr/bin/env bash
# The GPU check (issue 16): what a CPU cannot show, in at most 5 minutes on one CUDA GPU.
#
#   bash scripts/gpu_check.sh                  # uses .venv/bin/python; installs nothing
#   PYTHON=/path/to/python bash scripts/gpu_check.sh
#
# On tiny generated IDX data (in a temporary folder): train -> eval (the same accuracy), an interrupt
# mid-epoch (SIGINT) and resume (bitwise with train.deterministic=true), fp16 and bf16 runs (finite
# metrics, strict JSON), fused/cell/scratch parity at docs/devices.md's tolerances, torchrun over nccl
# (one rank per GPU; a rank killed mid-run must end the other with "lost contact"), and `seqclf bench`
# for the standard table's four models. Prints one summary table (and the bench table for
# docs/devices.md); exit 0: every check passed, 1: a check failed, 2: no CUDA here (nothing checked).
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$here/.venv/bin/python}"
if ! command -v "$python" > /dev/null 2>&1; then
  echo "gpu_check: no Python at $python; create the venv (README: Install) or set PYTHON=/path/to/python" >&2
  exit 2
fi
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
"$python" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 3)"
found=$?
if [[ $found -eq 3 ]]; then
  echo "gpu_check: no CUDA device visible to torch here (torch.cuda.is_available() is False;" \
       "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset}); nothing was checked. Run it on a machine" \
       "with an NVIDIA GPU." >&2
  exit 2
elif [[ $found -ne 0 ]]; then
  echo "gpu_check: $python cannot import torch (exit $found); install the project first" >&2
  exit 2
fi
# the checks keep their own budget (280 s) and report what they did not reach; this is the backstop
exec timeout --signal=INT 330 "$python" "$here/scripts/gpu_check.py" "$@"
