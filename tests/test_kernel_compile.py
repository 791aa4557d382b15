"""The CUDA kernels compile with NVIDIA's real compiler: ``tools/check_kernels.py`` run as a test.

Needs CuPy and its NVRTC library (``pip install cupy-cuda12x nvidia-cuda-nvrtc-cu12``), not a GPU; it
skips with the reason elsewhere (CI installs only ``.[test]``, which has neither).
"""

import importlib.util
from pathlib import Path

import pytest


def _load_tool():
    path = Path(__file__).parent.parent / "tools" / "check_kernels.py"
    spec = importlib.util.spec_from_file_location("check_kernels", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


check_kernels = _load_tool()
try:
    NVRTC, _ = check_kernels.load_nvrtc()
    REASON = None
except Exception as error:  # no CuPy, or CuPy without libnvrtc
    NVRTC, REASON = None, f"CuPy with NVRTC is not usable here ({type(error).__name__}: {error})"

pytestmark = pytest.mark.skipif(NVRTC is None, reason=REASON or "")


def test_every_kernel_of_the_package_compiles_for_float32_and_float64(capsys):
    assert check_kernels.main([]) == 0
    out = capsys.readouterr().out
    assert "tinygrad_rnn_lstm_pointwise_forward" in out and "float64" in out and " 0 failed" in out


@pytest.mark.parametrize(
    "body, complaint",
    [
        ("y = x ** 2", "must be a pointer"),  # Python's power; in C a dereference of a number
        ("x = x + 1; y = x", "expression must be a modifiable lvalue"),  # inputs are const in CuPy
        ("y = undefined_name * x", "undefined"),
        ("y = x * (1 / 2)", "integer division"),  # compiles, but is 0 in C
    ],
)
def test_the_check_fails_on_c_mistakes_a_python_evaluation_would_miss(body, complaint):
    definition = ("T x", "T y", body, "tinygrad_rnn_bad")
    failures = check_kernels.check({"tinygrad_rnn_bad": definition}, "90", NVRTC)
    assert failures and any(complaint in failure for failure in failures), failures
