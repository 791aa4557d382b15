"""Recurrent cells and layers: PyTorch equivalence (stored reference), gradients, shapes, names, errors."""

import itertools
import json
import pathlib
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_rnn as tg
from tinygrad_rnn import nn

REFERENCE = pathlib.Path(__file__).parent / "data" / "torch_rnn_reference.npz"


def _reference() -> dict:
    with np.load(REFERENCE, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


REF = _reference()
REF_CASES = sorted({key.split("/")[0] for key in REF if "/" in key})


def _build(config: dict) -> nn.Module:
    cls = getattr(nn, config["kind"])
    return cls(config["input_size"], config["hidden_size"], **config["options"], dtype=tg.float64)


# ---- equivalence with PyTorch (fixture produced by torch, see tests/data/README.md) -----------------------


def test_reference_fixture_covers_every_kind_and_option():
    kinds = {json.loads(str(REF[f"{case}/config"]))["kind"] for case in REF_CASES}
    assert kinds == {"RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"}
    options = [json.loads(str(REF[f"{case}/config"])) for case in REF_CASES]
    assert any(c["options"].get("bidirectional") for c in options)
    assert any(c["options"].get("batch_first") for c in options)
    assert any(c["options"].get("bias") is False for c in options)
    assert any(c["options"].get("num_layers", 1) > 1 for c in options)
    assert any(c["options"].get("nonlinearity") == "relu" for c in options)
    assert any(not c["batched"] for c in options)


@pytest.mark.parametrize("case", REF_CASES)
def test_outputs_and_gradients_match_pytorch_to_1e_10(case):
    config = json.loads(str(REF[f"{case}/config"]))
    model = _build(config)
    state = {k.split("/", 2)[2]: v for k, v in REF.items() if k.startswith(f"{case}/state/")}
    assert list(model.state_dict()) == list(state), "parameter names and order differ from PyTorch"
    model.load_state_dict(state)
    x = tg.tensor(REF[f"{case}/input"], requires_grad=True)
    leaves = {"input": x}
    hx = None
    if config["hx"]:
        leaves["h0"] = hx = tg.tensor(REF[f"{case}/h0"], requires_grad=True)
        if "LSTM" in config["kind"]:
            leaves["c0"] = tg.tensor(REF[f"{case}/c0"], requires_grad=True)
            hx = (hx, leaves["c0"])
    result = model(x, hx)
    if config["kind"].endswith("Cell"):
        output, state_out = None, result
    else:
        output, state_out = result
    h_n, c_n = state_out if "LSTM" in config["kind"] else (state_out, None)

    loss = (h_n * tg.tensor(REF[f"{case}/weight_h_n"])).sum()
    np.testing.assert_allclose(h_n.numpy(), REF[f"{case}/h_n"], rtol=0, atol=1e-10)
    if output is not None:
        np.testing.assert_allclose(output.numpy(), REF[f"{case}/output"], rtol=0, atol=1e-10)
        loss = loss + (output * tg.tensor(REF[f"{case}/weight_output"])).sum()
    if c_n is not None:
        np.testing.assert_allclose(c_n.numpy(), REF[f"{case}/c_n"], rtol=0, atol=1e-10)
        loss = loss + (c_n * tg.tensor(REF[f"{case}/weight_c_n"])).sum()
    loss.backward()
    for name, param in model.named_parameters():
        np.testing.assert_allclose(param.grad.numpy(), REF[f"{case}/grad/{name}"], rtol=0, atol=1e-10)
    for name, leaf in leaves.items():
        np.testing.assert_allclose(leaf.grad.numpy(), REF[f"{case}/grad/{name}"], rtol=0, atol=1e-10)


# ---- gradients against finite differences (float64) --------------------------------------------------------

LAYER_KINDS = [("RNN", {}), ("RNN", {"nonlinearity": "relu"}), ("LSTM", {}), ("GRU", {})]
LAYER_OPTIONS = [
    {"num_layers": 2, "bidirectional": True},
    {"batch_first": True, "bias": False},
    {"num_layers": 2},
    {"bidirectional": True, "batch_first": True},
]


def _layer_inputs(model, batched: bool, with_hx: bool, steps: int = 3, batch: int = 2):
    """Random float64 input (and h0/c0) in the model's layout, all requiring grad."""
    directions = 2 if model.bidirectional else 1
    if batched:
        shape = (batch, steps, model.input_size) if model.batch_first else (steps, batch, model.input_size)
        hidden_shape = (model.num_layers * directions, batch, model.hidden_size)
    else:
        shape, hidden_shape = (steps, model.input_size), (model.num_layers * directions, model.hidden_size)
    x = tg.randn(*shape, dtype=tg.float64, requires_grad=True)
    states = []
    if with_hx:
        count = 2 if isinstance(model, nn.LSTM) else 1
        states = [(0.5 * tg.randn(*hidden_shape, dtype=tg.float64)).requires_grad_() for _ in range(count)]
    return x, states


def _run_layer(model, x, states):
    hx = None if not states else (tuple(states) if isinstance(model, nn.LSTM) else states[0])
    output, state = model(x, hx)
    return (output, *state) if isinstance(model, nn.LSTM) else (output, state)


@pytest.mark.parametrize(("kind", "kind_options"), LAYER_KINDS, ids=["rnn_tanh", "rnn_relu", "lstm", "gru"])
@pytest.mark.parametrize("options", LAYER_OPTIONS, ids=["2layer_bi", "batch_first_nobias", "2layer", "bi_bf"])
def test_layer_gradients_match_finite_differences(kind, kind_options, options):
    model = getattr(nn, kind)(2, 2, **kind_options, **options, dtype=tg.float64)
    x, states = _layer_inputs(model, batched=True, with_hx=True)
    params = list(model.parameters())
    tg.gradcheck(lambda *args: _run_layer(model, x, states), [x, *states, *params])


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_unbatched_layer_without_hx_gradients_match_finite_differences(kind):
    model = getattr(nn, kind)(2, 2, num_layers=2, bidirectional=True, dtype=tg.float64)
    x, _ = _layer_inputs(model, batched=False, with_hx=False, steps=2)
    tg.gradcheck(lambda *args: _run_layer(model, x, []), [x, *model.parameters()])


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("RNNCell", {}),
        ("RNNCell", {"nonlinearity": "relu"}),
        ("RNNCell", {"bias": False}),
        ("LSTMCell", {}),
        ("LSTMCell", {"bias": False}),
        ("GRUCell", {}),
        ("GRUCell", {"bias": False}),
    ],
)
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
def test_cell_gradients_match_finite_differences(kind, options, batched):
    cell = getattr(nn, kind)(3, 2, **options, dtype=tg.float64)
    lead = (2,) if batched else ()
    x = tg.randn(*lead, 3, dtype=tg.float64, requires_grad=True)
    h = (0.5 * tg.randn(*lead, 2, dtype=tg.float64)).requires_grad_()
    if kind == "LSTMCell":
        c = (0.5 * tg.randn(*lead, 2, dtype=tg.float64)).requires_grad_()
        tg.gradcheck(lambda *args: cell(x, (h, c)), [x, h, c, *cell.parameters()])
    else:
        tg.gradcheck(lambda *args: cell(x, h), [x, h, *cell.parameters()])


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_gradients_through_dropout_between_layers_match_finite_differences(kind):
    model = getattr(nn, kind)(2, 2, num_layers=3, dropout=0.4, dtype=tg.float64)
    x, states = _layer_inputs(model, batched=True, with_hx=True)

    def run(*args):
        tg.manual_seed(7)  # the same dropout masks on every evaluation
        return _run_layer(model, x, states)

    with tg.no_grad():
        model.eval()
        without_dropout = run()[0].numpy()
        model.train()
        assert not np.allclose(run()[0].numpy(), without_dropout), "dropout should change the output"
    tg.gradcheck(run, [x, *states, *model.parameters()])


