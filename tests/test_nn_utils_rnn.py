"""nn.utils.rnn (packing and padding) and recurrent layers on packed batches: PyTorch equivalence
(stored reference, see tests/data/README.md), gradients, per-sequence oracles, errors."""

import json
import pathlib

import numpy as np
import pytest
from fake_cupy import FakeArray, install
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_rnn as tg
from tinygrad_rnn import nn
from tinygrad_rnn.nn.utils.rnn import (
    PackedSequence,
    pack_padded_sequence,
    pack_sequence,
    pad_packed_sequence,
    pad_sequence,
    unpack_sequence,
    unpad_sequence,
)

REFERENCE = pathlib.Path(__file__).parent / "data" / "torch_packed_reference.npz"


def _reference() -> dict:
    with np.load(REFERENCE, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


REF = _reference()
REF_CASES = sorted({key.split("/")[0] for key in REF if "/" in key})


def _config(case: str) -> dict:
    return json.loads(str(REF[f"{case}/config"]))


# ---- equivalence with PyTorch ------------------------------------------------------------------------------


def test_reference_fixture_covers_every_kind_and_configuration():
    configs = [_config(case) for case in REF_CASES]
    kinds = {(c["kind"], c["options"].get("nonlinearity", "tanh")) for c in configs}
    assert kinds == {("RNN", "tanh"), ("RNN", "relu"), ("LSTM", "tanh"), ("GRU", "tanh")}
    for kind in ("RNN", "LSTM", "GRU"):
        mine = [c for c in configs if c["kind"] == kind]
        assert any(c["options"].get("num_layers", 1) == 2 for c in mine)
        assert any(c["options"].get("bidirectional") for c in mine)
        assert any(c["options"].get("batch_first") for c in mine)
        assert {c["hx"] for c in mine} == {True, False}
        assert {c["enforce_sorted"] for c in mine} == {True, False}
    assert all(len(set(c["lengths"])) > 1 for c in configs if c["lengths"] != [5, 5, 5, 5])


@pytest.mark.parametrize("case", REF_CASES)
def test_packed_layer_outputs_states_and_gradients_match_pytorch_to_1e_10(case):
    config = _config(case)
    model = getattr(nn, config["kind"])(config["input_size"], config["hidden_size"], **config["options"])
    model = model.to(tg.float64)
    state = {k.split("/", 2)[2]: v for k, v in REF.items() if k.startswith(f"{case}/state/")}
    assert list(model.state_dict()) == list(state)
    model.load_state_dict(state)
    batch_first = config["options"].get("batch_first", False)
    x = tg.tensor(REF[f"{case}/input"], requires_grad=True)
    leaves = {"input": x}
    hx = None
    if config["hx"]:
        leaves["h0"] = hx = tg.tensor(REF[f"{case}/h0"], requires_grad=True)
        if config["kind"] == "LSTM":
            leaves["c0"] = tg.tensor(REF[f"{case}/c0"], requires_grad=True)
            hx = (hx, leaves["c0"])
    lengths = tg.tensor(REF[f"{case}/lengths"])  # a CPU int64 tensor here; lists are checked below
    packed = pack_padded_sequence(
        x, lengths, batch_first=batch_first, enforce_sorted=config["enforce_sorted"]
    )
    np.testing.assert_array_equal(packed.batch_sizes.numpy(), REF[f"{case}/batch_sizes"])
    np.testing.assert_array_equal(packed.data.numpy(), REF[f"{case}/packed_data"])
    if config["enforce_sorted"]:
        assert packed.sorted_indices is None and packed.unsorted_indices is None
    else:
        np.testing.assert_array_equal(packed.sorted_indices.numpy(), REF[f"{case}/sorted_indices"])

    packed_output, final = model(packed, hx)
    h_n, c_n = final if config["kind"] == "LSTM" else (final, None)
    assert isinstance(packed_output, PackedSequence)
    assert packed_output.batch_sizes is packed.batch_sizes
    np.testing.assert_allclose(
        packed_output.data.numpy(), REF[f"{case}/output_packed_data"], rtol=0, atol=1e-10
    )
    output, output_lengths = pad_packed_sequence(
        packed_output, batch_first=batch_first, total_length=x.shape[int(batch_first)]
    )
    assert output_lengths.tolist() == config["lengths"]
    results = {"output": output, "h_n": h_n} | ({"c_n": c_n} if c_n is not None else {})
    loss = 0
    for key, value in results.items():
        np.testing.assert_allclose(value.numpy(), REF[f"{case}/{key}"], rtol=0, atol=1e-10, err_msg=key)
        loss = loss + (value * tg.tensor(REF[f"{case}/weight_{key}"])).sum()
    loss.backward()
    for name, param in model.named_parameters():
        np.testing.assert_allclose(
            param.grad.numpy(), REF[f"{case}/grad/{name}"], rtol=0, atol=1e-10, err_msg=name
        )
    for name, leaf in leaves.items():
        np.testing.assert_allclose(
            leaf.grad.numpy(), REF[f"{case}/grad/{name}"], rtol=0, atol=1e-10, err_msg=name
        )


# ---- packing and padding ----------------------------------------------------------------------------------


def test_packing_lays_out_steps_of_the_sorted_running_sequences():
    x = tg.tensor(np.arange(12.0).reshape(4, 3))  # (T, B); column b holds 3t + b
    packed = pack_padded_sequence(x, [2, 4, 3], enforce_sorted=False)
    assert packed.data.tolist() == [1.0, 2.0, 0.0, 4.0, 5.0, 3.0, 7.0, 8.0, 10.0]
    assert packed.batch_sizes.tolist() == [3, 3, 2, 1]
    assert packed.batch_sizes.dtype == tg.int64 and packed.batch_sizes.device == "cpu"
    assert packed.sorted_indices.tolist() == [1, 2, 0] and packed.unsorted_indices.tolist() == [2, 0, 1]
    data, batch_sizes, sorted_indices, unsorted_indices = packed  # a named tuple, as in PyTorch
    assert data is packed.data and batch_sizes is packed.batch_sizes
    assert sorted_indices is packed.sorted_indices and unsorted_indices is packed.unsorted_indices
    padded, lengths = pad_packed_sequence(packed, padding_value=-1.0, total_length=5)
    expected = np.where(np.arange(5)[:, None] < np.array([2, 4, 3]), np.arange(15.0).reshape(5, 3), -1.0)
    np.testing.assert_array_equal(padded.numpy(), expected)
    assert lengths.tolist() == [2, 4, 3] and lengths.dtype == tg.int64


def test_sorted_input_keeps_no_indices_and_ties_keep_their_order():
    x = tg.randn(3, 4, 2)
    assert pack_padded_sequence(x, [3, 3, 2, 2]).sorted_indices is None
    assert pack_padded_sequence(x, [2, 3, 2, 3], enforce_sorted=False).sorted_indices.tolist() == [1, 3, 0, 2]


@given(
    lengths=st.lists(st.integers(1, 4), min_size=1, max_size=4),
    batch_first=st.booleans(),
    enforce_sorted=st.booleans(),
    extra=st.integers(0, 2),
    features=st.sampled_from([(), (2,)]),
)
def test_pack_then_pad_round_trips_and_its_gradient_matches_finite_differences(
    lengths, batch_first, enforce_sorted, extra, features
):
    if enforce_sorted:
        lengths = sorted(lengths, reverse=True)
    steps, batch = max(lengths) + extra, len(lengths)
    shape = (batch, steps, *features) if batch_first else (steps, batch, *features)
    x = tg.randn(*shape, dtype=tg.float64, requires_grad=True)

    def round_trip(x):
        packed = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=enforce_sorted)
        return pad_packed_sequence(packed, batch_first=batch_first, padding_value=7.0, total_length=steps)[0]

    inside = np.arange(steps)[:, None] < np.array(lengths)[None, :]
    if batch_first:
        inside = inside.T
    inside = inside.reshape(inside.shape + (1,) * len(features))
    np.testing.assert_array_equal(round_trip(x).numpy(), np.where(inside, x.numpy(), 7.0))
    tg.gradcheck(round_trip, [x])
    round_trip(x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.broadcast_to(inside, x.shape).astype(float))


