"""tg.save / tg.load: exact round trips of model and optimizer state dicts, refusal of pickle, damaged
and foreign files, and atomic replacement."""

import io
import os
import pathlib
import pickle
import zipfile

import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn import backend, nn, optim, serialization


def assert_same_tree(got, want):
    """Equal structure, types and bits (NaN equal to NaN)."""
    if isinstance(want, dict):  # an OrderedDict state dict comes back as a plain (ordered) dict
        assert isinstance(got, dict)
        assert list(got) == list(want)
        for key in want:
            assert type(key) is type(next(k for k in got if k == key))
            assert_same_tree(got[key], want[key])
        return
    assert type(got) is type(want), (type(got), type(want))
    if isinstance(want, list | tuple):
        assert len(got) == len(want)
        for a, b in zip(got, want):
            assert_same_tree(a, b)
    elif isinstance(want, np.ndarray | np.generic):
        assert got.dtype == want.dtype and np.shape(got) == np.shape(want)
        np.testing.assert_array_equal(got, want)
    elif isinstance(want, float) and np.isnan(want):
        assert np.isnan(got)
    else:
        assert got == want


def test_model_state_dict_round_trip_is_exact(tmp_path):
    tg.manual_seed(3)
    model = nn.LSTM(4, 5, num_layers=2)
    path = tmp_path / "model.npz"
    tg.save(model.state_dict(), path)
    loaded = tg.load(path)
    assert_same_tree(loaded, model.state_dict())
    tg.manual_seed(4)
    other = nn.LSTM(4, 5, num_layers=2)
    other.load_state_dict(loaded)
    x = tg.randn(3, 2, 4)
    np.testing.assert_array_equal(other(x)[0].numpy(), model(x)[0].numpy())


def test_optimizer_state_dict_round_trip_is_exact_and_training_continues_identically(tmp_path):
    tg.manual_seed(5)
    model = nn.Linear(3, 2)
    opt = optim.Adam(
        [{"params": [model.weight]}, {"params": [model.bias], "lr": 0.05}], lr=0.01, amsgrad=True
    )
    x, y = tg.randn(8, 3), tg.randn(8, 2)

    def train(model, opt, steps):
        for _ in range(steps):
            opt.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            opt.step()

    train(model, opt, 2)
    tg.save(model.state_dict(), tmp_path / "m.npz")
    tg.save(opt.state_dict(), tmp_path / "o.npz")
    loaded = tg.load(tmp_path / "o.npz")
    assert_same_tree(loaded, opt.state_dict())
    assert set(loaded["state"]) == {0, 1}  # integer keys survive JSON
    assert loaded["param_groups"][0]["betas"] == (0.9, 0.999)

    copy = nn.Linear(3, 2)
    copy.load_state_dict(tg.load(tmp_path / "m.npz"))
    copy_opt = optim.Adam([{"params": [copy.weight]}, {"params": [copy.bias]}], lr=0.5)
    copy_opt.load_state_dict(loaded)
    train(model, opt, 3)
    train(copy, copy_opt, 3)
    np.testing.assert_array_equal(copy.weight.numpy(), model.weight.numpy())
    np.testing.assert_array_equal(copy.bias.numpy(), model.bias.numpy())


def test_nested_values_keep_their_types(tmp_path):
    state = {
        "ints": np.arange(6, dtype=np.int32).reshape(2, 3),
        "half": np.array([1.5, -2.0], dtype=np.float16),
        "flags": np.array([True, False]),
        "empty": np.zeros((0, 4)),
        "scalar": np.float32(2.5),
        "zero_d": np.array(7.0),
        "tensor": tg.tensor([1.0, 2.0], dtype=tg.float64),
        "numbers": [1, 2.5, float("nan"), float("inf"), -float("inf"), True, None, "text"],
        "tuple": (0.9, 0.999),
        1: {"nested": [{"deep": np.ones(2)}]},
        "": "empty key",
    }
    tg.save(state, tmp_path / "s.npz")
    loaded = tg.load(tmp_path / "s.npz")
    expected = dict(state, tensor=np.array([1.0, 2.0]))
    assert_same_tree(loaded, expected)


