#!/usr/bin/env bash
# One check of a machine with a GPU (or without: it runs on the CPU too), in under 10 minutes:
# prints the device, trains ResNet-20 with the `fast` recipe to its best test accuracy on the data
# present, and writes images/s, the best accuracy and, on the full CIFAR-10, the time to 91% to
# benchmarks/results/gpu_check.json (see benchmarks/gpu_check.py and benchmarks/README.md).
#
#   unset CNNBOOK_DATA             # the full data set: Keras' copy in ~/.keras/datasets
#   benchmarks/gpu_check.sh        # defaults: 40 epochs of batches of 512
#   benchmarks/gpu_check.sh --epochs 1 --train-images 256 --out /tmp/check.json   # a smoke test
#
# Options go to benchmarks/gpu_check.py (--help lists them). PYTHON picks the interpreter
# (default: the repository's .venv, else python3).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
    if [[ -x "$root/.venv/bin/python" ]]; then python="$root/.venv/bin/python"; else python=python3; fi
fi
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
else
    echo "nvidia-smi: not found (no NVIDIA driver on this machine)"
fi
cd "$root"
exec "$python" benchmarks/gpu_check.py "$@"
