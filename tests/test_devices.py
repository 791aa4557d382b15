"""Devices: the CUDA plumbing, checked on machines without a GPU through a CuPy test double.

``fake_cupy`` stands in for CuPy (NumPy underneath, its own array type and devices), so these tests
check that tensors, modules and optimizer state land on the device asked for, that moves and
mismatches behave, and that a missing CuPy or GPU is reported clearly. They check the plumbing, not
the GPU: the ``device`` fixture's "cuda" cases (here and in the other test files) and
``benchmarks/gpu_check.sh`` are the checks on real hardware.
"""

import sys

import numpy as np
import pytest
from fake_cupy import FakeArray, install

import tinygrad_rnn as tg
import tinygrad_rnn.nn.functional as F
from tinygrad_rnn import backend, nn, optim
from tinygrad_rnn.nn.utils import clip_grad_norm_


@pytest.fixture
def fake(monkeypatch):
    """Two fake GPUs plugged into the backend for one test."""
    return install(monkeypatch, device_count=2)


def without_cupy(monkeypatch, error="ModuleNotFoundError: No module named 'cupy'"):
    monkeypatch.setattr(backend, "_cupy", None)
    monkeypatch.setattr(backend, "_cupyx", None)
    monkeypatch.setattr(backend, "_cupy_tried", True)
    monkeypatch.setattr(backend, "_cupy_error", error)
    monkeypatch.setattr(backend, "_cuda_usable", None)  # forget a trial run made with the real CuPy


# ---- what is missing, said plainly ------------------------------------------------------------------


def test_a_failed_cupy_import_is_remembered_and_reported_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    monkeypatch.setattr(backend, "_cupy", None)
    monkeypatch.setattr(backend, "_cupy_tried", False)
    monkeypatch.setattr(backend, "_cupy_error", None)
    monkeypatch.setattr(backend, "_cuda_usable", None)
    assert not tg.cuda.is_available() and tg.cuda.device_count() == 0
    with pytest.raises(RuntimeError, match=r"CuPy is not installed.*Error.*pip install -e \"\.\[cuda\]\""):
        tg.zeros(2, device="cuda")


@pytest.mark.parametrize(
    "request_cuda",
    [
        lambda: tg.zeros(2, device="cuda"),
        lambda: tg.randn(2, device="cuda:0"),
        lambda: tg.tensor([1.0], device="cuda"),
        lambda: tg.ones(2).to("cuda"),
        lambda: tg.ones(2).cuda(),
        lambda: nn.Linear(2, 2).to("cuda"),
        lambda: tg.cuda.synchronize(),
    ],
)
def test_every_way_of_asking_for_cuda_without_cupy_names_cupy_and_how_to_install_it(
    monkeypatch, request_cuda
):
    without_cupy(monkeypatch)
    with pytest.raises(RuntimeError, match=r"device cuda:0 was requested but CuPy is not installed") as error:
        request_cuda()
    assert 'pip install -e ".[cuda]"' in str(error.value)


def test_a_module_stays_where_it_was_when_cuda_is_missing(monkeypatch):
    without_cupy(monkeypatch)
    model = nn.Linear(3, 2)
    with pytest.raises(RuntimeError, match="CuPy"):
        model.to("cuda")
    assert all(p.device == "cpu" for p in model.parameters())


def test_cupy_without_a_gpu_is_reported_as_a_missing_gpu_not_a_missing_cupy(monkeypatch):
    install(monkeypatch, device_count=0)
    assert not tg.cuda.is_available() and tg.cuda.device_count() == 0
    with pytest.raises(RuntimeError, match="CuPy is installed and found no CUDA GPU") as error:
        tg.zeros(2, device="cuda")
    assert "not installed" not in str(error.value)


def test_asking_for_a_gpu_index_that_does_not_exist_says_how_many_there_are(fake):
    with pytest.raises(RuntimeError, match=r"device cuda:2 was requested but only 2 CUDA device\(s\) exist"):
        tg.zeros(2, device="cuda:2")


