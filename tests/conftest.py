"""Shared test setup: hypothesis profiles, device parametrization and a fixed seed per test."""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import tinygrad_rnn as tg

# The default profile is the same for everyone, with or without CI set: derandomized (a fixed seed per
# test, no example database), so `python -m pytest -q` on a fresh clone runs exactly what CI runs, and
# small enough for CI's budget on 2 cores. Random search is only on request:
#   HYPOTHESIS_PROFILE=dev pytest tests/    random, a few more examples
#   HYPOTHESIS_PROFILE=long pytest tests/   random, 1000 examples per test (HYPOTHESIS_MAX_EXAMPLES sets it)
settings.register_profile(
    "ci",
    max_examples=15,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev",
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "long",
    max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "1000")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

if os.environ.get("TINYGRAD_RNN_FAKE_CUDA"):
    # Run every "cuda" case on the CuPy stand-in (two fake GPUs): a check of the device plumbing
    # in CPU CI, not of a GPU. See tests/fake_cupy.py.
    import fake_cupy

    fake_cupy.install(pytest.MonkeyPatch(), device_count=2)


def available_devices() -> list:
    """'cpu' always; 'cuda' as a case that skips with the reason when no GPU is usable."""
    reason = None
    if not tg.cuda.is_available():
        if tg.backend._cupy is None:
            reason = "no CUDA GPU: CuPy is not installed (pip install -e '.[cuda]')"
        else:
            reason = "no CUDA GPU: CuPy is installed but sees no GPU"
    cuda = pytest.param("cuda", marks=pytest.mark.skipif(reason is not None, reason=reason or ""))
    return ["cpu", cuda]


@pytest.fixture(params=available_devices())
def device(request):
    """Run a test once per device; the CUDA case skips with a stated reason on machines without a GPU."""
    return request.param


@pytest.fixture(autouse=True)
def _seed():
    tg.manual_seed(0)
    np.random.seed(0)
    # A GPU index check a test left pending (read at the next host read) must not fail the next test.
    tg.backend._deferred.clear()
    yield