@given(
    lengths=st.lists(st.integers(0, 3), min_size=1, max_size=4),
    batch_first=st.booleans(),
    side=st.sampled_from(["left", "right"]),
)
def test_pad_sequence_places_each_sequence_and_its_gradient_matches_finite_differences(
    lengths, batch_first, side
):
    sequences = [tg.randn(n, 2, dtype=tg.float64, requires_grad=True) for n in lengths]
    padded = pad_sequence(sequences, batch_first=batch_first, padding_value=-3.0, padding_side=side)
    steps = max(lengths)
    assert padded.shape == ((len(lengths), steps, 2) if batch_first else (steps, len(lengths), 2))
    for b, (s, n) in enumerate(zip(sequences, lengths, strict=True)):
        column = padded.numpy()[b] if batch_first else padded.numpy()[:, b]
        where = slice(0, n) if side == "right" else slice(steps - n, steps)
        np.testing.assert_array_equal(column[where], s.numpy())
        assert (np.delete(column, np.arange(steps)[where], axis=0) == -3.0).all()
    tg.gradcheck(lambda *args: pad_sequence(args, batch_first=batch_first, padding_side=side), sequences)


def test_pack_sequence_equals_packing_the_padded_batch_and_unpacks_back():
    sequences = [tg.randn(n, 3, dtype=tg.float64) for n in (2, 4, 1)]
    packed = pack_sequence(sequences, enforce_sorted=False)
    expected = pack_padded_sequence(pad_sequence(sequences), [2, 4, 1], enforce_sorted=False)
    np.testing.assert_array_equal(packed.data.numpy(), expected.data.numpy())
    assert packed.batch_sizes.tolist() == [3, 2, 1, 1]
    for got, s in zip(unpack_sequence(packed), sequences, strict=True):
        np.testing.assert_array_equal(got.numpy(), s.numpy())
    padded = pad_sequence(sequences, batch_first=True)
    for got, s in zip(unpad_sequence(padded, tg.tensor([2, 4, 1]), batch_first=True), sequences, strict=True):
        np.testing.assert_array_equal(got.numpy(), s.numpy())