def test_gradients_through_long_sequence_match_random_projection():
    model = nn.GRU(3, 4, num_layers=2, dtype=tg.float64)
    x = tg.randn(40, 2, 3, dtype=tg.float64, requires_grad=True)
    tg.gradcheck_projection(lambda *args: model(x)[0][-1], [x, *model.parameters()], trials=3)


def _numpy_layer(kind, state, x, h0, c0, num_layers, bidirectional, nonlinearity="tanh"):
    """The same layer written directly from PyTorch's formulas in NumPy (x is (T, B, I))."""

    def sigmoid(v):
        return 1 / (1 + np.exp(-v))

    directions = 2 if bidirectional else 1
    layer_input, h_n, c_n = x, [], []
    for layer in range(num_layers):
        outputs = []
        for direction in range(directions):
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            w_ih, w_hh = state["weight_ih" + suffix], state["weight_hh" + suffix]
            hidden = w_hh.shape[1]
            b_ih = state.get("bias_ih" + suffix, np.zeros(w_ih.shape[0]))
            b_hh = state.get("bias_hh" + suffix, np.zeros(w_ih.shape[0]))
            index = layer * directions + direction
            h, c = h0[index], c0[index]
            out = [None] * len(x)
            order = range(len(x) - 1, -1, -1) if direction else range(len(x))
            for t in order:
                a_x, a_h = layer_input[t] @ w_ih.T + b_ih, h @ w_hh.T + b_hh
                if kind == "RNN":
                    h = np.tanh(a_x + a_h) if nonlinearity == "tanh" else np.maximum(a_x + a_h, 0)
                elif kind == "LSTM":
                    i, f, g, o = np.split(a_x + a_h, 4, axis=1)
                    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
                    h = sigmoid(o) * np.tanh(c)
                else:
                    r = sigmoid(a_x[:, :hidden] + a_h[:, :hidden])
                    z = sigmoid(a_x[:, hidden : 2 * hidden] + a_h[:, hidden : 2 * hidden])
                    n = np.tanh(a_x[:, 2 * hidden :] + r * a_h[:, 2 * hidden :])
                    h = (1 - z) * n + z * h
                out[t] = h
            outputs.append(np.stack(out))
            h_n.append(h)
            c_n.append(c)
        layer_input = np.concatenate(outputs, axis=2)
    return layer_input, np.stack(h_n), np.stack(c_n)


