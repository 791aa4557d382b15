"""Module, Parameter and the containers: registration, traversal, modes, devices, state dicts, repr."""

import copy
import sys
from collections import OrderedDict

import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn import nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(tg.ones(3, dtype=tg.float64))
        self.inner = nn.Linear(3, 2, dtype=tg.float64)
        self.register_buffer("steps", tg.zeros(1, dtype=tg.float64))
        self.register_buffer("scratch", tg.zeros(2, dtype=tg.float64), persistent=False)
        self.note = "plain attribute"

    def forward(self, x):
        return self.inner(x * self.scale)


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = Block()
        self.head = nn.Sequential(nn.Tanh(), nn.Linear(2, 1, dtype=tg.float64))
        self.extra = nn.ModuleList([nn.Linear(1, 1, bias=False, dtype=tg.float64)])

    def forward(self, x):
        return self.extra[0](self.head(self.block(x)))


# ---- Parameter ------------------------------------------------------------------------------------------


def test_parameter_requires_grad_and_is_a_leaf_tensor():
    p = nn.Parameter(tg.ones(2, 3))
    assert isinstance(p, tg.Tensor) and p.requires_grad and p.is_leaf
    assert not nn.Parameter(tg.ones(2), requires_grad=False).requires_grad


def test_parameter_shares_the_storage_of_a_tensor_but_copies_arrays():
    t = tg.zeros(3)
    p = nn.Parameter(t)
    with tg.no_grad():
        p.fill_(2.0)
    np.testing.assert_array_equal(t.numpy(), [2.0, 2.0, 2.0])
    array = np.zeros(3)
    q = nn.Parameter(array)
    array[0] = 5.0
    assert q.numpy()[0] == 0.0 and q.dtype == tg.float64


def test_parameter_gradients_accumulate_like_any_leaf():
    p = nn.Parameter(tg.tensor([1.0, 2.0], dtype=tg.float64))
    (p * p).sum().backward()
    (p * 3).sum().backward()
    np.testing.assert_allclose(p.grad.numpy(), [2.0 + 3.0, 4.0 + 3.0])
    assert type(p * 2) is tg.Tensor


def test_parameter_repr_says_parameter():
    assert repr(nn.Parameter(tg.zeros(2))).startswith("Parameter containing:\ntensor(")


# ---- registration and traversal --------------------------------------------------------------------------


def test_named_parameters_use_dotted_names_in_registration_order():
    names = [name for name, _ in Model().named_parameters()]
    assert names == [
        "block.scale",
        "block.inner.weight",
        "block.inner.bias",
        "head.1.weight",
        "head.1.bias",
        "extra.0.weight",
    ]


def test_parameters_buffers_children_and_modules():
    model = Model()
    assert len(list(model.parameters())) == 6
    assert [name for name, _ in model.named_children()] == ["block", "head", "extra"]
    assert list(model.children()) == [model.block, model.head, model.extra]
    kinds = [type(m).__name__ for m in model.modules()]
    assert kinds == ["Model", "Block", "Linear", "Sequential", "Tanh", "Linear", "ModuleList", "Linear"]
    assert [name for name, _ in model.named_buffers()] == ["block.steps", "block.scratch"]
    assert [name for name, _ in model.named_modules()][:3] == ["", "block", "block.inner"]
    assert len(list(model.block.parameters(recurse=False))) == 1


def test_a_shared_parameter_is_yielded_once():
    shared = nn.Linear(2, 2)
    model = nn.Sequential(shared, nn.Tanh(), shared)
    assert len(list(model.parameters())) == 2
    assert len(list(model.modules())) == 3


def test_plain_attributes_are_not_registered():
    block = Block()
    assert block.note == "plain attribute"
    assert "note" not in dict(block.named_parameters()) and "note" not in block.state_dict()


def test_assigning_a_tensor_to_a_parameter_name_is_a_type_error():
    block = Block()
    with pytest.raises(TypeError, match=r"expected an nn\.Parameter or None"):
        block.scale = tg.ones(3)
    block.scale = None
    assert "scale" not in dict(block.named_parameters())


def test_reassigning_a_name_moves_it_between_kinds():
    block = Block()
    block.inner = nn.Parameter(tg.zeros(1))
    assert "inner" in dict(block.named_parameters()) and "inner" not in dict(block.named_children())
    del block.inner
    with pytest.raises(AttributeError, match="'Block' object has no attribute 'inner'"):
        _ = block.inner


def test_assigning_before_super_init_explains_the_fix():
    class Broken(nn.Module):
        def __init__(self):
            self.weight = nn.Parameter(tg.zeros(1))

    with pytest.raises(AttributeError, match=r"super\(\).__init__\(\)"):
        Broken()


def test_register_rejects_bad_names_and_values():
    module = nn.Module()
    with pytest.raises(KeyError, match=r"contain no '\.'"):
        module.register_parameter("a.b", nn.Parameter(tg.zeros(1)))
    with pytest.raises(TypeError, match=r"must be an nn\.Parameter"):
        module.register_parameter("a", tg.zeros(1))
    with pytest.raises(TypeError, match="must be a Tensor"):
        module.register_buffer("b", np.zeros(1))
    with pytest.raises(TypeError, match="must be a Module"):
        module.add_module("c", "not a module")