def test_the_default_device_comes_from_the_environment(monkeypatch, fake):
    monkeypatch.setattr(backend, "_default_device", None)
    monkeypatch.setenv("TINYGRAD_RNN_DEVICE", "cuda:1")
    assert tg.get_default_device() == "cuda:1"
    assert tg.zeros(2).device == "cuda:1" and tg.randn(2).device == "cuda:1"
    assert nn.Linear(2, 3).weight.device == "cuda:1"
    monkeypatch.setattr(backend, "_default_device", None)
    monkeypatch.setenv("TINYGRAD_RNN_DEVICE", "gpu")
    with pytest.raises(ValueError, match="TINYGRAD_RNN_DEVICE='gpu' is not a device"):
        tg.get_default_device()


# ---- mismatched devices ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "combine",
    [
        lambda a, b: a + b,
        lambda a, b: a @ b.T,
        lambda a, b: tg.cat([a, b]),
        lambda a, b: tg.where(a > 0, a, b),
    ],
)
def test_an_op_on_two_devices_names_both(fake, combine):
    a, b = tg.ones(2, 3), tg.ones(2, 3, device="cuda")
    with pytest.raises(RuntimeError, match=r"expected all tensors on the same device.*cpu.*cuda:0"):
        combine(a, b)
    with pytest.raises(RuntimeError, match=r"cuda:0.*cuda:1"):
        combine(b, tg.ones(2, 3, device="cuda:1"))


def test_a_model_and_its_input_on_different_devices_is_an_error_naming_both(fake):
    model = nn.LSTM(3, 4).to("cuda")
    with pytest.raises(RuntimeError, match=r"cpu.*cuda:0|cuda:0.*cpu"):
        model(tg.randn(5, 2, 3))


# ---- moving tensors ----------------------------------------------------------------------------------


def test_to_cuda_and_back_keeps_values_dtype_and_is_differentiable(fake):
    x = tg.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    y = x.to("cuda")
    assert y.device == "cuda:0" and isinstance(y._data, FakeArray) and y.dtype == tg.float64
    assert y.cuda() is y and y.to("cuda:0") is y
    back = (y * 3).cpu()
    np.testing.assert_array_equal(back.numpy(), 3 * np.arange(6.0).reshape(2, 3))
    (y * y).sum().backward()
    assert x.grad.device == "cpu"
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy())


def test_moving_between_gpus_copies_onto_the_other_gpu(fake):
    x = tg.tensor([1.0, 2.0], device="cuda:0")
    y = x.to("cuda:1")
    assert y.device == "cuda:1" and x.device == "cuda:0"
    assert x.cuda(1).device == "cuda:1"
    np.testing.assert_array_equal(y.numpy(), [1.0, 2.0])


def test_every_factory_honours_device(fake):
    made = [
        tg.zeros(2, device="cuda:1"),
        tg.ones(2, device="cuda:1"),
        tg.full((2,), 3.0, device="cuda:1"),
        tg.empty(2, device="cuda:1"),
        tg.randn(2, device="cuda:1"),
        tg.rand(2, device="cuda:1"),
        tg.randint(0, 5, (2,), device="cuda:1"),
        tg.arange(3, device="cuda:1"),
        tg.eye(2, device="cuda:1"),
        tg.tensor([1.0], device="cuda:1"),
        tg.zeros_like(tg.ones(2), device="cuda:1"),
    ]
    made.append(tg.ones_like(made[0]))
    made.append(tg.randn_like(made[0]))
    assert [str(t.device) for t in made] == ["cuda:1"] * len(made)


def test_a_tensor_from_a_gpu_array_stays_on_that_gpu(fake):
    x = tg.randn(3, device="cuda:1")
    assert tg.tensor(x._data).device == "cuda:1"
    assert tg.tensor(x._data, device="cuda:0").device == "cuda:0"


