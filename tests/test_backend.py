"""The backend: device spellings, array modules, moving arrays, dtype rules, scatter-add, seeded streams."""

import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn import backend

# ---- devices -----------------------------------------------------------------------------------------


def test_device_spellings_and_equality_with_strings():
    assert backend.Device("cpu") == "cpu" and str(backend.Device("CPU")) == "cpu"
    assert backend.Device("cuda") == "cuda:0" == backend.Device("cuda", 0)
    assert backend.Device("cuda:1").index == 1 and str(backend.Device("cuda:1")) == "cuda:1"
    assert backend.device(None) == backend.get_default_device()
    assert backend.device(2) == "cuda:2" and backend.device("cuda", 1) == "cuda:1"
    assert backend.Device("cpu") != "cuda" and backend.Device("cpu") != "not a device"
    assert len({backend.Device("cuda"), backend.Device("cuda:0")}) == 1
    assert repr(backend.Device("cuda:1")) == "device(type='cuda', index=1)"


@pytest.mark.parametrize(
    "spec, error, message",
    [
        ("tpu", ValueError, "unknown device 'tpu'"),
        ("cuda:x", ValueError, "the index after ':' must be a number"),
        ("cpu:1", ValueError, "device 'cpu' has no index 1"),
        (3.0, TypeError, "device must be a string"),
    ],
)
def test_bad_device_spellings_say_what_is_expected(spec, error, message):
    with pytest.raises(error, match=message):
        backend.Device(spec)


def test_a_contradicting_index_is_refused():
    with pytest.raises(ValueError, match="contradicts index=2"):
        backend.Device("cuda:1", 2)
    with pytest.raises(ValueError, match="non-negative"):
        backend.device(-1)


@pytest.mark.skipif(backend.cuda_is_available(), reason="a GPU is present, so the error cannot be raised")
def test_asking_for_cuda_without_a_gpu_says_what_is_missing():
    with pytest.raises(RuntimeError, match="device cuda:0 was requested but"):
        tg.zeros(2, device="cuda")
    with pytest.raises(RuntimeError, match="was requested but"):
        tg.ones(2).to("cuda")


def test_array_module_and_device_of_numpy_arrays():
    array = np.ones(3)
    assert backend.get_array_module(array) is np and backend.get_array_module(np.float64(1.0)) is np
    assert backend.device_of(array) == "cpu"
    assert backend.is_array(array) and backend.is_array(np.float32(1)) and not backend.is_array([1.0])
    assert backend.to_device(array, backend.CPU) is array
    assert backend.to_numpy(array) is array
    scalar = backend.ensure_array(np.float32(2.0))
    assert isinstance(scalar, np.ndarray) and scalar.shape == () and scalar.dtype == np.float32


def test_tensors_move_between_devices_and_keep_values(device):
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    moved = x.to(device)
    assert moved.device == device
    (moved * moved).sum().backward()
    assert x.grad.device == "cpu" and x.grad.tolist() == [2.0, 4.0]


# ---- dtypes ------------------------------------------------------------------------------------------


def test_as_dtype_accepts_every_spelling_and_refuses_nonsense():
    assert backend.as_dtype("float32") == backend.as_dtype(np.float32) == tg.float32
    with pytest.raises(TypeError, match="not a dtype"):
        backend.as_dtype("not-a-dtype")


def test_default_dtype_must_be_floating():
    with pytest.raises(TypeError, match="the default dtype must be a floating dtype, got int64"):
        tg.set_default_dtype(tg.int64)
    assert tg.get_default_dtype() == tg.float32


@pytest.mark.parametrize(
    "data, expected",
    [
        (1.5, np.float32),
        ([1.0, 2], np.float32),
        (3, np.int64),
        ([[1, 2]], np.int64),
        ([True, False], np.bool_),
        (np.zeros(2, dtype=np.float64), np.float64),
        (np.zeros(2, dtype=np.float16), np.float16),
        (np.zeros(2, dtype=np.int32), np.int32),
        (np.float64(2.0), np.float64),
    ],
)
def test_as_array_applies_the_default_dtype_rule(data, expected):
    assert backend.as_array(data, None, backend.CPU, copy=True).dtype == expected


