"""Tests for the tape drawing: the exact nodes and edges of a 3-step RNN, the grouping by step, parameter
labels, the detach cut, the truncation window, DOT text and the errors."""

import sys
import types
from collections import Counter

import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn import nn, viz


def described(drawn):
    """Nodes as a multiset of (label, step) and edges as a multiset of (source, target, edge label)."""
    key = {node_id: (node.label, node.step) for node_id, node in drawn.nodes.items()}
    nodes = Counter(key.values())
    edges = Counter((key[source], key[target], label) for source, target, label in drawn.edges)
    return nodes, edges


def three_step_rnn():
    tg.manual_seed(0)
    rnn = nn.RNN(2, 3).double()
    earlier = tg.tensor(np.full((1, 1, 3), 0.5), requires_grad=True) * 2  # a state with a history
    output, _ = rnn(tg.tensor(np.ones((3, 1, 2))), earlier.detach())
    return rnn, output.sum()


def test_a_three_step_rnn_draws_exactly_its_nodes_and_edges():
    rnn, loss = three_step_rnn()
    nodes, edges = described(viz.graph(loss, params=rnn))
    w_ih, w_hh = ("weight_ih_l0\n(3, 2)", None), ("weight_hh_l0\n(3, 3)", None)
    b_ih, b_hh = ("bias_ih_l0\n(3)", None), ("bias_hh_l0\n(3)", None)
    permute, add, projection = ("Permute", None), ("Add", None), ("AddMatMul", None)
    reshape, unbind, stack, total = ("Reshape", None), ("Unbind", None), ("Stack", None), ("Sum", None)
    step = [("TanhAddMatMul", (0, t)) for t in range(3)]
    cut = ("no gradient\n(detach cut)", (0, 0))
    out = ("output\n()", None)
    assert nodes == Counter(
        [
            w_ih,
            w_hh,
            b_ih,
            b_hh,
            permute,
            permute,
            add,
            projection,
            reshape,
            unbind,
            *step,
            cut,
            stack,
            total,
            out,
        ]
    )
    expected = [
        (w_hh, permute, ""),
        (w_ih, permute, ""),
        (b_ih, add, ""),
        (b_hh, add, ""),
        (permute, projection, ""),
        (add, projection, ""),
        (projection, reshape, ""),
        (reshape, unbind, ""),
        (cut, step[0], ""),
        (step[0], step[1], ""),
        (step[1], step[2], ""),
        *[(permute, step[t], "") for t in range(3)],
        *[(unbind, step[t], f"[{t}]") for t in range(3)],
        *[(step[t], stack, "") for t in range(3)],
        (stack, total, ""),
        (total, out, ""),
    ]
    assert edges == Counter(expected)


def test_a_plain_unrolled_rnn_groups_its_matmul_add_tanh_by_step_and_leaves_the_loss_outside():
    rng = np.random.default_rng(0)
    w_ih = tg.tensor(rng.standard_normal((3, 2)), requires_grad=True)
    w_hh = tg.tensor(rng.standard_normal((3, 3)), requires_grad=True)
    h = tg.zeros(1, 3, dtype=tg.float64)
    slices = (tg.tensor(rng.standard_normal((4, 1, 2))) @ w_ih.T).unbind(0)
    states = []
    for a in slices:
        h = (h @ w_hh.T + a).tanh()
        states.append(h)
    loss = (tg.stack(states) ** 2).mean()
    drawn = viz.graph(loss, params={"W_ih": w_ih, "W_hh": w_hh})
    by_step = {}
    for node in drawn.nodes.values():
        by_step.setdefault(node.step, []).append(node.label)
    for t in range(4):
        # The transposed W_hh is taken inside the loop, so each step holds its own.
        assert sorted(by_step[(0, t)]) == sorted(["Permute", "MatMul", "Add", "Tanh"]) + (
            ["no gradient\n(detach cut)"] if t == 0 else []
        )
    assert sorted(by_step[None]) == sorted(
        [
            "W_ih\n(3, 2)",
            "W_hh\n(3, 3)",
            "Permute",
            "MatMul",
            "Unbind",
            "Stack",
            "PowConstant",
            "Mean",
            "output\n()",
        ]
    )
    assert drawn.steps == {0: [0, 1, 2, 3]}