def test_manual_seed_seeds_every_device_and_gpu_draws_leave_the_cpu_stream_alone(fake):
    tg.manual_seed(3)
    first_gpu = tg.randn(4, device="cuda").numpy()
    first_cpu = tg.randn(4).numpy()
    tg.manual_seed(3)
    np.testing.assert_array_equal(tg.randn(4, device="cuda").numpy(), first_gpu)
    tg.manual_seed(3)
    np.testing.assert_array_equal(tg.randn(4).numpy(), first_cpu)  # no GPU draw in between


def test_repr_item_and_numpy_of_a_gpu_tensor_go_through_the_host(fake):
    x = tg.tensor([[1.5, 2.0]], device="cuda:1", requires_grad=True)
    assert "device='cuda:1'" in repr(x)
    assert x.sum().item() == 3.5 and isinstance(x.numpy(), np.ndarray)
    assert x.tolist() == [[1.5, 2.0]]


def test_cuda_utilities_report_and_synchronise_through_cupy(fake):
    assert tg.cuda.current_device() == 0
    assert tg.cuda.get_device_name(1) == "Fake GPU 1"
    tg.cuda.synchronize()
    tg.cuda.synchronize("cuda:1")
    assert fake.synchronized == 2
    with pytest.raises(ValueError, match="expected a CUDA device"):
        tg.cuda.synchronize("cpu")


# ---- modules and optimizers --------------------------------------------------------------------------


def test_module_to_moves_parameters_and_buffers_in_place(fake):
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    model.register_buffer("scale", tg.ones(2))
    parameters = list(model.parameters())
    assert model.to("cuda:1") is model
    assert list(model.parameters()) == parameters  # same objects: an optimizer keeps working
    assert {str(t.device) for t in [*model.parameters(), *model.buffers()]} == {"cuda:1"}
    assert all(isinstance(a, np.ndarray) for a in model.state_dict().values())
    model.cpu()
    assert {str(t.device) for t in [*model.parameters(), *model.buffers()]} == {"cpu"}


def test_a_state_dict_loads_into_a_model_on_the_gpu(fake):
    source = nn.GRU(3, 4)
    target = nn.GRU(3, 4).to("cuda")
    target.load_state_dict(source.state_dict())
    assert all(p.device == "cuda:0" for p in target.parameters())
    for (name, value), loaded in zip(source.state_dict().items(), target.state_dict().values()):
        np.testing.assert_array_equal(loaded, value, err_msg=name)


@pytest.mark.parametrize("make", [optim.SGD, optim.Adam, optim.AdamW, optim.RMSprop, optim.Adagrad])
def test_optimizer_state_is_created_on_the_parameters_device(fake, make):
    model = nn.Linear(3, 2).to("cuda:1")
    options = {"lr": 0.1, "momentum": 0.9} if make in (optim.SGD, optim.RMSprop) else {"lr": 0.1}
    optimizer = make(model.parameters(), **options)
    model(tg.randn(4, 3, device="cuda:1")).pow(2).sum().backward()
    optimizer.step()
    buffers = [v for state in optimizer.state.values() for v in state.values() if isinstance(v, tg.Tensor)]
    assert buffers and {str(b.device) for b in buffers} == {"cuda:1"}
    restored = make(model.parameters(), **options)
    restored.load_state_dict(optimizer.state_dict())
    buffers = [v for state in restored.state.values() for v in state.values() if isinstance(v, tg.Tensor)]
    assert {str(b.device) for b in buffers} == {"cuda:1"}


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_a_training_step_on_the_gpu_matches_the_cpu(fake, kind):
    """Same weights, same data: loss, gradients and updated weights agree; LSTM/GRU use the fused ops."""
    tg.set_default_dtype(tg.float64)
    try:
        models = {}
        for device in ("cpu", "cuda"):
            tg.manual_seed(0)
            rnn = getattr(nn, kind)(3, 5, num_layers=2, bidirectional=True)
            models[device] = nn.ModuleList([rnn, nn.Linear(10, 4)]).to(device)
        data = np.random.default_rng(0).standard_normal((6, 2, 3))
        targets = np.random.default_rng(1).integers(0, 4, (6, 2))
        results = {}
        for device, model in models.items():
            optimizer = optim.Adam(model.parameters(), lr=0.01)
            out, _ = model[0](tg.tensor(data, device=device))
            logits = model[1](out)
            loss = F.cross_entropy(logits.reshape(-1, 4), tg.tensor(targets, device=device).reshape(-1))
            loss.backward()
            norm = clip_grad_norm_(model.parameters(), 0.5)
            optimizer.step()
            results[device] = (loss.item(), float(norm), model.state_dict())
    finally:
        tg.set_default_dtype(tg.float32)
    assert results["cuda"][0] == pytest.approx(results["cpu"][0], rel=1e-12)
    assert results["cuda"][1] == pytest.approx(results["cpu"][1], rel=1e-12)
    for name, value in results["cpu"][2].items():
        np.testing.assert_allclose(results["cuda"][2][name], value, rtol=1e-10, atol=1e-12, err_msg=name)
    used = {k.name for k in fake.kernels if k.calls and k.name != backend.TRIAL_KERNEL}
    assert bool(used) == (kind != "RNN")


