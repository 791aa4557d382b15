#!/usr/bin/env bash
# The GPU check: one prepared command for a machine with an NVIDIA GPU and CuPy already installed.
#
#   bash benchmarks/gpu_check.sh [LOG]      (from anywhere; PYTHON=... picks the interpreter, default python3)
#
# It installs nothing and needs no network: it uses the CuPy that imports (cupy-cuda12x or cupy-cuda13x)
# and the package from this checkout (PYTHONPATH), and says what is missing instead of fetching it.
# On a machine without CuPy run `pip install -e ".[cuda]"` (CUDA 12) or `".[cuda13]"` (CUDA 13) first.
#
# Phases, each under its own timeout, each printed as it runs (budget: at most 7.5 minutes in all, 435 s
# of timeouts; first results within the first minute); a failing phase does not stop the next one:
#   1. machine      (at most  60 s): GPU, driver, Python packages, and a trial run (tg.cuda.is_available());
#   2. kernels      (at most  45 s): tools/check_kernels.py, every CUDA kernel compiled with NVRTC;
#   3. CUDA tests   (at most 150 s): the device-parametrized "cuda" cases, fused-kernel and device tests;
#   4. benchmark    (at most 180 s): benchmarks/bench_gpu.py --budget 140, CuPy vs NumPy and vs PyTorch's
#      cuDNN layers when torch imports; every number printed as it is measured.
# The last line is one summary. The whole output also goes to a log file: the first argument, else
# $GPU_CHECK_LOG, else $OUT/gpu_check.log when OUT is set, else gpu_check.log in the checkout.
# Exit status: 0 when every phase passed, 1 when a phase failed or timed out, 2 when no usable GPU.

set -u
cd "$(dirname "$0")/.." || exit 2
PY=${PYTHON:-python3}
START=$SECONDS
LOG=${1:-${GPU_CHECK_LOG:-${OUT:+$OUT/gpu_check.log}}}
LOG=${LOG:-gpu_check.log}
mkdir -p "$(dirname "$LOG")" 2>/dev/null
: > "$LOG" || LOG=/dev/null
exec > >(tee -a "$LOG") 2>&1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export CI=true

section() { echo; echo "== $1 (at $((SECONDS - START)) s)"; }
# status NAME RC: a word for a phase's exit status (124/137: killed by its timeout)
status() { case $1 in 0) echo passed ;; 124|137) echo "TIMED OUT" ;; *) echo "FAILED ($1)" ;; esac; }
finish() {
    echo
    echo "gpu_check SUMMARY: machine=$MACHINE kernels=$KERNELS tests=$TESTS bench=$BENCH" \
        "total=$((SECONDS - START))s log=$LOG"
    exit "$1"
}
MACHINE="not run"; KERNELS="not run"; TESTS="not run"; BENCH="not run"

section "machine (at most 60 s)"
echo "gpu_check: log in $LOG"
if ! command -v "$PY" >/dev/null 2>&1; then
    echo "gpu_check: no '$PY' here; set PYTHON to an interpreter"
    MACHINE="no python"; finish 2
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>/dev/null \
    || echo "gpu_check: nvidia-smi is not available (continuing: CuPy decides)"
timeout 60 "$PY" - <<'PYEOF'
import sys
import numpy
print("python", sys.version.split()[0], "| numpy", numpy.__version__)
try:
    import cupy
except Exception as error:
    print(f"gpu_check: CuPy does not import ({type(error).__name__}: {error});"
          ' install it with: pip install -e ".[cuda]" (CUDA 12) or ".[cuda13]" (CUDA 13)')
    sys.exit(2)
try:
    runtime = cupy.cuda.runtime.runtimeGetVersion()
    count = cupy.cuda.runtime.getDeviceCount()
    print(f"cupy {cupy.__version__} | CUDA runtime {runtime // 1000}.{runtime % 1000 // 10} | {count} GPU(s)")
except Exception as error:
    print(f"gpu_check: CuPy imports but sees no GPU ({type(error).__name__}: {error})")
    sys.exit(2)
try:
    import torch
    print(f"torch {torch.__version__} | torch.cuda.is_available() = {torch.cuda.is_available()}")
except Exception as error:
    print(f"torch: not importable ({type(error).__name__}), so no cuDNN column")
for name in ("pytest", "hypothesis", "pytest_timeout"):
    try:
        module = __import__(name)
        print(f"{name} {getattr(module, '__version__', '')}")
    except Exception:
        print(f"{name}: missing")
import tinygrad_rnn as tg
from tinygrad_rnn import backend
usable = tg.cuda.is_available()  # the trial run: an elementwise kernel and a matmul on GPU 0
if not usable:
    print(f"gpu_check: tg.cuda.is_available() is False: {backend._cuda_trial()[1]}")
    sys.exit(2)
print(f"tg.cuda.is_available() = True on {tg.cuda.get_device_name(0)}")
PYEOF
RC=$?
MACHINE=$(status $RC)
if [ $RC -ne 0 ]; then
    echo "gpu_check: no usable CuPy/GPU here, nothing more to check"
    finish 2
fi
ARCH=$(timeout 15 "$PY" -c "import cupy; print(cupy.cuda.Device(0).compute_capability)" 2>/dev/null || echo 90)

section "kernels: every CUDA kernel compiled with NVRTC for compute_$ARCH (at most 45 s)"
timeout 45 "$PY" tools/check_kernels.py --arch "$ARCH"
KERNELS=$(status $?)

section "CUDA tests (at most 150 s)"
if "$PY" -c "import pytest, hypothesis" >/dev/null 2>&1; then
    PER_TEST=""
    if "$PY" -c "import pytest_timeout" >/dev/null 2>&1; then PER_TEST="--timeout=60"; fi
    # The cuda cases of every device-parametrized test, the fused kernels and the device plumbing.
    timeout 150 "$PY" -m pytest -q -p no:cacheprovider -rfE $PER_TEST \
        -k "cuda or fused or device or portability or kernel" tests
    TESTS=$(status $?)
else
    echo "gpu_check: pytest or hypothesis is missing: tests not run (pip install -e \".[test]\")"
    TESTS="not run (no pytest)"
fi

section "benchmark (at most 180 s)"
timeout 180 "$PY" benchmarks/bench_gpu.py --device cuda --budget 140
BENCH=$(status $?)

if [ "$KERNELS" = passed ] && [ "$TESTS" = passed ] && [ "$BENCH" = passed ]; then
    finish 0
fi
finish 1
