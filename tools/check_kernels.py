"""Compile every CUDA kernel of tinygrad_rnn with NVIDIA's real compiler (NVRTC), without a GPU.

The tests run the kernels' C bodies on the CPU through the CuPy stand-in, which reads them with C's
arithmetic but cannot see what only a C compiler sees: a typo in a declaration, a Python-only spelling
(``x ** 2`` compiles to a pointer dereference and fails), an assignment to an input, a name clash with a
CUDA builtin. This script builds, for each kernel and for float32 and float64, the same shape of source
CuPy's ``ElementwiseKernel`` builds (inputs read as ``const T`` values, outputs as ``T &`` references,
the body followed by the ";" CuPy adds, in a grid-stride loop over ``i``) and compiles it with NVRTC
for a current architecture. It also refuses integer-literal division in a body (``1 / 2`` is 0 in
C), which compiles silently.

It needs CuPy and NVRTC, not a GPU or a driver::

    pip install cupy-cuda12x nvidia-cuda-nvrtc-cu12      # in a scratch virtual environment
    PYTHONPATH=. python tools/check_kernels.py [--arch 90]

Exit status 0 when every kernel compiles, 1 when one does not, 2 when CuPy or NVRTC is missing.
Kernels are found as the package's kernel definitions (module-level 4-tuples ``(inputs, outputs, body,
name)`` passed to ``backend.fused_kernel``); a ``ElementwiseKernel``/``RawKernel`` built anywhere but
``backend.py`` is reported too, since this check could not see it.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import re
import sys
from pathlib import Path

import tinygrad_rnn

C_TYPES = {"float32": "float", "float64": "double"}
INTEGER_DIVISION = re.compile(r"(?<![\w.])\d+\s*/\s*\d+(?![\w.])")


def kernel_definitions() -> dict[str, tuple[str, str, str, str]]:
    """name -> (inputs, outputs, body, name) for every kernel definition in the package's modules."""
    found = {}
    for module_info in pkgutil.walk_packages(tinygrad_rnn.__path__, "tinygrad_rnn."):
        try:
            module = importlib.import_module(module_info.name)
        except ImportError:  # an optional dependency (matplotlib) missing: no kernels live there
            continue
        for value in vars(module).values():
            if (
                isinstance(value, tuple)
                and len(value) == 4
                and all(isinstance(part, str) for part in value)
                and value[3].startswith("tinygrad_rnn_")
            ):
                found[value[3]] = value
    return found


def kernels_built_elsewhere() -> list[str]:
    """Places outside backend.py that construct a CuPy kernel (this check would not see them)."""
    root = Path(tinygrad_rnn.__file__).parent
    places = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "backend.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\b(ElementwiseKernel|RawKernel|RawModule|ReductionKernel)\s*\(", line):
                places.append(f"{path.relative_to(root.parent)}:{number}")
    return places


def _parameters(spec: str) -> list[tuple[str, str]]:
    pairs = []
    for parameter in spec.split(","):
        words = parameter.split()
        if len(words) != 2:
            raise ValueError(f"cannot read the kernel parameter {parameter!r}")
        pairs.append((words[0], words[1]))
    return pairs


def elementwise_source(definition: tuple[str, str, str, str], dtype: str) -> str:
    """CUDA source shaped as CuPy's ElementwiseKernel code for ``definition`` with T = ``dtype``."""
    inputs, outputs, body, name = definition
    arguments, reads = [], []
    for type_name, parameter in _parameters(inputs):
        arguments.append(f"const {type_name}* _raw_{parameter}")
        reads.append(f"const {type_name} {parameter} = _raw_{parameter}[i];")
    for type_name, parameter in _parameters(outputs):
        arguments.append(f"{type_name}* _raw_{parameter}")
        reads.append(f"{type_name} &{parameter} = _raw_{parameter}[i];")
    declarations = "\n        ".join(reads)
    return f"""typedef {C_TYPES[dtype]} T;
extern "C" __global__ void {name}({", ".join(arguments)}, const long long n) {{
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {{
        {declarations}
        {body};
    }}
}}
"""


def compile_source(nvrtc, source: str, name: str, arch: str) -> str | None:
    """None when NVRTC compiles ``source`` for ``compute_<arch>``, else its log."""
    program = nvrtc.createProgram(source, f"{name}.cu", [], [])
    try:
        try:
            nvrtc.compileProgram(program, [f"-arch=compute_{arch}", "-std=c++17"])
        except nvrtc.NVRTCError as error:
            return f"{error}\n{nvrtc.getProgramLog(program)}"
        nvrtc.getPTX(program)
        return None
    finally:
        nvrtc.destroyProgram(program)


def check(definitions: dict, arch: str, nvrtc) -> list[str]:
    """Failures (one message each) of compiling every definition for float32 and float64."""
    failures = []
    for name, definition in sorted(definitions.items()):
        division = INTEGER_DIVISION.search(definition[2])
        if division:
            found = division.group(0)
            failures.append(f"{name}: integer division {found!r} in the body (0 or truncated in C)")
        for dtype in C_TYPES:
            log = compile_source(nvrtc, elementwise_source(definition, dtype), name, arch)
            status = "ok" if log is None else "FAILED"
            print(f"  {name:<45} {dtype:<8} compute_{arch}: {status}", flush=True)
            if log is not None:
                failures.append(f"{name} ({dtype}):\n{log}")
    return failures


def load_nvrtc():
    """CuPy's NVRTC binding and its version, or raise ImportError/OSError saying what is missing."""
    from cupy_backends.cuda.libs import nvrtc

    return nvrtc, nvrtc.getVersion()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="90", help="compute capability to compile for (90: H100/H200)")
    args = parser.parse_args(argv)
    try:
        nvrtc, version = load_nvrtc()
    except Exception as error:  # ImportError without CuPy, OSError/RuntimeError without libnvrtc
        print(f"check_kernels: CuPy with NVRTC is not usable here ({type(error).__name__}: {error})")
        return 2
    definitions = kernel_definitions()
    print(f"check_kernels: NVRTC {version[0]}.{version[1]}, {len(definitions)} kernels, float32 and float64")
    failures = check(definitions, args.arch, nvrtc)
    elsewhere = kernels_built_elsewhere()
    if elsewhere:
        failures.append("kernels built outside backend.py, not checked: " + ", ".join(elsewhere))
    for failure in failures:
        print(f"FAILED {failure}")
    compiled = len(definitions) * len(C_TYPES) - len(failures)
    print(f"check_kernels: {compiled} compiled, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