# ---- on every available device (the cuda case runs only where a GPU is) --------------------------------


def test_tensors_factories_and_a_module_land_on_the_requested_device(device):
    model = nn.LSTM(3, 4).to(device)
    x = tg.randn(5, 2, 3, device=device)
    out, (h, c) = model(x)
    out.sum().backward()
    assert {str(t.device).split(":")[0] for t in (x, out, h, c, *model.parameters())} == {device}
    assert all(p.grad.device == p.device for p in model.parameters())


def test_moving_to_the_device_and_back_round_trips_values_and_gradients(device):
    x = tg.randn(3, 4, dtype=tg.float64, requires_grad=True)
    y = x.to(device)
    (y.tanh() * 2).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * (1 - np.tanh(x.numpy()) ** 2), rtol=1e-12)


def test_the_gpu_benchmark_runs_its_cuda_path_and_prints_a_table(fake, capsys):
    """bench_gpu.py with tiny sizes on the stand-in: synchronises, checks gradients, times all columns."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent.parent / "benchmarks" / "bench_gpu.py"
    spec = importlib.util.spec_from_file_location("bench_gpu", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    # --no-torch: the stand-in's GPU is not one PyTorch can use, on a machine where torch sees real GPUs.
    argv = ["--quick", "--repeat", "1", "--sizes", "small", "--device", "cuda:1", "--no-torch"]
    assert bench.main(argv) == 0
    streamed, table = capsys.readouterr().out.split("bench_gpu results")
    assert [line.split()[0] for line in table.splitlines()[3:6]] == ["rnn", "lstm", "gru"]
    # Every number is printed as it is measured, before the table; both gradient paths are checked.
    for column in ("grad fused", "grad plain", "cupy", "numpy"):
        assert f"lstm/small {column}:" in streamed
    assert "lstm/small unfused:" in streamed and "rnn/small unfused:" not in streamed
    assert "gradient checks (fused, plain, torch): all agree" in table
    assert fake.synchronized > 0
    assert {k.name for k in fake.kernels if k.calls} >= {"tinygrad_rnn_lstm_pointwise_forward"}


def test_a_gpu_tensor_takes_index_arrays_from_the_host_as_in_pytorch(fake):
    x = tg.tensor(np.arange(12.0).reshape(4, 3), device="cuda:1", requires_grad=True)
    picked = x[np.array([0, 2, 2])] + x[tg.tensor([1, 1, 1])] + x[[3, 3, 0]]
    assert picked.device == "cuda:1"
    picked.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy()[:, 0], [2, 3, 2, 2])
    y = tg.zeros(4, device="cuda:1")
    y[np.array([1, 3])] = 5.0
    np.testing.assert_array_equal(y.numpy(), [0, 5, 0, 5])


def test_memory_allocated_and_reserved_follow_the_pool(fake):
    before = tg.cuda.memory_allocated()
    x = tg.zeros(1000, dtype=tg.float64, device="cuda")
    assert tg.cuda.memory_allocated() - before == 8000
    reserved = tg.cuda.memory_reserved()
    del x
    assert tg.cuda.memory_allocated() == before and tg.cuda.memory_reserved() == reserved
    tg.cuda.empty_cache()
    assert tg.cuda.memory_reserved() == before


def test_tg_device_is_a_class_spelled_as_torch_device():
    assert tg.device("cuda:1") == tg.device("cuda", 1) == tg.device(1) == "cuda:1"
    assert tg.device(tg.device("cpu")) == "cpu"
    assert isinstance(tg.zeros(1).device, tg.device)
    with pytest.raises(ValueError, match="non-negative"):
        tg.device(-1)


def test_ops_make_their_operands_gpu_current_so_array_code_after_them_lands_there(fake):
    tg.cuda.set_device(0)
    x = tg.randn(3, device="cuda:1", requires_grad=True)
    tg.cuda.set_device(0)
    y = (x * 2).sum()  # the op switches to cuda:1 and leaves it current
    assert tg.cuda.current_device() == 1
    tg.cuda.set_device("cuda:0")
    y.backward()  # the backward walk does the same
    assert x.grad.device == "cuda:1" and tg.cuda.current_device() == 1


def test_to_accepts_pytorchs_non_blocking_flag(fake):
    x = tg.ones(2).to("cuda", non_blocking=True)
    model = nn.Linear(2, 2).to("cuda", non_blocking=True)
    assert x.device == "cuda:0" and model.weight.device == "cuda:0"
    with pytest.raises(TypeError, match="unexpected arguments"):
        x.to("cpu", blocking=False)


# ---- what a real GPU would break: checked on the stand-in, which models it -----------------------------


@pytest.mark.parametrize("missing", ["nvrtc", "cublas"])
def test_cuda_is_unavailable_when_a_kernel_or_a_matmul_cannot_run_and_the_error_says_why(
    monkeypatch, missing
):
    """CuPy imports and counts GPUs without its CUDA libraries; only a trial run shows they are missing."""
    install(monkeypatch, device_count=1, missing=missing)
    assert tg.cuda.device_count() == 1 and not tg.cuda.is_available()
    library = "libnvrtc" if missing == "nvrtc" else "libcublasLt"
    with pytest.raises(
        RuntimeError, match=rf"could not compute on it .*{library}.*pip install -e \"\.\[cuda\]\""
    ):
        tg.zeros(2, device="cuda")


def test_the_cuda_trial_runs_once_per_process(fake):
    assert tg.cuda.is_available()
    reads = fake.host_reads
    assert tg.cuda.is_available() and tg.zeros(2, device="cuda").device == "cuda:0"
    assert fake.host_reads == reads  # cached: no second trial


def test_a_cupy_array_is_recognised_before_the_backend_has_imported_cupy(monkeypatch):
    """In a fresh process the user's `import cupy` comes first: tg.tensor and nn.Parameter must take its
    arrays even though no tinygrad_rnn code has imported CuPy yet."""
    from fake_cupy import install_unimported

    fake = install_unimported(monkeypatch, device_count=1)
    array = fake.asarray(np.arange(3.0))
    assert backend._cupy is None
    assert tg.tensor(array).device == "cuda:0"
    parameter = nn.Parameter(array)
    assert parameter.device == "cuda:0" and parameter.requires_grad


def test_dropout_inside_checkpoint_repeats_its_mask_on_the_gpu(fake):
    """CuPy's bit_generator.state is a method, not a settable state: the rewind must not rely on it."""
    from tinygrad_rnn.checkpoint import checkpoint

    tg.set_default_dtype(tg.float64)
    try:
        w = tg.randn(6, 6, device="cuda", requires_grad=True)
        x = tg.randn(4, 6, device="cuda", requires_grad=True)

        def block(x):
            return tg.dropout(x @ w, p=0.5, training=True).tanh()

        out = checkpoint(block, x)
        tg.rand(5, device="cuda")  # draws between forward and backward must not reach the recomputation
        out.sum().backward()
        # The mask is visible in the output: a dropped entry is exactly 0. The gradient must use it.
        kept = out.numpy() != 0
        pre = (x.numpy() @ w.numpy()) * kept * 2
        grad_pre = (1 - np.tanh(pre) ** 2) * kept * 2
        np.testing.assert_allclose(x.grad.numpy(), grad_pre @ w.numpy().T, rtol=1e-12)
        np.testing.assert_allclose(w.grad.numpy(), x.numpy().T @ grad_pre, rtol=1e-12)
    finally:
        tg.set_default_dtype(tg.float32)


