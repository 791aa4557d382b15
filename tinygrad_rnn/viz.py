"""The tape drawn: the graph behind a tensor as Graphviz DOT text, and SVG/PNG through ``graphviz``.

``to_dot(loss, params=model)`` walks the recorded nodes from ``loss.grad_fn`` back to the leaves (an
iterative walk over ``Function.parents``) and returns DOT text; ``render(loss, "tape", format="svg")``
writes a figure with the optional ``graphviz`` package (``pip install "tinygrad_rnn[viz]"``) and its
``dot`` program. ``graph(loss)`` returns the drawn nodes and edges as data, which is what the tests read.

What the drawing shows:

* every recorded op as a box named by its op (``TanhAddMatMul``, ``MatMul``, ``Add``, ...); an edge
  from an output of a multi-output op (an ``Unbind``'s step t) is labelled with that output's index;
* leaves (tensors that collect ``.grad``) as ellipses, labelled with their parameter names when
  ``params`` is given (a dict name -> tensor, as ``dict(model.named_parameters())``, or a module);
* recurrent steps as clusters: the recurrent layers unbind their input projection into one slice per
  step (an ``Unbind`` node, output t feeds step t), and each node is placed in a step from the tape
  alone (see :func:`graph`);
* the ``detach`` cut: an input that needs no gradient entering a step (a detached or zero initial
  state) is drawn as a dashed "detached" leaf: no gradient flows past it, so the tape ends there;
* the truncation window: ``window=k2`` colours the k2 most recent steps of each sequence (the steps the
  backward pass reaches with truncation depth k2) and greys the older ones.

The drawing reads only the public node attributes ``name``, ``seq``, ``parents``, ``parent_indices`` and
``n_outputs``, so it works for any op, fused or not (``nn.unfused()`` records the plain steps).
Nodes keep their parents after ``backward()``, so a tape can be drawn before or after it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .autograd import Function
from .tensor import Tensor

STEP_OPS = ("Unbind",)


@dataclass(frozen=True)
class DrawnNode:
    """One box or ellipse of the drawing.

    Attributes:
        id: the DOT identifier: ``n<seq>`` for an op node, ``leaf<k>`` for a leaf, ``cut<seq>_<i>`` for
            the constant input ``i`` of node ``seq``, ``out<k>`` for the k-th drawn tensor.
        label: the text drawn (op name, parameter name and shape, ...).
        kind: "op", "leaf", "cut", "constant" or "output".
        step: (sequence, t) for a node of recurrent step t of a sequence, else None; sequences are
            numbered 0, 1, ... in the order their ``Unbind`` was recorded.
    """

    id: str
    label: str
    kind: str
    step: tuple[int, int] | None = None


@dataclass
class TapeGraph:
    """The drawn graph: nodes by id, edges (source id, target id, label) in the direction of the
    forward computation, and the steps of each sequence in the order they ran."""

    nodes: dict[str, DrawnNode] = field(default_factory=dict)
    edges: list[tuple[str, str, str]] = field(default_factory=list)
    steps: dict[int, list[int]] = field(default_factory=dict)
    window: int | None = None

    def step_of(self, node_id: str) -> tuple[int, int] | None:
        """The (sequence, t) of a drawn node, None outside the recurrent steps."""
        return self.nodes[node_id].step

    def in_window(self, step: tuple[int, int]) -> bool:
        """Whether a step lies in the last ``window`` steps of its sequence (always, without a window)."""
        if self.window is None:
            return True
        order = self.steps[step[0]]
        return order.index(step[1]) >= len(order) - self.window


def graph(
    tensors: Tensor | Sequence[Tensor],
    params: Mapping[str, Tensor] | Any = None,
    show_constants: bool = False,
    window: int | None = None,
    step_ops: Iterable[str] = STEP_OPS,
) -> TapeGraph:
    """The nodes and edges behind ``tensors`` (a tensor or a sequence of them), grouped by step.

    Step inference, from the tape alone:

    1. The outputs of a node named in ``step_ops`` (``Unbind``) seed a
       sequence: output t is step t. Steps are ordered by when they ran (the first node that consumes
       the slice), so a reverse-direction layer's steps run T-1 ... 0.
    2. Forward, in creation order: a node's step is the newest step among its inputs (a later
       sequence wins over an earlier one, so a second layer starts its own steps).
    3. Backward: a node whose consumers all lie in one step s and take its slice, and whose own
       step is older (or none), belongs to s: the recurrent product W_hh h_{t-1} that opens step t.
       A node with no step of its own (a weight transposed inside the loop) also follows consumers
       pulled in this way. A node that takes a slice itself, and one used by several steps (the
       transposed W_hh of a layer), stays where it is.
    4. The newest step of a sequence would otherwise also hold everything computed from the whole
       sequence afterwards (the stacked outputs, the read-out, the loss): it keeps as many nodes, in
       creation order, as the step before it holds, since every step of a loop records the same ops.
       A sequence of one step keeps the nodes that consume its slice and those of rule 3.

    Steps exist only where a slice op was recorded: a loop over a cell (``nn.RNNCell``) fed slices of
    a tensor that needs no gradient records no ``Unbind`` (the slicing of a constant is not on the
    tape), and its nodes are drawn without step clusters.

    Args:
        tensors: what to draw back from; each must have been produced by a recorded op or be a
            leaf that requires grad.
        params: names for leaves: a mapping name -> tensor (``dict(model.named_parameters())``) or a
            module (its ``named_parameters()``). Unnamed leaves are labelled by their shape.
        show_constants: also draw inputs that need no gradient outside the steps (data, targets).
            Inside a step they are always drawn: there they are the detach cut.
        window: truncation depth k2: the last k2 steps of each sequence are marked as the ones the
            backward pass reaches; None marks none.
        step_ops: names of the ops whose outputs seed the steps.

    Raises:
        TypeError: ``tensors`` is not a Tensor (or a sequence of them), or ``params`` is neither a
            mapping of tensors nor a module.
        ValueError: a tensor has no graph to draw (it does not require grad), or ``window`` < 1.
    """
    roots = _as_tensor_list(tensors)
    names = _parameter_names(params)
    if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
        raise ValueError(f"viz: window must be a positive int (the truncation depth k2), got {window!r}")
    step_ops = tuple(step_ops)

    nodes, consumers = _collect(roots)
    ordered = sorted(nodes, key=lambda node: node.seq)
    sequences, rank = _seed_sequences(ordered, consumers, step_ops)
    steps = _infer_steps(ordered, consumers, sequences, rank)

    drawn = TapeGraph(window=window)
    for number, seeds in enumerate(sequences):
        order = sorted(range(len(seeds)), key=lambda t: seeds[t])
        drawn.steps[number] = order
    leaf_ids: dict[int, str] = {}
    for node in ordered:
        node_id = f"n{node.seq}"
        drawn.nodes[node_id] = DrawnNode(node_id, node.name, "op", steps.get(node))
        indices = node.parent_indices
        for position, parent in enumerate(node.parents):
            if parent is None:
                if steps.get(node) is None and not show_constants:
                    continue
                kind = "cut" if steps.get(node) is not None else "constant"
                source = f"cut{node.seq}_{position}"
                label = "no gradient\n(detach cut)" if kind == "cut" else "constant"
                drawn.nodes[source] = DrawnNode(source, label, kind, steps.get(node))
                drawn.edges.append((source, node_id, ""))
                continue
            if isinstance(parent, Function):
                index = indices[position] if indices is not None else 0
                label = f"[{index}]" if parent.n_outputs > 1 else ""
                drawn.edges.append((f"n{parent.seq}", node_id, label))
                continue
            source = _leaf_id(parent, leaf_ids, drawn, names)
            drawn.edges.append((source, node_id, ""))
    for number, root in enumerate(roots):
        out_id = f"out{number}"
        drawn.nodes[out_id] = DrawnNode(out_id, f"output\n{_shape(root)}", "output")
        node = root.grad_fn
        source = f"n{node.seq}" if node is not None else _leaf_id(root, leaf_ids, drawn, names)
        drawn.edges.append((source, out_id, ""))
    return drawn


def to_dot(
    tensors: Tensor | Sequence[Tensor],
    params: Mapping[str, Tensor] | Any = None,
    show_constants: bool = False,
    window: int | None = None,
    step_ops: Iterable[str] = STEP_OPS,
    title: str = "",
) -> str:
    """The graph behind ``tensors`` as Graphviz DOT text (arguments as :func:`graph`).

    Op nodes are boxes named by their op, parameters ellipses named by ``params``, detach cuts dashed
    red ellipses, each recurrent step a cluster "step t" (drawn grey when it lies outside the
    truncation ``window``). Edges point along the forward computation, from inputs to outputs.
    """
    drawn = graph(tensors, params, show_constants, window, step_ops)
    lines = ["digraph tape {", '  rankdir="BT";', '  node [fontname="Helvetica", fontsize=10];']
    if title:
        lines.append(f'  label="{_escape(title)}"; labelloc="t";')
    clusters: dict[tuple[int, int], list[DrawnNode]] = {}
    for node in drawn.nodes.values():
        if node.step is None:
            lines.append("  " + _node_line(node, drawn))
        else:
            clusters.setdefault(node.step, []).append(node)
    several = len({step[0] for step in clusters}) > 1
    for sequence, order in drawn.steps.items():
        for t in order:
            members = clusters.get((sequence, t))
            if not members:
                continue
            inside = drawn.in_window((sequence, t))
            label = f"sequence {sequence}, step {t}" if several else f"step {t}"
            if drawn.window is not None:
                label += " (in the window)" if inside else " (outside the window)"
            style = 'style="rounded,filled"; fillcolor="#eef4fb"' if inside else 'style="rounded,dashed"'
            lines.append(f"  subgraph cluster_s{sequence}_t{t} {{")
            lines.append(f'    label="{label}"; {style};')
            lines.extend("    " + _node_line(node, drawn) for node in members)
            lines.append("  }")
    for source, target, label in drawn.edges:
        attributes = []
        if label:
            attributes.append(f'label="{label}"')
        if drawn.nodes[source].kind in ("cut", "constant"):
            attributes.append("style=dashed")
        suffix = f" [{', '.join(attributes)}]" if attributes else ""
        lines.append(f"  {source} -> {target}{suffix};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(
    tensors: Tensor | Sequence[Tensor],
    path: str,
    format: str = "svg",
    params: Mapping[str, Tensor] | Any = None,
    **options: Any,
) -> str:
    """Write the drawing of the graph behind ``tensors`` to ``path`` (the extension is added when it is
    missing) as ``format`` ("svg", "png", "pdf", ...), with the ``graphviz`` package and its ``dot``
    program; other keywords as :func:`to_dot`. Returns the written file's path.

    Raises:
        ImportError: the ``graphviz`` package is not installed (``pip install "tinygrad_rnn[viz]"``).
        RuntimeError: its ``dot`` program is not on the PATH (install Graphviz, e.g.
            ``apt-get install graphviz``); :func:`to_dot` needs neither.
    """
    try:
        import graphviz
    except ImportError as error:
        raise ImportError(
            'viz.render needs the graphviz package: pip install "tinygrad_rnn[viz]" (or pip install '
            "graphviz); viz.to_dot writes the DOT text without it"
        ) from error
    text = to_dot(tensors, params=params, **options)
    outfile = path if path.endswith("." + format) else path + "." + format
    os.makedirs(os.path.dirname(os.path.abspath(outfile)), exist_ok=True)
    try:
        # cleanup=True removes the .gv source graphviz writes beside the figure.
        written = graphviz.Source(text).render(outfile=outfile, format=format, cleanup=True)
    except graphviz.ExecutableNotFound as error:
        raise RuntimeError(
            "viz.render needs Graphviz's dot program on the PATH (e.g. apt-get install graphviz or "
            "brew install graphviz); viz.to_dot writes the DOT text without it"
        ) from error
    return written


# ---- the walk and the step inference ----------------------------------------------------------------


def _as_tensor_list(tensors: Any) -> list[Tensor]:
    roots = [tensors] if isinstance(tensors, Tensor) else list(tensors) if _is_sequence(tensors) else None
    if roots is None or not roots or not all(isinstance(t, Tensor) for t in roots):
        raise TypeError(f"viz: expected a Tensor or a sequence of Tensors, got {type(tensors).__name__}")
    for position, t in enumerate(roots):
        if t.grad_fn is None and not t.requires_grad:
            which = "" if len(roots) == 1 else f" (tensor {position})"
            raise ValueError(
                f"viz: the tensor{which} has no graph to draw: it does not require grad, so no op was "
                "recorded for it (was it computed under no_grad(), or from detached inputs only?)"
            )
    return roots


def _is_sequence(value: Any) -> bool:
    return isinstance(value, list | tuple)


def _parameter_names(params: Any) -> dict[int, str]:
    if params is None:
        return {}
    if hasattr(params, "named_parameters") and callable(params.named_parameters):
        params = dict(params.named_parameters())
    if not isinstance(params, Mapping):
        raise TypeError(
            "viz: params must be a mapping name -> tensor (e.g. dict(model.named_parameters())) or a "
            f"module, got {type(params).__name__}"
        )
    names = {}
    for name, value in params.items():
        if not isinstance(value, Tensor):
            raise TypeError(f"viz: params[{name!r}] must be a Tensor, got {type(value).__name__}")
        names[id(value)] = str(name)
    return names


def _collect(roots: list[Tensor]) -> tuple[set, dict]:
    """Every node reachable from the roots (iterative depth-first walk) and each node's consumers."""
    nodes: set = set()
    consumers: dict = {}
    pending = [t.grad_fn for t in roots if t.grad_fn is not None]
    while pending:
        node = pending.pop()
        if node in nodes:
            continue
        nodes.add(node)
        for parent in node.parents:
            if isinstance(parent, Function):
                consumers.setdefault(parent, []).append(node)
                if parent not in nodes:
                    pending.append(parent)
    return nodes, consumers