@given(
    kind=st.sampled_from(["RNN", "RNN-relu", "LSTM", "GRU"]),
    steps=st.integers(1, 5),
    batch=st.integers(1, 3),
    input_size=st.integers(1, 4),
    hidden_size=st.integers(1, 4),
    num_layers=st.integers(1, 3),
    bidirectional=st.booleans(),
    bias=st.booleans(),
    batch_first=st.booleans(),
    with_hx=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_layer_equals_the_formulas_written_in_numpy_for_any_configuration(
    kind, steps, batch, input_size, hidden_size, num_layers, bidirectional, bias, batch_first, with_hx, seed
):
    rng = np.random.default_rng(seed)
    name, nonlinearity = [*kind.split("-"), "tanh"][:2]
    options = {"nonlinearity": nonlinearity} if name == "RNN" else {}
    model = getattr(nn, name)(
        input_size,
        hidden_size,
        num_layers,
        bias=bias,
        batch_first=batch_first,
        bidirectional=bidirectional,
        dtype=tg.float64,
        **options,
    )
    stacked = num_layers * (2 if bidirectional else 1)
    x = rng.standard_normal((steps, batch, input_size))
    h0 = (
        rng.standard_normal((stacked, batch, hidden_size))
        if with_hx
        else np.zeros((stacked, batch, hidden_size))
    )
    c0 = (
        rng.standard_normal((stacked, batch, hidden_size))
        if with_hx
        else np.zeros((stacked, batch, hidden_size))
    )
    expected, h_expected, c_expected = _numpy_layer(
        name, model.state_dict(), x, h0, c0, num_layers, bidirectional, nonlinearity
    )
    given_x = tg.tensor(x.transpose(1, 0, 2).copy() if batch_first else x)
    hx = None
    if with_hx:
        hx = (tg.tensor(h0), tg.tensor(c0)) if name == "LSTM" else tg.tensor(h0)
    output, state = model(given_x, hx)
    h_n, c_n = state if name == "LSTM" else (state, None)
    got = output.numpy().transpose(1, 0, 2) if batch_first else output.numpy()
    np.testing.assert_allclose(got, expected, atol=1e-12)
    np.testing.assert_allclose(h_n.numpy(), h_expected, atol=1e-12)
    if c_n is not None:
        np.testing.assert_allclose(c_n.numpy(), c_expected, atol=1e-12)


# ---- shapes, names and initialisation ----------------------------------------------------------------------


def _expected_names_and_shapes(kind, num_layers, bidirectional, bias, input_size, hidden_size):
    gates = {"RNN": 1, "LSTM": 4, "GRU": 3}[kind]
    directions = 2 if bidirectional else 1
    expected = {}
    for layer in range(num_layers):
        for suffix in ["", "_reverse"][:directions]:
            width = input_size if layer == 0 else directions * hidden_size
            expected[f"weight_ih_l{layer}{suffix}"] = (gates * hidden_size, width)
            expected[f"weight_hh_l{layer}{suffix}"] = (gates * hidden_size, hidden_size)
            if bias:
                expected[f"bias_ih_l{layer}{suffix}"] = (gates * hidden_size,)
                expected[f"bias_hh_l{layer}{suffix}"] = (gates * hidden_size,)
    return expected


CONFIGURATIONS = list(
    itertools.product(["RNN", "LSTM", "GRU"], [1, 3], [False, True], [True, False], [False, True])
)


@pytest.mark.parametrize(("kind", "num_layers", "bidirectional", "bias", "batch_first"), CONFIGURATIONS)
def test_every_configuration_has_pytorch_names_and_output_shapes(
    kind, num_layers, bidirectional, bias, batch_first
):
    steps, batch, input_size, hidden_size = 4, 3, 5, 2
    model = getattr(nn, kind)(
        input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first, bidirectional=bidirectional
    )
    expected = _expected_names_and_shapes(kind, num_layers, bidirectional, bias, input_size, hidden_size)
    state = model.state_dict()
    assert list(state) == list(expected)
    assert {name: value.shape for name, value in state.items()} == expected
    directions = 2 if bidirectional else 1
    x = tg.randn(batch, steps, input_size) if batch_first else tg.randn(steps, batch, input_size)
    output, hidden = model(x)
    assert output.shape == (
        (batch, steps, directions * hidden_size) if batch_first else (steps, batch, directions * hidden_size)
    )
    for h in hidden if kind == "LSTM" else (hidden,):
        assert h.shape == (num_layers * directions, batch, hidden_size)
    output, hidden = model(tg.randn(steps, input_size))
    assert output.shape == (steps, directions * hidden_size)
    for h in hidden if kind == "LSTM" else (hidden,):
        assert h.shape == (num_layers * directions, hidden_size)


def test_default_initialisation_is_uniform_within_one_over_sqrt_hidden():
    model = nn.LSTM(10, 64, num_layers=2, bidirectional=True)
    bound = 1 / np.sqrt(64)
    values = np.concatenate([p.numpy().ravel() for p in model.parameters()])
    assert np.abs(values).max() <= bound
    # Uniform over the whole interval: the extremes come close to the bound and the mean is near 0.
    assert np.abs(values).max() > 0.99 * bound
    assert abs(values.mean()) < 0.01 * bound * 10
    assert values.std() == pytest.approx(bound / np.sqrt(3), rel=0.02)


def test_parameters_are_float32_by_default_and_follow_dtype_argument():
    assert nn.GRU(2, 3).weight_ih_l0.dtype == tg.float32
    assert nn.GRU(2, 3, dtype=tg.float64).weight_ih_l0.dtype == tg.float64
    assert nn.LSTMCell(2, 3, dtype="float64").weight_hh.dtype == tg.float64


def test_repr_lists_the_options_like_pytorch():
    text = repr(nn.LSTM(3, 4, num_layers=2, batch_first=True, dropout=0.25, bidirectional=True))
    assert text == "LSTM(3, 4, num_layers=2, batch_first=True, dropout=0.25, bidirectional=True)"
    assert repr(nn.RNN(3, 4, nonlinearity="relu", bias=False)) == "RNN(3, 4, nonlinearity='relu', bias=False)"
    assert repr(nn.GRUCell(3, 4)) == "GRUCell(3, 4)"


# ---- semantics ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layer_kind", "cell_kind"), [("RNN", "RNNCell"), ("LSTM", "LSTMCell"), ("GRU", "GRUCell")]
)
def test_one_layer_equals_its_cell_stepped_in_a_python_loop(layer_kind, cell_kind):
    layer = getattr(nn, layer_kind)(3, 4, dtype=tg.float64)
    cell = getattr(nn, cell_kind)(3, 4, dtype=tg.float64)
    cell.load_state_dict({name[: -len("_l0")]: value for name, value in layer.state_dict().items()})
    x = tg.randn(6, 2, 3, dtype=tg.float64)
    output, _ = layer(x)
    state = None
    for t in range(6):
        state = cell(x[t], state)
        h = state[0] if cell_kind == "LSTMCell" else state
        np.testing.assert_allclose(output[t].numpy(), h.numpy(), atol=1e-12)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_reverse_direction_reads_the_sequence_backwards(kind):
    both = getattr(nn, kind)(3, 4, bidirectional=True, dtype=tg.float64)
    forward_only = getattr(nn, kind)(3, 4, dtype=tg.float64)
    forward_only.load_state_dict(
        {name.replace("_reverse", ""): v for name, v in both.state_dict().items() if "_reverse" in name}
    )
    x = tg.randn(5, 2, 3, dtype=tg.float64)
    output, _ = both(x)
    flipped = tg.tensor(x.numpy()[::-1].copy())
    reference, _ = forward_only(flipped)
    np.testing.assert_allclose(output.numpy()[:, :, 4:], reference.numpy()[::-1], atol=1e-12)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_omitted_hx_is_zeros_and_unbatched_equals_batch_of_one(kind):
    model = getattr(nn, kind)(3, 4, num_layers=2, bidirectional=True, dtype=tg.float64)
    x = tg.randn(5, 3, dtype=tg.float64)
    zeros = tg.zeros(4, 4, dtype=tg.float64)
    out_default, _ = model(x)
    out_zeros, _ = model(x, (zeros, zeros) if kind == "LSTM" else zeros)
    out_batched, _ = model(x.reshape(5, 1, 3))
    np.testing.assert_array_equal(out_default.numpy(), out_zeros.numpy())
    np.testing.assert_allclose(out_default.numpy(), out_batched.numpy()[:, 0], atol=1e-12)