def test_advanced_indexing_with_host_indices_checks_bounds_on_the_host_without_a_device_read(fake):
    x = tg.tensor(np.arange(12.0).reshape(4, 3), device="cuda", requires_grad=True)
    reads = fake.host_reads
    picked = x[np.array([0, 3])] + x[[1, 2]]
    y = tg.zeros(4, device="cuda")
    y[np.array([1, 3])] = 5.0
    assert fake.host_reads == reads
    with pytest.raises(IndexError, match="index 4 is out of range for dim 0 of size 4"):
        x[np.array([0, 4])]
    with pytest.raises(IndexError, match="index -5 is out of range"):
        y[[-5]] = 1.0
    assert fake.host_reads == reads
    picked.sum().backward()
    np.testing.assert_array_equal(y.numpy(), [0, 5, 0, 5])


def test_lookups_and_losses_on_gpu_indices_read_nothing_back_per_call(fake):
    """gather, embedding, cross_entropy and nll_loss check GPU indices without waiting for the GPU."""
    logits = tg.randn(6, 4, device="cuda", requires_grad=True)
    targets = tg.tensor([0, 1, 2, 3, 1, 0], device="cuda")
    table = nn.Embedding(5, 3).to("cuda")
    reads = fake.host_reads
    for _ in range(10):
        loss = F.cross_entropy(logits, targets) + F.nll_loss(logits.log_softmax(1), targets)
        loss = loss + logits.gather(1, targets.reshape(-1, 1)).sum() + table(targets).sum()
        picked = logits[targets]
    assert fake.host_reads == reads, fake.host_read_log[reads:]
    loss.backward()
    assert np.isfinite(loss.item()) and picked.shape == (6, 4)
    assert fake.host_reads == reads + 2  # the pending checks (one transfer), then the loss itself


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda lg, t: F.cross_entropy(lg, t), "cross_entropy: target 7 is out of range for 4 classes"),
        (lambda lg, t: F.nll_loss(lg, t), "nll_loss: target 7 is out of range"),
        (lambda lg, t: lg.gather(1, t.reshape(-1, 1)), "gather: index 7 is out of range for dim 1 of size 4"),
        (lambda lg, t: F.embedding(t, lg), "embedding: index 7 is out of range for a vocabulary of size 6"),
        (lambda lg, t: lg[t], "index 7 is out of range for dim 0 of size 6"),
    ],
)
def test_a_bad_gpu_index_raises_at_the_next_host_read_naming_the_op(fake, call, message):
    logits = tg.randn(6, 4, device="cuda")
    bad = tg.tensor([0, 7, 1, 2, 1, 0], device="cuda")
    result = call(logits, bad)
    with pytest.raises(IndexError, match=message):
        result.sum().item()
    assert backend._deferred == []  # reported once
    tg.zeros(1, device="cuda").item()
    call(logits, bad)
    with pytest.raises(IndexError, match=message):
        tg.cuda.synchronize()  # as PyTorch reports device-side asserts