def test_lengths_may_be_a_list_or_a_cpu_tensor_and_give_the_same_packing():
    x = tg.randn(4, 3, 2)
    from_list = pack_padded_sequence(x, [2, 4, 3], enforce_sorted=False)
    from_tensor = pack_padded_sequence(x, tg.tensor([2, 4, 3]), enforce_sorted=False)
    np.testing.assert_array_equal(from_list.data.numpy(), from_tensor.data.numpy())


def test_packed_sequence_to_moves_data_and_indices_and_keeps_batch_sizes_on_cpu(device):
    packed = pack_padded_sequence(tg.randn(3, 2, 2, dtype=tg.float64), [1, 3], enforce_sorted=False)
    assert not packed.is_cuda
    assert packed.to(tg.float64) is packed
    moved = packed.to(device)
    assert moved.data.device == device and moved.sorted_indices.device == device
    assert moved.batch_sizes.device == "cpu" and moved.is_cuda == (device == "cuda")
    assert packed.float().data.dtype == tg.float32
    padded, _ = pad_packed_sequence(moved)
    assert padded.device == device


# ---- recurrent layers on packed batches -------------------------------------------------------------------

CONFIGS = [
    ("RNN", {}),
    ("RNN", {"nonlinearity": "relu", "bidirectional": True}),
    ("LSTM", {"num_layers": 2, "bidirectional": True}),
    ("LSTM", {"batch_first": True}),
    ("GRU", {"num_layers": 2, "bidirectional": True, "batch_first": True}),
    ("GRU", {"bias": False}),
]
CONFIG_IDS = ["rnn", "rnn_relu_bi", "lstm_2layer_bi", "lstm_bf", "gru_2layer_bi_bf", "gru_nobias"]


def _hidden(model, batch, given):
    if not given:
        return [], None
    shape = (model.num_layers * (2 if model.bidirectional else 1), batch, model.hidden_size)
    states = [
        (0.5 * tg.randn(*shape, dtype=tg.float64)).requires_grad_()
        for _ in range(1 + isinstance(model, nn.LSTM))
    ]
    return states, (tuple(states) if isinstance(model, nn.LSTM) else states[0])


@pytest.mark.parametrize(("kind", "options"), CONFIGS, ids=CONFIG_IDS)
@given(lengths=st.lists(st.integers(1, 4), min_size=1, max_size=3), with_hx=st.booleans())
def test_packed_layer_equals_running_each_sequence_alone(kind, options, lengths, with_hx):
    model = getattr(nn, kind)(3, 2, **options, dtype=tg.float64)
    batch_first = options.get("batch_first", False)
    steps = max(lengths)
    x = tg.randn(*((len(lengths), steps, 3) if batch_first else (steps, len(lengths), 3)), dtype=tg.float64)
    states, hx = _hidden(model, len(lengths), with_hx)
    packed = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
    packed_output, final = model(packed, hx)
    finals = final if kind == "LSTM" else (final,)
    output, _ = pad_packed_sequence(packed_output, batch_first=batch_first)
    for b, n in enumerate(lengths):
        alone = x[b : b + 1, :n] if batch_first else x[:n, b : b + 1]
        alone_hx = None if hx is None else tuple(s[:, b : b + 1] for s in states)
        if alone_hx is not None and kind != "LSTM":
            alone_hx = alone_hx[0]
        alone_output, alone_final = model(alone, alone_hx)
        alone_finals = alone_final if kind == "LSTM" else (alone_final,)
        got = output.numpy()[b, :n] if batch_first else output.numpy()[:n, b]
        np.testing.assert_allclose(
            got, alone_output.numpy()[0] if batch_first else alone_output.numpy()[:, 0], atol=1e-12
        )
        for packed_state, state in zip(finals, alone_finals, strict=True):
            np.testing.assert_allclose(packed_state.numpy()[:, b], state.numpy()[:, 0], atol=1e-12)