def test_save_refuses_values_that_would_need_pickle_before_writing(tmp_path):
    path = tmp_path / "bad.npz"
    with pytest.raises(TypeError, match=r"state\['f'\] is a function"):
        tg.save({"f": lambda: None}, path)
    with pytest.raises(TypeError, match="dtype object"):
        tg.save({"o": np.array([object()])}, path)
    with pytest.raises(TypeError, match="keys must be"):
        tg.save({(1, 2): 3}, path)
    assert not os.listdir(tmp_path)


def test_saved_file_is_a_plain_npz_with_the_structure_as_bytes(tmp_path):
    path = tmp_path / "plain.npz"
    tg.save({"w": np.ones(3)}, path)
    with np.load(path, allow_pickle=False) as archive:
        assert archive[serialization.STRUCTURE_MEMBER].dtype == np.uint8
        np.testing.assert_array_equal(archive["a0"], np.ones(3))


# ---- refused files --------------------------------------------------------------------------------------


class Payload:
    """Unpickling this writes a marker file: proof that a loader ran code from the file."""

    def __init__(self, marker):
        self.marker = pathlib.Path(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def make_payload_npz(path, marker):
    np.savez(path, a0=np.array([Payload(marker)], dtype=object))


def test_a_file_that_needs_pickle_is_refused_and_runs_no_code(tmp_path):
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()  # the payload is live: unpickling it runs code
    marker.unlink()
    path = tmp_path / "evil.npz"
    make_payload_npz(path, marker)
    with pytest.raises(ValueError, match=r"evil\.npz.*needs pickle"):
        tg.load(path)
    assert not marker.exists()

    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(ValueError, match=r"evil\.pkl.*(pickle|not a readable)"):
        tg.load(raw)
    assert not marker.exists()


def test_truncated_file_gives_a_clear_error_naming_the_path(tmp_path):
    path = tmp_path / "cut.npz"
    tg.save({"w": np.arange(1000.0)}, path)
    data = path.read_bytes()
    for size in (0, 10, len(data) // 2, len(data) - 5):
        path.write_bytes(data[:size])
        with pytest.raises(ValueError, match=r"cut\.npz.*(truncated or corrupted|not a readable)"):
            tg.load(path)


def test_corrupted_member_data_is_detected(tmp_path):
    path = tmp_path / "flip.npz"
    tg.save({"w": np.arange(1000.0)}, path)
    data = bytearray(path.read_bytes())
    position = data.index(b"a0.npy") + 400  # inside the stored array bytes
    data[position] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"flip\.npz.*truncated or corrupted"):
        tg.load(path)


def test_foreign_files_are_refused(tmp_path):
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, weights=np.ones(3))
    with pytest.raises(ValueError, match=r"foreign\.npz.*not written by tinygrad_rnn\.save.*weights"):
        tg.load(foreign)
    single = tmp_path / "single.npy"
    np.save(single, np.ones(3))
    with pytest.raises(ValueError, match=r"single\.npy.*single \.npy array"):
        tg.load(single)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match=r"notes\.txt"):
        tg.load(text)
    with pytest.raises(FileNotFoundError, match="missing"):
        tg.load(tmp_path / "missing.npz")


def write_structure(path, text):
    """An archive holding only a structure member with the given bytes."""
    with (
        zipfile.ZipFile(path, "w") as archive,
        archive.open(f"{serialization.STRUCTURE_MEMBER}.npy", "w") as member,
    ):
        np.lib.format.write_array(member, np.frombuffer(text, dtype=np.uint8))


def test_a_damaged_structure_member_is_refused(tmp_path):
    path = tmp_path / "structure.npz"
    write_structure(path, b'{"format": "other"}')
    with pytest.raises(ValueError, match=r"structure\.npz.*corrupted.*header"):
        tg.load(path)
    text = b'{"format": "tinygrad_rnn.state", "version": 1, "root": {"$array": "a9"}}'
    write_structure(path, text)
    with pytest.raises(ValueError, match="missing array member 'a9'"):
        tg.load(path)


