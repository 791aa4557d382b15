"""``cupy.ElementwiseKernel`` for the CuPy stand-in: the kernel's C body evaluated as NumPy expressions.

This is what lets CPU tests check the formulas written in the fused kernels of ``fused_ops.py``: the
same C text that CuPy compiles on a GPU is read here, statement by statement, over NumPy arrays.
"""

from __future__ import annotations

import ast
import re
from typing import Any, ClassVar

import numpy as np
from fake_cupy import FakeArray, _single_device, _unwrap


class ElementwiseKernel:
    """``cupy.ElementwiseKernel`` evaluated on the host: the C body is read as NumPy expressions.

    Supported C: statements ``T name = expression;`` and ``name = expression;`` whose expressions use
    + - * /, parentheses, numbers, ``exp``, ``tanh``, ``log``, ``sqrt`` and the parameters. Anything
    else (branches, loops, casts, ``?:``) raises, so kernels stay inside what this check can read.
    Arithmetic follows C, not Python: an integer literal is an ``int``, and ``int / int`` truncates
    toward zero (``1 / 2`` is 0), so a formula that only works with Python's division fails here too.
    """

    _DECLARATION = re.compile(r"^(?:const\s+)?(?:T|float|double)\s+([A-Za-z]\w*)\s*=\s*(.+)$", re.S)
    _ASSIGNMENT = re.compile(r"^([A-Za-z]\w*)\s*=\s*(.+)$", re.S)
    _EXPRESSION = re.compile(r"^[\w\s.+\-*/()]+$")
    _MATH: ClassVar[dict] = {"exp": np.exp, "tanh": np.tanh, "log": np.log, "sqrt": np.sqrt}

    def __init__(self, fake: Any, in_params: str, out_params: str, operation: str, name: str) -> None:
        self.fake, self.name = fake, name
        self.inputs = self._parameters(in_params)
        self.outputs = self._parameters(out_params)
        reserved = {"i", "n"} & set(self.inputs + self.outputs)
        if reserved or any(p.startswith("_") for p in self.inputs + self.outputs):
            raise ValueError(f"fake cupy: kernel {name}: parameter names {reserved} are reserved by CuPy")
        self.statements = []
        for statement in operation.split(";"):
            statement = statement.strip()
            if not statement:
                continue
            match = self._DECLARATION.match(statement) or self._ASSIGNMENT.match(statement)
            if match is None or not self._EXPRESSION.match(match.group(2)):
                raise NotImplementedError(
                    f"fake cupy: kernel {name}: cannot read the statement {statement!r}"
                )
            tree = ast.parse(match.group(2).strip(), mode="eval").body
            self._check_tree(tree, statement)
            self.statements.append((match.group(1), tree))
        self.calls = 0

    _OPERATORS: ClassVar[tuple] = (ast.Add, ast.Sub, ast.Mult, ast.Div)

    def _check_tree(self, node: ast.AST, statement: str) -> None:
        """Refuse any expression outside the C subset this evaluator reads with C's meaning."""
        if isinstance(node, ast.BinOp) and isinstance(node.op, self._OPERATORS):
            self._check_tree(node.left, statement)
            self._check_tree(node.right, statement)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            self._check_tree(node.operand, statement)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in self._MATH:
            if node.keywords or len(node.args) != 1:
                raise NotImplementedError(f"fake cupy: kernel {self.name}: cannot read {statement!r}")
            self._check_tree(node.args[0], statement)
        elif not isinstance(node, ast.Name) and not (
            isinstance(node, ast.Constant) and type(node.value) in (int, float)
        ):
            raise NotImplementedError(f"fake cupy: kernel {self.name}: cannot read {statement!r}")

    def _evaluate(self, node: ast.AST, environment: dict) -> Any:
        """The value of a checked expression with C's rules: int op int stays int, int / int truncates."""
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in environment:
                raise NameError(f"fake cupy: kernel {self.name}: {node.id!r} is not declared")
            return environment[node.id]
        if isinstance(node, ast.UnaryOp):
            value = self._evaluate(node.operand, environment)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.Call):
            return self._MATH[node.func.id](self._evaluate(node.args[0], environment))
        left, right = self._evaluate(node.left, environment), self._evaluate(node.right, environment)
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        if type(left) is int and type(right) is int:
            if right == 0:
                raise ZeroDivisionError(f"fake cupy: kernel {self.name}: integer division by zero")
            quotient = abs(left) // abs(right)  # C truncates toward zero
            return quotient if (left >= 0) == (right >= 0) else -quotient
        return left / right

    @staticmethod
    def _parameters(spec: str) -> list[str]:
        names = []
        for parameter in spec.split(","):
            words = parameter.split()
            if len(words) != 2 or words[0] != "T":
                raise ValueError(f"fake cupy: parameters must be spelled 'T name', got {parameter!r}")
            names.append(words[1])
        return names

    def __call__(self, *arrays: Any) -> Any:
        if len(arrays) not in (len(self.inputs), len(self.inputs) + len(self.outputs)):
            raise TypeError(
                f"fake cupy: kernel {self.name} takes {len(self.inputs)} inputs, optionally followed by "
                f"all {len(self.outputs)} outputs; got {len(arrays)} arrays"
            )
        devices: set = set()
        hosts = _unwrap(list(arrays), devices, f"kernel {self.name}")
        if not all(isinstance(a, FakeArray) for a in arrays):
            raise TypeError(f"fake cupy: kernel {self.name}: every argument must be a device array")
        device = _single_device(devices, self.fake.current, f"kernel {self.name}")
        dtypes = {h.dtype for h in hosts}
        if len(dtypes) != 1:
            raise TypeError(f"fake cupy: kernel {self.name}: type T bound to several dtypes {dtypes}")
        inputs = hosts[: len(self.inputs)]
        shape = np.broadcast_shapes(*(h.shape for h in inputs))
        environment: dict[str, Any] = dict(zip(self.inputs, np.broadcast_arrays(*inputs)))
        with np.errstate(all="ignore"):
            for target, expression in self.statements:
                value = self._evaluate(expression, environment)
                environment[target] = np.asarray(value, dtype=inputs[0].dtype)
        self.calls += 1
        if len(arrays) == len(self.inputs):
            results = tuple(
                FakeArray(np.array(np.broadcast_to(environment[o], shape)), device) for o in self.outputs
            )
        else:
            results = arrays[len(self.inputs) :]
            if any(out.shape != shape for out in results):
                raise ValueError(f"fake cupy: kernel {self.name}: Out shape is mismatched")
            for name, out in zip(self.outputs, results):
                out._host[...] = environment[name]
        return results[0] if len(results) == 1 else results