@pytest.mark.parametrize(
    ("kind", "options", "enforce_sorted"),
    [(*config, index % 2 == 0) for index, config in enumerate(CONFIGS)],
    ids=[f"{name}_{'sorted' if index % 2 == 0 else 'unsorted'}" for index, name in enumerate(CONFIG_IDS)],
)
def test_packed_layer_gradients_match_finite_differences(kind, options, enforce_sorted):
    # One hidden unit for the two-layer stacks keeps the entry-by-entry check short.
    model = getattr(nn, kind)(2, 1 if options.get("num_layers") else 2, **options, dtype=tg.float64)
    lengths = [3, 3, 1] if enforce_sorted else [1, 3, 2]
    batch_first = options.get("batch_first", False)
    x = tg.randn(3, 3, 2, dtype=tg.float64, requires_grad=True)  # (T, B, I) or (B, T, I): both 3 x 3 x 2
    states, hx = _hidden(model, 3, True)

    def run(*args):
        packed = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=enforce_sorted)
        output, final = model(packed, hx)
        return (output.data, *(final if kind == "LSTM" else (final,)))

    tg.gradcheck(run, [x, *states, *model.parameters()])


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_packed_gradients_through_dropout_between_layers_match_finite_differences(kind):
    model = getattr(nn, kind)(2, 2, num_layers=2, dropout=0.5, dtype=tg.float64)
    x = tg.randn(3, 3, 2, dtype=tg.float64, requires_grad=True)

    def run(*args):
        tg.manual_seed(3)  # the same dropout masks on every evaluation
        return model(pack_padded_sequence(x, [2, 3, 1], enforce_sorted=False))[0].data

    with tg.no_grad():
        model.eval()
        without_dropout = run().numpy()
        model.train()
        assert not np.allclose(run().numpy(), without_dropout), "dropout should change the output"
    tg.gradcheck(run, [x, *model.parameters()])


def test_packed_layer_output_keeps_the_packing_and_batch_first_does_not_apply():
    model = nn.GRU(3, 2, batch_first=True, dtype=tg.float64)
    plain = nn.GRU(3, 2, dtype=tg.float64)
    plain.load_state_dict(model.state_dict())
    packed = pack_sequence([tg.randn(n, 3, dtype=tg.float64) for n in (2, 4)], enforce_sorted=False)
    output, h_n = model(packed)
    expected, expected_h = plain(packed)
    assert output.data.shape == (6, 2) and h_n.shape == (1, 2, 2)
    assert (
        output.sorted_indices is packed.sorted_indices and output.unsorted_indices is packed.unsorted_indices
    )
    np.testing.assert_array_equal(output.data.numpy(), expected.data.numpy())
    np.testing.assert_array_equal(h_n.numpy(), expected_h.numpy())


def test_packed_lstm_on_strict_cupy_matches_the_cpu(monkeypatch):
    model = nn.LSTM(3, 2, num_layers=2, bidirectional=True, dtype=tg.float64)
    x = tg.randn(4, 3, 3, dtype=tg.float64)
    h0, c0 = tg.randn(4, 3, 2, dtype=tg.float64), tg.randn(4, 3, 2, dtype=tg.float64)

    def run(device):
        leaf = tg.tensor(x.numpy(), device=device, requires_grad=True)
        packed = pack_padded_sequence(leaf, [2, 4, 1], enforce_sorted=False)
        output, (h_n, c_n) = model.to(device)(packed, (h0.to(device), c0.to(device)))
        padded, _ = pad_packed_sequence(output)
        (padded.sum() + h_n.sum() + c_n.sum()).backward()
        return padded, h_n, leaf.grad

    expected = [t.numpy() for t in run("cpu")]
    install(monkeypatch, device_count=1)  # CuPy replaced by a strict stand-in that refuses host arrays
    got = run("cuda")
    assert isinstance(got[0]._data, FakeArray) and isinstance(got[2]._data, FakeArray)
    for value, reference in zip(got, expected, strict=True):
        np.testing.assert_allclose(value.numpy(), reference, rtol=1e-12, atol=1e-12)