def test_call_runs_forward_and_a_module_without_forward_says_so():
    model = Model()
    x = tg.randn(4, 3, dtype=tg.float64)
    assert model(x).shape == (4, 1)
    with pytest.raises(NotImplementedError, match="Module does not define forward"):
        nn.Module()(x)


def test_apply_visits_children_before_the_parent():
    visited = []
    Model().apply(lambda m: visited.append(type(m).__name__))
    assert visited[-1] == "Model" and visited.index("Linear") < visited.index("Block")
    assert len(visited) == 8


def test_deep_nesting_needs_no_recursion():
    model = nn.Linear(1, 1)
    for _ in range(600):
        model = nn.Sequential(model)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(150)
    try:
        assert len(list(model.parameters())) == 2
        assert len(model.state_dict()) == 2
        assert repr(model).count("Sequential(") == 600
    finally:
        sys.setrecursionlimit(limit)


def test_deepcopy_gives_an_independent_model_with_equal_values():
    model = Model()
    clone = copy.deepcopy(model)
    assert isinstance(clone.block.inner.weight, nn.Parameter)
    assert clone.block.inner.weight is not model.block.inner.weight
    x = tg.randn(2, 3, dtype=tg.float64)
    np.testing.assert_array_equal(clone(x).numpy(), model(x).numpy())
    with tg.no_grad():
        clone.block.scale.fill_(0.0)
    assert model.block.scale.numpy().all()


# ---- modes and gradients ---------------------------------------------------------------------------------


def test_train_and_eval_reach_every_submodule():
    model = Model()
    assert all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    with pytest.raises(TypeError, match="mode must be a bool"):
        model.train("no")