def test_dropout_between_layers_acts_only_in_training_mode():
    model = nn.LSTM(3, 8, num_layers=2, dropout=0.5, dtype=tg.float64)
    plain = nn.LSTM(3, 8, num_layers=2, dtype=tg.float64)
    plain.load_state_dict(model.state_dict())
    x = tg.randn(4, 2, 3, dtype=tg.float64)
    first, second = model(x)[0].numpy(), model(x)[0].numpy()
    assert not np.allclose(first, second), "dropout in training mode should draw a new mask every call"
    assert not np.allclose(first, plain(x)[0].numpy())
    model.eval()
    np.testing.assert_array_equal(model(x)[0].numpy(), plain(x)[0].numpy())


def test_dropout_is_not_applied_to_the_last_layer_output():
    with pytest.warns(UserWarning, match="no effect with num_layers=1"):
        model = nn.GRU(3, 8, num_layers=1, dropout=0.9, dtype=tg.float64)
    x = tg.randn(4, 2, 3, dtype=tg.float64)
    np.testing.assert_array_equal(model(x)[0].numpy(), model(x)[0].numpy())


def test_input_projection_is_one_matmul_and_each_step_one_more():
    steps = 7
    model = nn.LSTM(3, 4, num_layers=2, bidirectional=True)
    output, _ = model(tg.randn(steps, 2, 3))
    counts: dict[str, int] = {}
    seen, stack = set(), [output.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or not hasattr(node, "parents") or id(node) in seen:
            continue
        seen.add(id(node))
        counts[node.name] = counts.get(node.name, 0) + 1
        stack.extend(node.parents)
    layers_times_directions = 4
    # The projection (with its bias) and each step's W_hh h + projection slice are one AddMatMul each.
    assert counts.get("MatMul", 0) + counts.get("AddMatMul", 0) == layers_times_directions * (steps + 1)
    assert counts["Unbind"] == layers_times_directions


def test_lstm_backward_over_2000_steps_needs_no_recursion():
    model = nn.LSTM(2, 3)
    x = tg.randn(2000, 1, 2)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200)
    try:
        output, _ = model(x)
        output[-1].sum().backward()
    finally:
        sys.setrecursionlimit(limit)
    assert np.isfinite(model.weight_hh_l0.grad.numpy()).all()
    assert np.abs(model.weight_ih_l0.grad.numpy()).sum() > 0