# ---- atomic write ---------------------------------------------------------------------------------------


def test_a_failed_write_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    tg.save({"w": np.ones(4)}, path)
    before = path.read_bytes()

    def crash(file, arrays):
        file.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(backend, "save_npz", crash)
    with pytest.raises(OSError, match="disk full"):
        tg.save({"w": np.zeros(4)}, path)
    assert path.read_bytes() == before
    np.testing.assert_array_equal(tg.load(path)["w"], np.ones(4))
    assert os.listdir(tmp_path) == ["ckpt.npz"]  # the temporary file was removed


def test_an_interrupted_rename_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    tg.save({"w": np.ones(2)}, path)

    def interrupted(source, destination):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tg.save({"w": np.zeros(2)}, path)
    monkeypatch.undo()
    np.testing.assert_array_equal(tg.load(path)["w"], np.ones(2))
    assert os.listdir(tmp_path) == ["ckpt.npz"]


def test_save_into_a_missing_directory_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere.*does not exist"):
        tg.save({"w": np.ones(2)}, tmp_path / "nowhere" / "ckpt.npz")


def test_save_replaces_an_existing_file_and_keeps_its_permissions(tmp_path):
    path = tmp_path / "ckpt.npz"
    tg.save({"w": np.ones(2)}, path)
    os.chmod(path, 0o640)
    tg.save({"w": np.full(2, 3.0)}, str(path))
    np.testing.assert_array_equal(tg.load(str(path))["w"], [3.0, 3.0])
    assert os.stat(path).st_mode & 0o777 == 0o640


def test_tensors_on_any_device_are_saved_as_host_arrays(tmp_path, device):
    tg.save({"t": tg.tensor([1.0, 2.0], device=device)}, tmp_path / "d.npz")
    loaded = tg.load(tmp_path / "d.npz")["t"]
    assert isinstance(loaded, np.ndarray)
    np.testing.assert_array_equal(loaded, [1.0, 2.0])


# ---- file objects, checkpoints, map_location -------------------------------------------------------------


def checkpoint_of_a_trained_model():
    tg.manual_seed(8)
    model = nn.LSTM(3, 4)
    opt = optim.Adam(model.parameters(), lr=0.01)
    out, _ = model(tg.randn(5, 2, 3))
    loss = (out**2).mean()
    loss.backward()
    opt.step()
    return model, opt, {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3, "loss": loss}