def test_lstm_steps_hold_the_recurrent_product_and_the_cell_and_its_two_initial_states_are_cuts():
    tg.manual_seed(0)
    lstm = nn.LSTM(2, 3).double()
    output, _ = lstm(tg.tensor(np.ones((2, 1, 2))))
    drawn = viz.graph(output.sum(), params=dict(lstm.named_parameters()))
    for t in range(2):
        labels = sorted(n.label for n in drawn.nodes.values() if n.step == (0, t))
        cuts = ["no gradient\n(detach cut)"] * 2 if t == 0 else []
        assert labels == sorted(["AddMatMul", "LSTMCellPointwise", *cuts])
    assert [n.label for n in drawn.nodes.values() if n.label == "Stack"] == ["Stack"]
    assert all(n.step is None for n in drawn.nodes.values() if n.label in ("Stack", "Sum"))


def test_a_reverse_direction_runs_its_steps_backwards_and_each_layer_is_a_sequence_of_its_own():
    tg.manual_seed(0)
    gru = nn.GRU(2, 3, num_layers=2, bidirectional=True).double()
    output, _ = gru(tg.tensor(np.ones((3, 1, 2))))
    drawn = viz.graph(output.sum(), params=gru)
    assert drawn.steps == {0: [0, 1, 2], 1: [2, 1, 0], 2: [0, 1, 2], 3: [2, 1, 0]}
    for sequence in range(4):
        for t in range(3):
            labels = sorted(
                n.label for n in drawn.nodes.values() if n.step == (sequence, t) and n.kind == "op"
            )
            assert labels == ["AddMatMul", "GRUCellPointwise"]


def test_leaves_are_labelled_by_parameter_name_from_a_dict_or_a_module_and_by_shape_otherwise():
    rnn, loss = three_step_rnn()
    from_module = {n.label for n in viz.graph(loss, params=rnn).nodes.values() if n.kind == "leaf"}
    from_dict = {
        n.label
        for n in viz.graph(loss, params=dict(rnn.named_parameters())).nodes.values()
        if n.kind == "leaf"
    }
    assert (
        from_module
        == from_dict
        == {
            "weight_ih_l0\n(3, 2)",
            "weight_hh_l0\n(3, 3)",
            "bias_ih_l0\n(3)",
            "bias_hh_l0\n(3)",
        }
    )
    unnamed = {n.label for n in viz.graph(loss).nodes.values() if n.kind == "leaf"}
    assert unnamed == {"leaf\n(3, 2)", "leaf\n(3, 3)", "leaf\n(3)"}


def test_the_detach_cut_ends_the_tape_and_an_undetached_state_draws_its_history():
    tg.manual_seed(0)
    rnn = nn.RNN(2, 3).double()
    x = tg.tensor(np.ones((2, 1, 2)))
    _, h = rnn(x)
    cut_output, _ = rnn(x, h.detach())
    joined_output, _ = rnn(x, h)
    cut = viz.graph(cut_output.sum(), params=rnn)
    joined = viz.graph(joined_output.sum(), params=rnn)
    assert [n.step for n in cut.nodes.values() if n.kind == "cut"] == [(0, 0)]
    assert Counter(n.label for n in cut.nodes.values())["TanhAddMatMul"] == 2
    # Without the detach the first call's two steps are on the tape too, and only its h0 is a cut.
    assert Counter(n.label for n in joined.nodes.values())["TanhAddMatMul"] == 4
    assert [n.step for n in joined.nodes.values() if n.kind == "cut"] == [(0, 0)]
    assert set(joined.steps) == {0, 1}


def test_constants_outside_the_steps_are_drawn_only_on_request():
    _, loss = three_step_rnn()
    assert not [n for n in viz.graph(loss).nodes.values() if n.kind == "constant"]
    constants = [n for n in viz.graph(loss, show_constants=True).nodes.values() if n.kind == "constant"]
    assert len(constants) == 1  # the input x, entering the input projection


def test_the_window_marks_the_last_k2_steps_and_the_dot_text_shows_it():
    _, loss = three_step_rnn()
    drawn = viz.graph(loss, window=2)
    assert [drawn.in_window((0, t)) for t in range(3)] == [False, True, True]
    text = viz.to_dot(loss, window=2, title="k2 = 2")
    assert 'label="step 0 (outside the window)"' in text
    assert 'label="step 2 (in the window)"' in text
    assert viz.graph(loss).in_window((0, 0))


def test_dot_text_has_one_cluster_per_step_one_statement_per_node_and_edge():
    rnn, loss = three_step_rnn()
    drawn = viz.graph(loss, params=rnn)
    text = viz.to_dot(loss, params=rnn)
    assert text.startswith("digraph tape {") and text.rstrip().endswith("}")
    assert [line.strip() for line in text.splitlines() if "subgraph" in line] == [
        f"subgraph cluster_s0_t{t} {{" for t in range(3)
    ]
    assert sum(" -> " in line for line in text.splitlines()) == len(drawn.edges)
    for node_id in drawn.nodes:
        assert sum(line.strip().startswith(f"{node_id} [label=") for line in text.splitlines()) == 1
    assert 'label="weight_hh_l0\\n(3, 3)"' in text


