"""Saved work survives: a checkpoint write killed by a signal leaves the previous checkpoint loadable,
hostile or damaged files are refused with a clear error and never run code, and a failed
``load_state_dict`` leaves the model as it was."""

import io
import os
import pathlib
import pickle
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_rnn as tg
from tinygrad_rnn import nn, optim, serialization

# ---- a process killed while it writes a checkpoint --------------------------------------------------

WRITER = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np
    import tinygrad_rnn as tg
    from tinygrad_rnn import backend

    path, mode = sys.argv[1], sys.argv[2]

    def state(step):
        # Every array holds the step number, so a loaded file shows whether it is one whole checkpoint.
        return {"step": step, **{f"w{i}": np.full(500_000, step, np.float32) for i in range(4)}}

    if mode == "stall_in_write":
        real_save_npz = backend.save_npz
        def half_then_stall(file, arrays):
            import io
            buffer = io.BytesIO()
            real_save_npz(buffer, arrays)
            data = buffer.getvalue()
            if arrays["a0"][0] < 2:
                file.write(data)
                return
            file.write(data[: len(data) // 2])
            file.flush()
            print("stalled", flush=True)
            time.sleep(60)
        backend.save_npz = half_then_stall
    elif mode == "stall_before_rename":
        real_replace = os.replace
        def stall(source, destination):
            if tg.load(source)["step"] >= 2:
                print("stalled", flush=True)
                time.sleep(60)
            real_replace(source, destination)
        os.replace = stall

    step = 0
    while True:
        tg.save(state(step), path)
        print("saved", step, flush=True)
        step += 1
    """
)


def _start_writer(tmp_path, mode: str) -> tuple:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    path = tmp_path / "checkpoint.npz"
    child = subprocess.Popen(
        [sys.executable, str(script), str(path), mode], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    return child, path


def _read_until(child: subprocess.Popen, prefix: str) -> list:
    """Lines the child printed up to and including the first one starting with ``prefix``."""
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            raise AssertionError(f"the writer exited early ({child.wait()}) after {lines}")
        lines.append(line.strip())
        if line.startswith(prefix):
            return lines
    raise AssertionError(f"the writer never printed {prefix!r}")


def _kill(child: subprocess.Popen) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()


def _assert_whole_checkpoint(path, allowed_steps: set) -> int:
    state = tg.load(path)
    step = state["step"]
    assert step in allowed_steps
    for i in range(4):
        weights = state[f"w{i}"]
        assert weights.shape == (500_000,) and (weights == step).all(), "a checkpoint mixes two saves"
    return step


@pytest.mark.parametrize("mode", ["stall_in_write", "stall_before_rename"])
def test_sigkill_in_the_middle_of_a_checkpoint_write_leaves_the_previous_one_loadable(tmp_path, mode):
    child, path = _start_writer(tmp_path, mode)
    try:
        lines = _read_until(child, "stalled")  # the third write is half done (or done but not renamed)
    finally:
        _kill(child)
    assert lines[-2] == "saved 1"
    assert _assert_whole_checkpoint(path, {1}) == 1
    tg.save({"step": 7, **{f"w{i}": np.full(500_000, 7, np.float32) for i in range(4)}}, path)
    assert _assert_whole_checkpoint(path, {7}) == 7  # the leftover temporary file is in nobody's way


@pytest.mark.parametrize("delay", [0.0, 0.07, 0.19])
def test_sigkill_at_an_arbitrary_moment_of_a_save_loop_leaves_a_whole_checkpoint(tmp_path, delay):
    child, path = _start_writer(tmp_path, "loop")
    try:
        _read_until(child, "saved 0")
        time.sleep(delay)
    finally:
        _kill(child)
    # Whatever it was doing, the file on disk is one complete checkpoint of some step it reached.
    _assert_whole_checkpoint(path, set(range(10_000)))


# The example training script, killed while it writes its checkpoint: the previous one must survive.
EXAMPLE = str(pathlib.Path(__file__).resolve().parent.parent / "examples" / "char_lstm.py")
TINY_RUN = [
    "--max-chars", "20000", "--hidden-size", "8", "--embedding-dim", "4", "--batch-size", "2",
    "--k1", "4", "--k2", "4", "--eval-every", "2", "--eval-chars", "100", "--sample-every", "0",
    "--no-progress",
]  # fmt: skip
STALLING_RUN = textwrap.dedent(
    """
    import runpy, sys, time
    from tinygrad_rnn import backend

    real_save_npz = backend.save_npz

    def half_then_stall(file, arrays):
        import io
        buffer = io.BytesIO()
        real_save_npz(buffer, arrays)
        file.write(buffer.getvalue()[: buffer.tell() // 2])
        file.flush()
        print("stalled", flush=True)
        time.sleep(60)

    backend.save_npz = half_then_stall
    sys.argv = [sys.argv[1], *sys.argv[2:]]
    runpy.run_path(sys.argv[0], run_name="__main__")
    """
)


def test_the_training_example_killed_while_checkpointing_keeps_its_previous_checkpoint(tmp_path):
    environment = dict(os.environ, MPLBACKEND="Agg", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    out = str(tmp_path / "run")
    first = subprocess.run(
        [sys.executable, EXAMPLE, *TINY_RUN, "--steps", "2", "--out", out],
        capture_output=True,
        text=True,
        env=environment,
        timeout=240,
    )
    assert first.returncode == 0, first.stdout + first.stderr
    checkpoint = tmp_path / "run" / "checkpoint.npz"
    before = checkpoint.read_bytes()

    script = tmp_path / "stalling_run.py"
    script.write_text(STALLING_RUN)
    child = subprocess.Popen(
        [sys.executable, str(script), EXAMPLE, *TINY_RUN, "--steps", "4", "--out", out, "--resume"],
        stdout=subprocess.PIPE,
        text=True,
        env=environment,
        cwd=tmp_path,
    )
    try:
        lines = _read_until(child, "stalled")  # the resumed run trained on and is writing its checkpoint
    finally:
        _kill(child)
    assert any("resumed from" in line and "at update 2" in line for line in lines), lines
    assert checkpoint.read_bytes() == before  # byte for byte the checkpoint of the first run
    saved = tg.load(checkpoint)
    assert saved["meta"]["step"] == 2 and set(saved) >= {"model", "optimizer", "vocab"}


# ---- hostile and damaged files --------------------------------------------------------------------------


class Payload:
    """Unpickling this creates a marker file: proof that a loader ran code from the file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _structure_archive(path, structure: bytes, members: dict | None = None) -> None:
    """A hand-made archive: the structure member with the given JSON, plus raw members."""
    with zipfile.ZipFile(path, "w") as archive:
        with archive.open(f"{serialization.STRUCTURE_MEMBER}.npy", "w") as member:
            np.lib.format.write_array(member, np.frombuffer(structure, dtype=np.uint8))
        for name, data in (members or {}).items():
            with archive.open(name, "w") as member:
                member.write(data)


def test_pickle_payloads_anywhere_in_a_file_never_run(tmp_path):
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()  # the payload is live
    marker.unlink()

    cases = {}
    np.save(tmp_path / "plain.npy", np.array([Payload(marker)], dtype=object))
    cases["plain.npy"] = tmp_path / "plain.npy"
    np.savez(tmp_path / "member.npz", w=np.array([Payload(marker)], dtype=object))
    cases["member.npz"] = tmp_path / "member.npz"
    # A file that looks like ours, whose structure member and array member are pickles.
    with (
        zipfile.ZipFile(tmp_path / "structure.npz", "w") as archive,
        archive.open(f"{serialization.STRUCTURE_MEMBER}.npy", "w") as member,
    ):
        np.lib.format.write_array(member, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    cases["structure.npz"] = tmp_path / "structure.npz"
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    good = b'{"format": "tinygrad_rnn.state", "version": 1, "root": {"$array": "a0"}}'
    _structure_archive(tmp_path / "array.npz", good, {"a0.npy": buffer.getvalue()})
    cases["array.npz"] = tmp_path / "array.npz"
    (tmp_path / "raw.pkl").write_bytes(pickle.dumps({"w": Payload(marker)}))
    cases["raw.pkl"] = tmp_path / "raw.pkl"

    for name, path in cases.items():
        with pytest.raises(ValueError, match=name.replace(".", r"\.")):
            tg.load(path)
        assert not marker.exists(), f"loading {name} ran code"


def test_a_header_claiming_a_huge_array_is_refused_before_allocating(tmp_path):
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f8", "fortran_order": False, "shape": (2**40,)})
    good = b'{"format": "tinygrad_rnn.state", "version": 1, "root": {"$array": "a0"}}'
    _structure_archive(tmp_path / "huge.npz", good, {"a0.npy": buffer.getvalue() + bytes(64)})
    with pytest.raises(ValueError, match=r"huge\.npz.*claims 8796093022208 bytes"):
        tg.load(tmp_path / "huge.npz")


def test_a_structure_nested_too_deeply_is_refused_with_a_clear_error(tmp_path):
    for depth in (900, 5000):
        nested = '{"$list": [' * depth + "]}" * depth
        text = '{"format": "tinygrad_rnn.state", "version": 1, "root": ' + nested + "}"
        _structure_archive(tmp_path / "deep.npz", text.encode())
        with pytest.raises(ValueError, match=r"deep\.npz.*(corrupted|nested too deeply|levels deep)"):
            tg.load(tmp_path / "deep.npz")


def test_member_names_that_climb_out_of_the_directory_write_nothing(tmp_path):
    inner = tmp_path / "inner"
    inner.mkdir()
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ones(3))
    good = b'{"format": "tinygrad_rnn.state", "version": 1, "root": {"$array": "a0"}}'
    _structure_archive(inner / "climb.npz", good, {"../../escaped.npy": buffer.getvalue()})
    with pytest.raises(ValueError, match=r"climb\.npz.*missing array member 'a0'"):
        tg.load(inner / "climb.npz")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["climb.npz", "inner"]


SAVED_STATE = {"step": 3, "lr": 0.5, "w": np.linspace(-1.0, 1.0, 64), "b": np.arange(5, dtype=np.int64)}


@pytest.fixture(scope="module")
def saved_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("saved") / "state.npz"
    tg.save(SAVED_STATE, path)
    return path.read_bytes()


@given(st.data())
def test_any_damaged_byte_gives_a_clear_error_or_the_exact_original_never_a_wrong_value(
    saved_bytes, tmp_path_factory, data
):
    damaged = bytearray(saved_bytes)
    for _ in range(data.draw(st.integers(1, 3))):
        position = data.draw(st.integers(0, len(damaged) - 1))
        damaged[position] ^= data.draw(st.integers(1, 255))
    path = tmp_path_factory.mktemp("damaged") / "state.npz"
    path.write_bytes(bytes(damaged))
    try:
        loaded = tg.load(path)
    except ValueError as error:
        assert "state.npz" in str(error)
        return
    # Bytes the format does not read (timestamps, padding) may change: the values must not.
    assert loaded.keys() == SAVED_STATE.keys()
    assert loaded["step"] == 3 and loaded["lr"] == 0.5
    np.testing.assert_array_equal(loaded["w"], SAVED_STATE["w"])
    np.testing.assert_array_equal(loaded["b"], SAVED_STATE["b"])


@given(st.integers(0, 100))
def test_a_file_cut_anywhere_is_refused(saved_bytes, tmp_path_factory, percent):
    path = tmp_path_factory.mktemp("cut") / "state.npz"
    path.write_bytes(saved_bytes[: len(saved_bytes) * percent // 101])
    with pytest.raises(ValueError, match=r"state\.npz"):
        tg.load(path)


# ---- load_state_dict refuses without touching the model ---------------------------------------------


def _model() -> nn.Module:
    tg.manual_seed(0)
    return nn.Sequential(nn.Embedding(7, 4), nn.LSTM(4, 6, num_layers=2), nn.Linear(6, 3))


def _snapshot(model: nn.Module) -> dict:
    return {name: np.array(value) for name, value in model.state_dict().items()}


def _assert_unchanged(model: nn.Module, before: dict) -> None:
    after = _snapshot(model)
    assert after.keys() == before.keys()
    for name in before:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)


def _changed_copy(model: nn.Module) -> dict:
    """A full, valid state dict whose every value differs from the model's."""
    return {name: np.array(value) + 1.0 for name, value in model.state_dict().items()}


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: d.pop("1.weight_hh_l1"), r"missing keys: '1\.weight_hh_l1'"),
        (lambda d: d.__setitem__("1.weight_hh_l9", np.zeros((24, 6))), r"unexpected keys: '1\.weight_hh_l9'"),
        (lambda d: d.__setitem__("2.weight", np.zeros((6, 3))), r"size mismatch for '2\.weight'.*\(6, 3\)"),
        (lambda d: d.__setitem__("1.bias_ih_l0", np.zeros(23)), r"size mismatch for '1\.bias_ih_l0'"),
        (lambda d: d.__setitem__("0.weight", "not an array"), r"'0\.weight'"),
        (lambda d: d.__setitem__("2.bias", np.array([object()] * 3)), r"'2\.bias'"),
    ],
    ids=["missing", "unexpected", "transposed", "short", "string", "objects"],
)
def test_a_rejected_load_state_dict_names_the_entry_and_changes_nothing(damage, message):
    model = _model()
    before = _snapshot(model)
    state = _changed_copy(model)  # every other entry is valid: none of them may be applied
    damage(state)
    with pytest.raises(RuntimeError, match=message):
        model.load_state_dict(state)
    _assert_unchanged(model, before)


def test_a_checkpoint_from_a_different_architecture_changes_nothing(tmp_path):
    other = nn.Sequential(nn.Embedding(7, 4), nn.GRU(4, 6, num_layers=2), nn.Linear(6, 3))
    tg.save(other.state_dict(), tmp_path / "gru.npz")
    model = _model()
    before = _snapshot(model)
    with pytest.raises(RuntimeError, match="size mismatch"):
        model.load_state_dict(tg.load(tmp_path / "gru.npz"))
    _assert_unchanged(model, before)


def test_a_good_checkpoint_round_trips_after_refused_ones(tmp_path):
    model = _model()
    state = _changed_copy(model)
    tg.save(state, tmp_path / "good.npz")
    (tmp_path / "bad.npz").write_bytes((tmp_path / "good.npz").read_bytes()[:100])
    with pytest.raises(ValueError):
        model.load_state_dict(tg.load(tmp_path / "bad.npz"))
    model.load_state_dict(tg.load(tmp_path / "good.npz"))
    _assert_unchanged(model, state)


def test_a_rejected_optimizer_state_leaves_the_optimizer_unchanged():
    model = _model()
    optimizer = optim.Adam(model.parameters(), lr=1e-2)
    x = tg.tensor([[1, 2], [3, 4]])
    out, _ = model[1](model[0](x))
    model[2](out).sum().backward()
    optimizer.step()
    before = optimizer.state_dict()
    wrong = optim.Adam(list(model.parameters())[:2], lr=1e-2).state_dict()
    with pytest.raises((ValueError, RuntimeError), match="param"):
        optimizer.load_state_dict(wrong)
    after = optimizer.state_dict()
    assert after["param_groups"] == before["param_groups"]
    for index, entry in before["state"].items():
        for key, value in entry.items():
            np.testing.assert_array_equal(after["state"][index][key], value)


def test_a_state_nested_deeper_than_load_reads_is_refused_by_save_before_writing(tmp_path):
    from tinygrad_rnn.serialization import MAX_DEPTH

    deep: list = []
    for _ in range(MAX_DEPTH + 5):
        deep = [deep]
    target = tmp_path / "deep.npz"
    with pytest.raises(ValueError, match="nests over"):
        tg.save({"x": deep}, target)
    assert not target.exists()
    shallow: list = []
    for _ in range(MAX_DEPTH - 5):
        shallow = [shallow]
    tg.save({"x": shallow}, target)
    assert tg.load(target) == {"x": shallow}