def _seed_sequences(ordered: list, consumers: dict, step_ops: tuple) -> tuple[list, dict]:
    """The sequences (one per multi-output step op) and, for each (seed node, t), when step t ran:
    the creation index of the first node that consumes that slice."""
    sequences: list[list[int]] = []
    rank: dict = {}
    users: dict = {}
    for node in ordered:
        indices = node.parent_indices
        for position, parent in enumerate(node.parents):
            if isinstance(parent, Function) and parent.name in step_ops:
                t = indices[position] if indices is not None else 0
                key = (parent, t)
                if key not in users:
                    users[key] = node.seq
    seeds = [node for node in ordered if node.name in step_ops]
    seeds = [node for node in seeds if any((node, t) in users for t in range(node.n_outputs))]
    for number, node in enumerate(seeds):
        never = float("inf")
        started = [users.get((node, t), never) for t in range(node.n_outputs)]
        sequences.append(started)
        for t in range(node.n_outputs):
            rank[(node, t)] = (number, t)
    return sequences, rank


def _infer_steps(ordered: list, consumers: dict, sequences: list, rank: dict) -> dict:
    """Rules 2-4 of :func:`graph`: node -> (sequence, t), for the nodes that lie in a step."""

    def newer(a: tuple | None, b: tuple | None) -> tuple | None:
        if a is None:
            return b
        if b is None:
            return a
        return max(a, b, key=lambda s: (s[0], sequences[s[0]][s[1]]))

    steps: dict = {}
    direct: set = set()  # nodes that take a step's slice as an input
    for node in ordered:
        step = None
        indices = node.parent_indices
        for position, parent in enumerate(node.parents):
            if not isinstance(parent, Function):
                continue
            index = indices[position] if indices is not None else 0
            seeded = rank.get((parent, index))
            if seeded is not None:
                direct.add(node)
            step = newer(step, seeded if seeded is not None else steps.get(parent))
        if step is not None:
            steps[node] = step
    pulled: set = set()
    for node in reversed(ordered):
        users = consumers.get(node)
        if not users or (node, 0) in rank:  # no consumer, or a seed
            continue
        # A node that takes a slice itself is anchored to that slice's step. A node that carries a
        # step already (it computes from an earlier state) moves only into consumers that take the
        # new slice, so a state h_t used by step t+1 alone keeps its step; a node that carries no
        # step (a transposed weight) may follow a chain of pulled nodes.
        if node in direct:
            continue
        allowed = direct if node in steps else direct | pulled
        if not all(user in allowed for user in users):
            continue
        targets = {steps.get(user) for user in users}
        if len(targets) != 1:
            continue
        (target,) = targets
        if target is not None and newer(steps.get(node), target) == target != steps.get(node):
            steps[node] = target
            pulled.add(node)
    # Rule 4: trim the newest step of each sequence to the size of the step before it.
    for number, started in enumerate(sequences):
        order = sorted(range(len(started)), key=lambda t: started[t])
        last = (number, order[-1])
        members = sorted((n for n, s in steps.items() if s == last), key=lambda n: n.seq)
        if len(order) > 1:
            keep = sum(1 for s in steps.values() if s == (number, order[-2]))
            kept = set(members[:keep])
        else:
            kept = {n for n in members if n in direct or n in pulled}
        for node in members:
            if node not in kept:
                del steps[node]
    return steps