def test_the_walk_is_iterative_and_draws_a_tape_of_three_thousand_steps():
    w = tg.tensor(np.array([0.5]), requires_grad=True)
    h = tg.tensor(np.array([1.0]))
    for _ in range(3000):
        h = (h * w).tanh()
    drawn = viz.graph(h.sum())
    assert Counter(n.label for n in drawn.nodes.values())["Tanh"] == 3000


def test_a_tape_can_be_drawn_after_backward_and_multiple_outputs_at_once():
    rnn, loss = three_step_rnn()
    before = described(viz.graph(loss, params=rnn))
    loss.backward()
    assert described(viz.graph(loss, params=rnn)) == before
    output, h_n = rnn(tg.tensor(np.ones((2, 1, 2))))
    drawn = viz.graph([output, h_n])
    assert {n.id for n in drawn.nodes.values() if n.kind == "output"} == {"out0", "out1"}


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="does not require grad"):
        viz.to_dot(tg.tensor([1.0, 2.0]).sum())
    with pytest.raises(TypeError, match="expected a Tensor"):
        viz.to_dot(np.ones(3))
    _, loss = three_step_rnn()
    with pytest.raises(TypeError, match="params must be a mapping"):
        viz.to_dot(loss, params=[1, 2])
    with pytest.raises(TypeError, match=r"params\['w'\] must be a Tensor"):
        viz.to_dot(loss, params={"w": np.ones(3)})
    with pytest.raises(ValueError, match="window must be a positive int"):
        viz.to_dot(loss, window=0)


def test_render_without_the_graphviz_package_names_the_extra_to_install(monkeypatch, tmp_path):
    _, loss = three_step_rnn()
    monkeypatch.setitem(sys.modules, "graphviz", None)
    with pytest.raises(ImportError, match=r"tinygrad_rnn\[viz\]"):
        viz.render(loss, str(tmp_path / "tape"))


def fake_graphviz(found_dot):
    module = types.ModuleType("graphviz")

    class ExecutableNotFound(RuntimeError):
        pass

    class Source:
        def __init__(self, text):
            self.text = text

        def render(self, outfile, format, cleanup):
            if not found_dot:
                raise ExecutableNotFound("failed to execute 'dot'")
            with open(outfile, "w") as handle:
                handle.write(f"{format}:{self.text}")
            return outfile

    module.ExecutableNotFound, module.Source = ExecutableNotFound, Source
    return module


def test_render_passes_the_dot_text_to_graphviz_and_explains_a_missing_dot_program(monkeypatch, tmp_path):
    _, loss = three_step_rnn()
    monkeypatch.setitem(sys.modules, "graphviz", fake_graphviz(found_dot=True))
    path = viz.render(loss, str(tmp_path / "sub" / "tape"), format="png", window=1)
    assert path.endswith("tape.png")
    with open(path) as handle:
        assert handle.read() == "png:" + viz.to_dot(loss, window=1)
    assert viz.render(loss, str(tmp_path / "t.svg")).endswith("t.svg")
    monkeypatch.setitem(sys.modules, "graphviz", fake_graphviz(found_dot=False))
    with pytest.raises(RuntimeError, match="dot program"):
        viz.render(loss, str(tmp_path / "tape"))


def test_render_writes_an_svg_with_the_real_graphviz_when_installed(tmp_path):
    pytest.importorskip("graphviz")
    import shutil

    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot program is not installed")
    rnn, loss = three_step_rnn()
    path = viz.render(loss, str(tmp_path / "rnn"), params=rnn)
    with open(path) as handle:
        text = handle.read()
    assert "<svg" in text and "weight_hh_l0" in text and "step 2" in text


def test_the_draw_tape_example_writes_dot_files_with_steps_and_cuts(tmp_path):
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "examples" / "draw_tape.py"
    result = subprocess.run(
        [sys.executable, str(script), "--no-svg", "--out", str(tmp_path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "op nodes per step {0: 1, 1: 1, 2: 1} (TanhAddMatMul); 1 detach cut(s)" in result.stdout
    assert "op nodes per step {0: 4, 1: 4, 2: 4} (Add, MatMul, Permute, Tanh)" in result.stdout
    for name in ("rnn_tape", "rnn_plain_tape", "lstm_tape"):
        text = (tmp_path / f"{name}.dot").read_text()
        assert text.startswith("digraph tape {") and "subgraph cluster_s0_t2" in text
    assert "(outside the window)" in (tmp_path / "lstm_tape.dot").read_text()