# ---- errors -----------------------------------------------------------------------------------------------


def test_unsorted_lengths_with_enforce_sorted_raise_pytorchs_error():
    with pytest.raises(
        RuntimeError, match="must be sorted in decreasing order when `enforce_sorted` is True"
    ):
        pack_padded_sequence(tg.randn(4, 3, 2), [3, 4, 2])
    with pytest.raises(RuntimeError, match="must be sorted in decreasing order"):
        pack_sequence([tg.randn(1, 2), tg.randn(2, 2)])


def test_zero_lengths_are_refused():
    with pytest.raises(RuntimeError, match="Length of all samples has to be greater than 0"):
        pack_padded_sequence(tg.randn(4, 3, 2), [4, 0, 3], enforce_sorted=False)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: pack_padded_sequence(tg.randn(4, 3, 2), [4, 3]),
            RuntimeError,
            r"len\(lengths\)` to be equal to batch_size, but got 2 \(batch_size=3\)",
        ),
        (
            lambda: pack_padded_sequence(tg.randn(4, 3, 2), [5, 3, 2]),
            RuntimeError,
            "longest length is 5 but the input has only 4",
        ),
        (
            lambda: pack_padded_sequence(tg.randn(4, 3, 2), tg.tensor([[4, 3, 2]])),
            RuntimeError,
            "1D CPU int64 tensor",
        ),
        (lambda: pack_padded_sequence(tg.randn(4), [4]), ValueError, "at least 2 dims"),
        (
            lambda: pack_padded_sequence(tg.zeros(0, 3, 2), [1, 1, 1]),
            RuntimeError,
            "Cannot pack empty tensors",
        ),
        (lambda: pack_padded_sequence(tg.randn(4, 3, 2), "abc"), TypeError, "lengths must be"),
        (
            lambda: pad_packed_sequence(pack_sequence([tg.randn(3, 2)]), total_length=2),
            ValueError,
            "total_length=2 and max sequence length being 3",
        ),
        (lambda: pad_packed_sequence(tg.randn(3, 2)), TypeError, "expected a PackedSequence"),
        (lambda: pad_sequence([]), RuntimeError, "empty list of sequences"),
        (
            lambda: pad_sequence([tg.zeros(2, 3), tg.zeros(2, 4)]),
            ValueError,
            r"sequence 0 has shape \(2, 3\), sequence 1 has shape \(2, 4\)",
        ),
        (
            lambda: pad_sequence([tg.zeros(2), tg.zeros(2, dtype=tg.float64)]),
            TypeError,
            "sequence 1 is float64",
        ),
        (lambda: pad_sequence([tg.tensor(1.0)]), ValueError, "0-d"),
        (
            lambda: pad_sequence([tg.zeros(2)], padding_side="up"),
            ValueError,
            "padding_side to be one of left or right, but got up",
        ),
        (lambda: PackedSequence(tg.zeros(3, 2), tg.tensor([1, 2])), ValueError, "non-increasing"),
    ],
)
def test_bad_packing_arguments_get_clear_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_packed_layer_checks_features_hidden_shape_and_dtype():
    packed = pack_sequence([tg.randn(3, 3, dtype=tg.float64), tg.randn(2, 3, dtype=tg.float64)])
    with pytest.raises(ValueError, match=r"input_size = 2\), got \(5, 3\)"):
        nn.GRU(2, 4, dtype=tg.float64)(packed)
    with pytest.raises(ValueError, match=r"expected hx of shape \(1, 2, 4\)"):
        nn.GRU(3, 4, dtype=tg.float64)(packed, tg.zeros(1, 3, 4, dtype=tg.float64))
    with pytest.raises(TypeError, match=r"hx must be a tuple \(h_0, c_0\)"):
        nn.LSTM(3, 4, dtype=tg.float64)(packed, tg.zeros(1, 2, 4, dtype=tg.float64))
    with pytest.raises(TypeError, match="dtype float64 but the parameters have dtype float32"):
        nn.RNN(3, 4)(packed)


def test_public_import_paths_work():
    assert tg.nn.utils.rnn.pack_padded_sequence is pack_padded_sequence
    assert tg.nn.utils.rnn.PackedSequence is PackedSequence
    assert callable(tg.nn.utils.clip_grad_norm_) and callable(tg.nn.utils.clip_grad_value_)