def test_a_checkpoint_round_trips_through_bytesio_and_resumes_training():
    model, opt, checkpoint = checkpoint_of_a_trained_model()
    buffer = io.BytesIO()
    tg.save(checkpoint, buffer)
    assert buffer.tell() == len(buffer.getvalue()) > 0  # written at the position, left open
    buffer.seek(0)
    loaded = tg.load(buffer)
    assert loaded["epoch"] == 3 and float(loaded["loss"]) == checkpoint["loss"].item()
    assert_same_tree(loaded["model"], model.state_dict())
    assert_same_tree(loaded["optimizer"], opt.state_dict())
    tg.manual_seed(9)
    resumed = nn.LSTM(3, 4)
    resumed.load_state_dict(loaded["model"])
    resumed_opt = optim.Adam(resumed.parameters(), lr=0.5)
    resumed_opt.load_state_dict(loaded["optimizer"])
    assert resumed_opt.param_groups[0]["lr"] == 0.01
    x = tg.randn(4, 1, 3)
    for m, o in ((model, opt), (resumed, resumed_opt)):
        o.zero_grad()
        (m(x)[0] ** 2).mean().backward()
        o.step()
    for a, b in zip(resumed.parameters(), model.parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_open_real_files_in_binary_mode_work_and_text_mode_is_refused_by_name(tmp_path):
    state = {"w": np.arange(6.0).reshape(2, 3), "step": 7}
    path = tmp_path / "ckpt.pt"
    with open(path, "wb") as f:
        tg.save(state, f)
    assert path.stat().st_size > 0
    with open(path, "rb") as f:
        assert_same_tree(tg.load(f), state)
    assert_same_tree(tg.load(str(path)), state)  # what a file object wrote, a path reads
    with open(tmp_path / "text.pt", "w") as f, pytest.raises(TypeError, match="binary mode"):
        tg.save(state, f)
    with open(path, encoding="latin-1") as f, pytest.raises(TypeError, match="binary mode"):
        tg.load(f)


def test_a_file_object_is_read_from_its_current_position():
    buffer = io.BytesIO()
    buffer.write(b"header bytes")
    start = buffer.tell()
    tg.save({"a": np.ones(2)}, buffer)
    buffer.seek(start)
    assert_same_tree(tg.load(buffer), {"a": np.ones(2)})


def test_bad_file_objects_are_refused_with_clear_errors(tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.npz"
    make_payload_npz(evil, marker)
    with open(evil, "rb") as f, pytest.raises(ValueError, match=r"evil\.npz.*needs pickle"):
        tg.load(f)
    assert not marker.exists()
    with pytest.raises(ValueError, match=r"BytesIO.*(pickle|not a readable)"):
        tg.load(io.BytesIO(pickle.dumps(Payload(marker))))
    assert not marker.exists()
    good = io.BytesIO()
    tg.save({"w": np.arange(100.0)}, good)
    data = good.getvalue()
    for size in (0, 10, len(data) // 2):
        with pytest.raises(ValueError, match=r"BytesIO.*(truncated or corrupted|not a readable)"):
            tg.load(io.BytesIO(data[:size]))
    foreign = io.BytesIO()
    np.savez(foreign, weights=np.ones(3))
    foreign.seek(0)
    with pytest.raises(ValueError, match=r"not written by tinygrad_rnn\.save"):
        tg.load(foreign)
    with pytest.raises(TypeError, match="path or a binary file object"):
        tg.load(12)
    with pytest.raises(TypeError, match="path or a binary file object"):
        tg.save({}, 12)


def test_saving_a_module_or_optimizer_object_points_to_state_dict(tmp_path):
    model, opt, _ = checkpoint_of_a_trained_model()
    for obj, name in ((model, "LSTM"), (opt, "Adam"), ({"model": model}, "LSTM")):
        buffer = io.BytesIO()
        with pytest.raises(TypeError, match=rf"{name} object.*without pickle.*state_dict\(\)"):
            tg.save(obj, buffer)
        assert buffer.getvalue() == b""  # refused before anything is written
    with pytest.raises(TypeError, match="state_dict"):
        tg.save(model, tmp_path / "model.pt")
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize(
    "map_location",
    ["cpu", tg.device("cpu"), "cuda:0", {"cuda:0": "cpu"}, lambda storage, location: storage, None],
)
def test_load_accepts_map_location_and_returns_host_arrays(map_location):
    buffer = io.BytesIO()
    tg.save({"w": tg.ones(2)}, buffer)
    buffer.seek(0)
    loaded = tg.load(buffer, map_location=map_location, weights_only=True)
    assert isinstance(loaded["w"], np.ndarray)


def test_load_refuses_a_map_location_that_is_not_a_device():
    with pytest.raises(ValueError, match="map_location 'gpu'"):
        tg.load(io.BytesIO(), map_location="gpu")
    with pytest.raises(TypeError, match="map_location"):
        tg.load(io.BytesIO(), map_location=3.5)


def test_a_pytorch_checkpoint_is_refused_with_the_way_to_convert_it(tmp_path):
    # torch.save's format: a zip archive whose object tree is the pickle data.pkl.
    checkpoint = tmp_path / "model.pt"
    with zipfile.ZipFile(checkpoint, "w") as archive:
        archive.writestr("model/data.pkl", b"\x80\x02}q\x00.")
        archive.writestr("model/data/0", bytes(16))
    with pytest.raises(ValueError, match=r"model\.pt.*PyTorch checkpoint.*tinygrad_rnn\.save\("):
        tg.load(checkpoint)