def test_ignore_index_targets_are_not_range_checked_on_the_gpu(fake):
    logits = tg.randn(3, 4, device="cuda", requires_grad=True)
    loss = F.cross_entropy(logits, tg.tensor([0, -100, 3], device="cuda"))
    assert np.isfinite(loss.item())


def test_tbptt_training_on_the_gpu_reads_nothing_back_per_update(fake):
    """The trainer keeps each update's loss and gradient norm on the device; they are read when asked."""
    from tinygrad_rnn.bptt import TBPTTTrainer

    class Model:
        def __init__(self):
            self.rnn, self.head = nn.GRU(3, 5).to("cuda"), nn.Linear(5, 4).to("cuda")

        def __call__(self, x, hidden):
            out, hidden = self.rnn(x, hidden)
            return self.head(out), hidden

        def parameters(self):
            return [*self.rnn.parameters(), *self.head.parameters()]

    model = Model()
    inputs = tg.randn(24, 2, 3, device="cuda")
    targets = tg.tensor(np.random.default_rng(0).integers(0, 4, (24, 2)), device="cuda")
    trainer = TBPTTTrainer(model, optim.SGD(model.parameters(), lr=0.1), k1=4, k2=6, clip_norm=1.0)
    reads = fake.host_reads
    updates = list(trainer.updates(inputs, targets))
    assert len(updates) == 6 and fake.host_reads == reads, fake.host_read_log[reads:]
    losses, norms = trainer.losses, trainer.grad_norms
    assert fake.host_reads <= reads + 3  # deferred checks, then one transfer each for losses and norms
    assert len(losses) == len(norms) == 6 and all(np.isfinite(losses)) and all(n > 0 for n in norms)
    assert updates[0].loss == losses[0]