def test_no_grad_forward_records_nothing():
    model = nn.GRU(3, 4)
    with tg.no_grad():
        output, h_n = model(tg.randn(5, 2, 3))
    assert not output.requires_grad and output.grad_fn is None and not h_n.requires_grad


def test_layer_runs_on_each_device_and_matches_the_cpu(device):
    model = nn.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=tg.float64)
    x = tg.randn(5, 2, 3, dtype=tg.float64)
    expected, (h_expected, _) = model(x)
    model.to(device)
    output, (h_n, c_n) = model(x.to(device))
    assert output.device == device and c_n.device == device
    np.testing.assert_allclose(output.numpy(), expected.numpy(), atol=1e-10)
    np.testing.assert_allclose(h_n.numpy(), h_expected.numpy(), atol=1e-10)
    output.sum().backward()
    assert model.weight_hh_l1_reverse.grad.device == device


# ---- errors name the expected and received shapes ---------------------------------------------------------


def test_wrong_input_size_names_expected_and_received():
    with pytest.raises(ValueError, match=r"expected 3, got 5"):
        nn.LSTM(3, 4)(tg.randn(6, 2, 5))


def test_wrong_input_rank_is_explained():
    with pytest.raises(ValueError, match=r"3-D input .* got shape \(1, 6, 2, 3\)"):
        nn.GRU(3, 4)(tg.randn(1, 6, 2, 3))


