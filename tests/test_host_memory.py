"""``host_memory.retain_freed_memory``: after it, a big array freed and allocated again reuses the
process's memory instead of faulting in fresh pages (counted with ``getrusage``), in a child process
so that the switch does not change the allocator of the test run itself."""

import subprocess
import sys
import textwrap

import pytest

from tinygrad_rnn.host_memory import retain_freed_memory

_FAULTS = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    from tinygrad_rnn.host_memory import retain_freed_memory
    applied = retain_freed_memory() if sys.argv[1] == "retain" else None
    def cycle():
        # as in a training update: big arrays kept until the backward pass, then all freed at once
        for _ in range(20):
            arrays = [np.ones(3 * 1024 * 1024 // 8) for _ in range(6)]  # 6 x 3 MB
            del arrays
    cycle()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    cycle()
    print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def _faults(mode: str) -> tuple[str, int]:
    result = subprocess.run(
        [sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True, timeout=120
    )
    applied, faults = result.stdout.split()
    return applied, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's (Linux)")
def test_freed_big_arrays_are_reused_without_page_faults_once_retained():
    applied, retained = _faults("retain")
    if applied != "True":
        pytest.skip("this C library has no mallopt (not glibc)")
    _, default = _faults("default")
    # 20 cycles of 18 MB (4,608 pages each) fault in fresh pages by default, a handful once retained.
    assert default > 20 * 1000
    assert retained < 200


def test_retain_freed_memory_refuses_a_negative_or_non_integer_threshold():
    with pytest.raises(ValueError, match="trim_threshold must be a non-negative int"):
        retain_freed_memory(-1)
    with pytest.raises(ValueError, match="trim_threshold must be a non-negative int"):
        retain_freed_memory(1.5)