def _leaf_id(leaf: Tensor, leaf_ids: dict, drawn: TapeGraph, names: dict) -> str:
    key = id(leaf)
    if key not in leaf_ids:
        leaf_ids[key] = f"leaf{len(leaf_ids)}"
        name = names.get(key)
        label = f"{name}\n{_shape(leaf)}" if name is not None else f"leaf\n{_shape(leaf)}"
        drawn.nodes[leaf_ids[key]] = DrawnNode(leaf_ids[key], label, "leaf")
    return leaf_ids[key]


def _shape(t: Tensor) -> str:
    return "(" + ", ".join(str(n) for n in t.shape) + ")"


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


_STYLES = {
    "op": 'shape=box, style="rounded,filled", fillcolor="#ffffff"',
    "leaf": 'shape=ellipse, style=filled, fillcolor="#d9ead3"',
    "cut": 'shape=ellipse, style=dashed, color="#cc0000", fontcolor="#cc0000"',
    "constant": 'shape=ellipse, style=dashed, color="#888888", fontcolor="#888888"',
    "output": 'shape=box, style=filled, fillcolor="#fce5cd"',
}


def _node_line(node: DrawnNode, drawn: TapeGraph) -> str:
    style = _STYLES[node.kind]
    if node.kind == "op" and node.step is not None and not drawn.in_window(node.step):
        style = 'shape=box, style="rounded,filled", fillcolor="#eeeeee", fontcolor="#777777"'
    return f'{node.id} [label="{_escape(node.label)}", {style}];'