def test_wrong_hx_batch_names_expected_and_received_shapes():
    with pytest.raises(ValueError, match=r"expected hx of shape \(1, 2, 4\).*got \(1, 5, 4\)"):
        nn.RNN(3, 4)(tg.randn(6, 2, 3), tg.zeros(1, 5, 4))


def test_wrong_layers_times_directions_is_named():
    with pytest.raises(ValueError, match=r"num_layers \* num_directions = 2 \* 2.*got \(2, 2, 4\)"):
        nn.GRU(3, 4, num_layers=2, bidirectional=True)(tg.randn(6, 2, 3), tg.zeros(2, 2, 4))


def test_lstm_checks_c0_and_the_tuple():
    model = nn.LSTM(3, 4)
    x = tg.randn(6, 2, 3)
    with pytest.raises(ValueError, match=r"c_0 of shape \(1, 2, 4\).*got \(1, 2, 3\)"):
        model(x, (tg.zeros(1, 2, 4), tg.zeros(1, 2, 3)))
    with pytest.raises(TypeError, match=r"tuple \(h_0, c_0\)"):
        model(x, tg.zeros(1, 2, 4))


def test_unbatched_input_needs_unbatched_hx():
    with pytest.raises(ValueError, match=r"expected hx of shape \(1, 4\)"):
        nn.GRU(3, 4)(tg.randn(6, 3), tg.zeros(1, 1, 4))


def test_dtype_mismatch_is_a_clear_type_error():
    with pytest.raises(TypeError, match=r"input has dtype float64 but the parameters have dtype float32"):
        nn.RNN(3, 4)(tg.randn(6, 2, 3, dtype=tg.float64))


def test_cell_shape_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"expected input of shape \(batch, 3\) or \(3,\), got \(2, 4\)"):
        nn.GRUCell(3, 4)(tg.randn(2, 4))
    with pytest.raises(ValueError, match=r"expected hx of shape \(2, 4\), got \(3, 4\)"):
        nn.RNNCell(3, 4)(tg.randn(2, 3), tg.zeros(3, 4))


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: nn.LSTM(0, 4), "input_size must be a positive int"),
        (lambda: nn.GRU(3, 4, num_layers=0), "num_layers must be a positive int"),
        (lambda: nn.RNN(3, 4, dropout=1.5), r"dropout must be a number in \[0, 1\]"),
        (lambda: nn.RNN(3, 4, nonlinearity="sigmoid"), "nonlinearity must be 'tanh' or 'relu'"),
    ],
)
def test_bad_constructor_arguments_raise_value_error(factory, message):
    with pytest.raises(ValueError, match=message):
        factory()