def test_zero_grad_sets_none_or_zeros():
    model = Model()
    model(tg.randn(4, 3, dtype=tg.float64)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.numpy().any() for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_requires_grad_false_freezes_the_parameters():
    model = Model()
    model.block.requires_grad_(False)
    model(tg.randn(2, 3, dtype=tg.float64)).sum().backward()
    assert model.block.inner.weight.grad is None and model.extra[0].weight.grad is not None


# ---- devices and dtypes ----------------------------------------------------------------------------------


def test_to_dtype_converts_in_place_keeping_the_parameter_objects():
    model = Model()
    model(tg.randn(2, 3, dtype=tg.float64)).sum().backward()
    before = list(model.parameters())
    assert model.to(tg.float32) is model
    assert [id(p) for p in model.parameters()] == [id(p) for p in before]
    assert all(p.dtype == tg.float32 and p.grad.dtype == tg.float32 for p in model.parameters())
    assert model.block.steps.dtype == tg.float32
    assert model(tg.randn(2, 3)).dtype == tg.float32
    model.double()
    assert all(p.dtype == tg.float64 for p in model.parameters())


def test_to_device_moves_parameters_and_buffers_in_place(device):
    model = Model()
    held = list(model.parameters())  # what an optimizer would hold
    values = [p.numpy().copy() for p in held]
    model.to(device)
    assert all(p.device == device for p in held) and model.block.steps.device == device
    for p, v in zip(held, values):
        np.testing.assert_array_equal(p.numpy(), v)
    out = model(tg.randn(2, 3, dtype=tg.float64, device=device))
    out.sum().backward()
    assert all(p.grad.device == device for p in held)
    model.cpu()
    assert all(p.device == "cpu" for p in held)


def test_to_rejects_integer_dtypes():
    with pytest.raises(TypeError, match="only accepts floating dtypes"):
        Model().to(tg.int64)


# ---- state dicts ---------------------------------------------------------------------------------------


def test_state_dict_holds_numpy_copies_of_parameters_and_persistent_buffers():
    model = Model()
    state = model.state_dict()
    # PyTorch's order: a module's own parameters, then its buffers, then each submodule.
    assert list(state) == [
        "block.scale",
        "block.steps",
        "block.inner.weight",
        "block.inner.bias",
        "head.1.weight",
        "head.1.bias",
        "extra.0.weight",
    ]
    assert all(isinstance(v, np.ndarray) for v in state.values())
    state["block.scale"][:] = 7.0
    assert model.block.scale.numpy()[0] == 1.0


def test_load_state_dict_round_trip_is_exact_and_keeps_objects():
    source, target = Model(), Model()
    weight = target.block.inner.weight
    result = target.load_state_dict(source.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert target.block.inner.weight is weight
    for (name, a), b in zip(source.state_dict().items(), target.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    x = tg.randn(3, 3, dtype=tg.float64)
    np.testing.assert_array_equal(source(x).numpy(), target(x).numpy())


def test_load_state_dict_reports_every_problem_at_once_and_changes_nothing():
    model = Model()
    before = model.state_dict()
    state = model.state_dict()
    del state["block.scale"]
    del state["head.1.bias"]
    state["block.unknown"] = np.zeros(2)
    state["block.inner.weight"] = np.zeros((5, 5))
    state["extra.0.weight"] = np.full((1, 1), 9.0)
    with pytest.raises(RuntimeError) as error:
        model.load_state_dict(state)
    message = str(error.value)
    for part in [
        "'block.scale'",
        "'head.1.bias'",
        "unexpected keys: 'block.unknown'",
        "size mismatch for 'block.inner.weight'",
        "(5, 5)",
        "(2, 3)",
        "nothing was changed",
    ]:
        assert part in message
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)


def test_load_state_dict_non_strict_returns_missing_and_unexpected_and_loads_the_rest():
    model = Model()
    state = {"block.scale": np.full(3, 2.0), "something.else": np.zeros(1)}
    result = model.load_state_dict(state, strict=False)
    assert result.unexpected_keys == ["something.else"]
    assert "block.scale" not in result.missing_keys and "head.1.bias" in result.missing_keys
    np.testing.assert_array_equal(model.block.scale.numpy(), [2.0, 2.0, 2.0])


def test_load_state_dict_shape_mismatch_fails_even_when_not_strict():
    model = Model()
    with pytest.raises(RuntimeError, match=r"size mismatch for 'block\.scale'"):
        model.load_state_dict({"block.scale": np.zeros(4)}, strict=False)
    np.testing.assert_array_equal(model.block.scale.numpy(), np.ones(3))


def test_load_state_dict_converts_dtype_and_accepts_tensors():
    model = nn.Linear(2, 2)
    model.load_state_dict({"weight": tg.ones(2, 2, dtype=tg.float64), "bias": np.array([1, 2])})
    assert model.weight.dtype == tg.float32
    np.testing.assert_array_equal(model.bias.numpy(), [1.0, 2.0])


def test_load_state_dict_rejects_values_that_are_not_numbers():
    model = nn.Linear(2, 2)
    before = model.weight.numpy().copy()
    with pytest.raises(RuntimeError, match="value for 'weight' is not a numeric array"):
        model.load_state_dict({"weight": np.array([["a", "b"], ["c", "d"]]), "bias": np.zeros(2)})
    np.testing.assert_array_equal(model.weight.numpy(), before)
    with pytest.raises(TypeError, match="expected a mapping"):
        model.load_state_dict([1, 2])


# ---- containers and repr ---------------------------------------------------------------------------------


def test_repr_is_nested_like_pytorch():
    expected = (
        "Model(\n"
        "  (block): Block(\n"
        "    (inner): Linear(in_features=3, out_features=2, bias=True)\n"
        "  )\n"
        "  (head): Sequential(\n"
        "    (0): Tanh()\n"
        "    (1): Linear(in_features=2, out_features=1, bias=True)\n"
        "  )\n"
        "  (extra): ModuleList(\n"
        "    (0): Linear(in_features=1, out_features=1, bias=False)\n"
        "  )\n"
        ")"
    )
    assert repr(Model()) == expected


def test_sequential_chains_and_indexes():
    first, second = nn.Linear(3, 4, dtype=tg.float64), nn.Linear(4, 2, dtype=tg.float64)
    model = nn.Sequential(first, nn.Tanh(), second)
    x = tg.randn(5, 3, dtype=tg.float64)
    np.testing.assert_allclose(model(x).numpy(), second(first(x).tanh()).numpy())
    assert len(model) == 3 and model[0] is first and model[-1] is second
    assert isinstance(model[1:], nn.Sequential) and len(model[1:]) == 2
    assert list(model) == [first, model[1], second]
    with pytest.raises(IndexError, match="out of range for 3 modules"):
        model[3]
    model.append(nn.ReLU())
    assert len(model) == 4


def test_sequential_from_an_ordered_dict_uses_its_names():
    model = nn.Sequential(OrderedDict(encoder=nn.Linear(2, 3), act=nn.ReLU()))
    assert list(model.state_dict()) == ["encoder.weight", "encoder.bias"]


def test_module_list_registers_appends_and_inserts():
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(2)])
    layers.append(nn.Linear(2, 3))
    layers.extend([nn.Tanh()])
    layers.insert(0, nn.ReLU())
    assert [type(m).__name__ for m in layers] == ["ReLU", "Linear", "Linear", "Linear", "Tanh"]
    assert layers[-1] is list(layers)[4] and len(layers) == 5
    assert len(list(layers.parameters())) == 6
    assert next(iter(layers.state_dict())) == "1.weight"
    layers[0] = nn.Identity()
    assert isinstance(layers[0], nn.Identity)
    with pytest.raises(IndexError, match="out of range"):
        layers[5]


def test_module_dict_registers_under_its_keys():
    layers = nn.ModuleDict({"encoder": nn.Linear(2, 3), "act": nn.Tanh()})
    layers["decoder"] = nn.Linear(3, 2)
    assert layers.keys() == ["encoder", "act", "decoder"] and len(layers) == 3
    assert "act" in layers and isinstance(layers["decoder"], nn.Linear)
    assert list(layers.state_dict()) == ["encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias"]
    del layers["act"]
    assert list(layers) == ["encoder", "decoder"]
    with pytest.raises(KeyError, match="no key 'act'"):
        layers["act"]
