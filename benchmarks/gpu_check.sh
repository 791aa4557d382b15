#!/usr/bin/env bash
# The GPU check: one prepared command for a machine with an NVIDIA GPU.
#
#   bash benchmarks/gpu_check.sh            (from anywhere; PYTHON=python3.11 to pick an interpreter)
#
# 1. reports the GPU, the driver and the Python packages;
# 2. installs only what it cannot find: CuPy (pip install cupy-cuda12x) and pytest/hypothesis, and says so;
# 3. runs the CUDA test cases (every test parametrized over devices, the fused-kernel tests and the
#    device plumbing), with the CI hypothesis profile;
# 4. runs benchmarks/bench_gpu.py: RNN/LSTM/GRU forward + backward at small, medium and large sizes,
#    CuPy (fused and unfused cells) against NumPy on this machine, and prints its table last.
#
# Budget (worst case about 7.5 minutes): installs 90 s, tests 170 s (CuPy compiles each kernel on first
# use, so a fresh machine spends part of it compiling), benchmark 170 s.
# Exit status: 0 when the tests pass and the GPU gradients agree with the CPU's, 1 otherwise, 2 when
# there is no usable CuPy or GPU.

set -u
cd "$(dirname "$0")/.." || exit 2
PY=${PYTHON:-python}
START=$SECONDS
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export CI=true

section() { echo; echo "== $1 (at $((SECONDS - START)) s)"; }

section "machine"
if ! nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null; then
    # Without a GPU there is nothing to check, and no reason to install CuPy.
    echo "gpu_check: nvidia-smi finds no NVIDIA GPU (or no driver) here: nothing to check"
    exit 2
fi
$PY -c "import sys, numpy; print('python', sys.version.split()[0], '| numpy', numpy.__version__)" || exit 2

section "packages"
if ! $PY -c "import cupy" >/dev/null 2>&1; then
    echo "CuPy is not installed: trying 'pip install cupy-cuda12x' (at most 60 s)"
    timeout 60 $PY -m pip install -q cupy-cuda12x || echo "could not install CuPy (no network or no wheel)"
fi
if ! $PY -c "import pytest, hypothesis" >/dev/null 2>&1; then
    echo "pytest/hypothesis missing: trying 'pip install pytest hypothesis' (at most 30 s)"
    timeout 30 $PY -m pip install -q pytest hypothesis || echo "could not install pytest/hypothesis"
fi
if ! $PY -c "
import cupy
count = cupy.cuda.runtime.getDeviceCount()
name = cupy.cuda.runtime.getDeviceProperties(0)['name']
print('cupy', cupy.__version__, '|', count, 'GPU(s) |', name.decode() if isinstance(name, bytes) else name)
"; then
    echo "gpu_check: no usable CuPy/GPU here, nothing to check (install: pip install -e \".[cuda]\")"
    exit 2
fi
$PY -c "import tinygrad_rnn as tg; assert tg.cuda.is_available(), 'tg.cuda.is_available() is False'" || exit 2

section "CUDA tests (at most 170 s)"
timeout 170 $PY -m pytest -q -p no:cacheprovider -k "cuda or fused or device or portability" tests
TESTS=$?
if [ $TESTS -eq 0 ]; then TEST_SUMMARY="passed"; else TEST_SUMMARY="FAILED (pytest status $TESTS)"; fi

section "benchmark (at most 170 s)"
echo "gpu_check: CUDA tests $TEST_SUMMARY"
timeout 170 $PY benchmarks/bench_gpu.py --device cuda --budget 130
BENCH=$?
if [ $TESTS -ne 0 ] || [ $BENCH -ne 0 ]; then
    exit 1
fi
exit 0