def test_as_array_copies_only_when_asked():
    array = np.zeros(3)
    assert not np.shares_memory(backend.as_array(array, None, backend.CPU, copy=True), array)
    assert backend.as_array(array, None, backend.CPU, copy=False) is array
    assert backend.as_array(array, np.float32, backend.CPU, copy=False).dtype == np.float32


def test_as_array_refuses_non_numbers():
    with pytest.raises(TypeError, match="non-numbers"):
        backend.as_array(["a", object()], None, backend.CPU, copy=True)
    with pytest.raises(TypeError, match="unsupported array dtype"):
        backend.as_array(np.array(["a"]), None, backend.CPU, copy=True)


# ---- scatter-add -------------------------------------------------------------------------------------


def test_scatter_add_accumulates_repeated_indices():
    target = np.zeros(4)
    backend.scatter_add(target, np.array([1, 1, 3, 1]), np.array([1.0, 2.0, 3.0, 4.0]))
    np.testing.assert_array_equal(target, [0.0, 7.0, 0.0, 3.0])
    grid = np.zeros((2, 3))
    backend.scatter_add(grid, (np.array([0, 0, 1]), np.array([2, 2, 0])), np.ones(3))
    np.testing.assert_array_equal(grid, [[0, 0, 2], [1, 0, 0]])


@pytest.mark.parametrize("index_shape, width", [((40,), ()), ((6, 7), (3,)), ((5, 4), (2, 3)), ((0,), (3,))])
def test_row_sums_equals_scatter_add_into_zeros(device, index_shape, width):
    rng = np.random.default_rng(3)
    indices = rng.integers(0, 9, size=index_shape)
    values = rng.standard_normal((*index_shape, *width))
    dev = backend.device(device)
    got = backend.to_numpy(
        backend.row_sums(backend.to_device(indices, dev), backend.to_device(values, dev), 11)
    )
    expected = np.zeros((11, *width))
    np.add.at(expected, indices, values)
    assert got.shape == expected.shape and got.dtype == values.dtype
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-13)
    # rows never named stay exactly zero
    missing = np.setdiff1d(np.arange(11), indices.reshape(-1))
    np.testing.assert_array_equal(got[missing], 0.0)


def test_row_sums_float32_is_as_accurate_as_the_sequential_scatter():
    rng = np.random.default_rng(4)
    indices = rng.integers(0, 103, size=(32, 32))
    values = rng.standard_normal((32, 32, 32)).astype(np.float32)
    exact = np.zeros((103, 32))
    np.add.at(exact, indices, values.astype(np.float64))
    sequential = np.zeros((103, 32), np.float32)
    np.add.at(sequential, indices, values)
    got = backend.row_sums(indices, values, 103)
    assert got.dtype == np.float32
    assert np.abs(got - exact).max() <= np.abs(sequential - exact).max() + 1e-6
    np.testing.assert_allclose(got, sequential, rtol=1e-5, atol=1e-5)


def test_row_sums_keeps_negative_zero_out_as_scatter_into_zeros_does():
    got = backend.row_sums(np.array([2, 0]), np.array([[-0.0], [1.0]]), 3)
    assert not np.signbit(got).any()


# ---- random streams --------------------------------------------------------------------------------


def test_manual_seed_restarts_every_stream(device):
    dev = backend.device(device)
    tg.manual_seed(11)
    first = backend.to_numpy(backend.random_normal((5,), tg.float32, dev))
    tg.manual_seed(11)
    again = backend.to_numpy(backend.random_normal((5,), tg.float32, dev))
    np.testing.assert_array_equal(first, again)
    assert first.dtype == np.float32


def test_random_numbers_come_in_the_asked_dtype():
    assert backend.random_normal((3,), tg.float16, backend.CPU).dtype == np.float16
    uniform = backend.random_uniform((1000,), tg.float64, backend.CPU)
    assert uniform.dtype == np.float64 and uniform.min() >= 0.0 and uniform.max() < 1.0
    integers = backend.random_integers(2, 5, (1000,), backend.CPU)
    assert integers.dtype == np.int64 and set(np.unique(integers)) == {2, 3, 4}