@pytest.mark.parametrize("dtype", [tg.float32, tg.float64, tg.int64, tg.bool_])
@pytest.mark.parametrize("operand", [2, 0.5, True])
def test_python_number_operands_give_the_same_dtypes_and_values_on_both_devices(fake, dtype, operand):
    data = np.array([1, 0, 3]).astype(dtype)
    results = {}
    for where in ("cpu", "cuda"):
        x = tg.tensor(data, device=where)
        results[where] = [(x * operand), (operand + x), (x - operand)] if dtype != tg.bool_ else [x * operand]
    for cpu, gpu in zip(results["cpu"], results["cuda"]):
        assert gpu.dtype == cpu.dtype
        np.testing.assert_array_equal(gpu.numpy(), cpu.numpy())
    if dtype.kind == "f":
        assert {r.dtype for r in results["cuda"]} == {dtype}  # a float tensor keeps its dtype


def test_python_number_operands_reuse_one_device_scalar(fake):
    data = tg.ones(3, device="cuda")._data
    first = backend.scalar_like(2.0, tg.float32, data)
    assert backend.scalar_like(2.0, tg.float32, data) is first  # no allocation and fill per operand
    assert backend.scalar_like(2, tg.float32, data) is not first  # 2 and 2.0 are kept apart
    assert backend.scalar_like(2.0, tg.float64, data).dtype == tg.float64


def test_the_examples_synchronise_and_measure_the_requested_gpu_not_the_current_one(fake):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent.parent / "examples" / "_common.py"
    spec = importlib.util.spec_from_file_location("examples_common", path)
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    tg.cuda.set_device(0)
    common.synchronize("cuda:1")
    assert fake.synchronized_devices[-1] == 1
    tg.cuda.set_device(0)
    _, peak = common.peak_memory(lambda: tg.zeros(1000, dtype=tg.float64, device="cuda:1"), "cuda:1")
    assert peak >= 8000


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda lg, t: F.cross_entropy(lg, t), "cross_entropy: target 9 is out of range"),
        (lambda lg, t: lg.gather(1, t.reshape(-1, 1)), "gather: index 9 is out of range"),
        (lambda lg, t: F.embedding(t, lg), "embedding: index 9 is out of range"),
        (lambda lg, t: lg[t], "index 9 is out of range for dim 0"),
    ],
)
def test_an_out_of_range_index_is_an_index_error_on_every_device(device, call, message):
    """On the CPU at the call; on a GPU (CuPy wraps bad indices around) at the next host read."""
    logits = tg.randn(3, 4, device=device)
    with pytest.raises(IndexError, match=message):
        call(logits, tg.tensor([0, 9, 1], device=device)).sum().item()
