"""tg.func (jvp, vjp, jacfwd, jacrev, functional_call) and forward_ad's public API, through modules:
every recurrent layer configuration on dual inputs and on dual parameters, checked against reverse
mode, and jacfwd == jacrev on random graphs."""

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_rnn as tg
from tinygrad_rnn import nn
from tinygrad_rnn.autograd import forward_ad as fwad
from tinygrad_rnn.func import functional_call, jacfwd, jacrev, jvp, vjp


def _tensor(shape, seed):
    return tg.tensor(np.random.default_rng(seed).standard_normal(shape))


# ---- forward_ad ----------------------------------------------------------------------------------------


def test_make_dual_and_unpack_dual_give_the_directional_derivative():
    x, v = _tensor((3,), 0), _tensor((3,), 1)
    with fwad.dual_level():
        y = (fwad.make_dual(x, v).sin() * 2).sum()
        primal, tangent = fwad.unpack_dual(y)
        assert fwad.unpack_dual(primal).tangent is None
    np.testing.assert_allclose(primal.item(), 2 * np.sin(x.numpy()).sum())
    np.testing.assert_allclose(tangent.item(), (2 * np.cos(x.numpy()) * v.numpy()).sum())
    assert fwad.unpack_dual(y).tangent is None  # the level's tangents end with it


def test_batched_tangents_carry_k_directions_in_one_pass():
    x, directions = _tensor((2, 3), 0), _tensor((4, 2, 3), 1)
    with fwad.dual_level():
        y = fwad.make_dual(x, directions, batched=True).exp()
        tangent = fwad.unpack_dual(y).tangent
    assert tangent.shape == (4, 2, 3)
    np.testing.assert_allclose(tangent.numpy(), directions.numpy() * np.exp(x.numpy()))


def test_forward_ad_misuse_raises_a_clear_error():
    x = _tensor((3,), 0)
    with pytest.raises(RuntimeError, match="inside a dual level"):
        fwad.make_dual(x, x)
    with fwad.dual_level():
        with pytest.raises(ValueError, match="primal's shape"):
            fwad.make_dual(x, _tensor((4,), 1))
        with pytest.raises(ValueError, match=r"\(K, \*"):
            fwad.make_dual(x, _tensor((3,), 1), batched=True)
        with pytest.raises(TypeError, match="floating"):
            fwad.make_dual(tg.tensor([1, 2, 3]), x)
        with pytest.raises(RuntimeError, match="Nested"):
            fwad.enter_dual_level()


def test_dual_tensors_keep_their_reverse_mode_history():
    w = _tensor((3,), 0).requires_grad_()
    with fwad.dual_level():
        y = (fwad.make_dual(w, tg.ones(3, dtype=tg.float64)) ** 2).sum()
        tangent = fwad.unpack_dual(y).tangent
        y.backward()
    np.testing.assert_allclose(w.grad.numpy(), 2 * w.numpy())
    np.testing.assert_allclose(tangent.item(), 2 * w.numpy().sum())


def test_in_place_writes_into_dual_tensors_carry_tangents_without_a_tape():
    x, v = _tensor((3, 4), 0), _tensor((3, 4), 1)
    with tg.no_grad(), fwad.dual_level():
        y = fwad.make_dual(x, v) * 1.0
        y[1] = y[0] * 3
        y.mul_(2)
        tangent = fwad.unpack_dual(y).tangent.numpy()
    expected = 2 * v.numpy()
    expected[1] = 6 * v.numpy()[0]
    np.testing.assert_allclose(tangent, expected)


# ---- tg.func ---------------------------------------------------------------------------------------------


def test_jvp_and_vjp_agree_with_each_other_and_return_plain_tensors():
    x, v, u = _tensor((2, 3), 0), _tensor((2, 3), 1), _tensor((2,), 2)

    def f(a):
        return (a.tanh() @ a.T).sum(1)

    out, jv = jvp(f, (x,), (v,))
    out2, vjp_fn = vjp(f, x)
    (vj,) = vjp_fn(u)
    np.testing.assert_allclose(out.numpy(), out2.numpy())
    assert not out.requires_grad and not jv.requires_grad
    np.testing.assert_allclose((u.numpy() * jv.numpy()).sum(), (vj.numpy() * v.numpy()).sum(), rtol=1e-12)
    (again,) = vjp_fn(u)  # the tape is kept for further calls
    np.testing.assert_allclose(again.numpy(), vj.numpy())


def test_func_refuses_bad_arguments_at_the_call():
    x = _tensor((3,), 0)
    with pytest.raises(ValueError, match="tangent 0 has shape"):
        jvp(lambda a: a * 2, (x,), (_tensor((4,), 1),))
    with pytest.raises(TypeError, match="must return a Tensor"):
        jvp(lambda a: 3.0, (x,), (x,))
    _, vjp_fn = vjp(lambda a: a * 2, x)
    with pytest.raises(ValueError, match="cotangent"):
        vjp_fn(_tensor((4,), 1))
    with pytest.raises(ValueError, match="argnums"):
        jacfwd(lambda a: a, argnums=3)(x)


OPS = [
    lambda a, b: a * b,
    lambda a, b: a + b.sin(),
    lambda a, b: (a - b).tanh(),
    lambda a, b: a.sigmoid() / (b * b + 1),
    lambda a, b: tg.cat([a, b], dim=0)[: a.shape[0]] * b,
    lambda a, b: a.exp() * b.cos(),
    lambda a, b: tg.stack([a, b]).sum(0),
    lambda a, b: a.softmax(dim=-1) + b,
]


@given(
    program=st.lists(
        st.tuples(st.integers(0, len(OPS) - 1), st.integers(0, 9), st.integers(0, 9)), min_size=1, max_size=6
    )
)
def test_jacfwd_equals_jacrev_on_random_graphs(program):
    def f(x, y):
        values = [x, y]
        for op, i, j in program:
            values.append(OPS[op](values[i % len(values)], values[j % len(values)]))
        return values[-1] @ x.T

    x, y = _tensor((2, 3), 0), _tensor((2, 3), 1)
    forward = jacfwd(f, argnums=(0, 1))(x, y)
    reverse = jacrev(f, argnums=(0, 1))(x, y)
    for a, b in zip(forward, reverse):
        assert a.shape == (2, 2, 2, 3)
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-12)


def test_jacfwd_with_several_outputs_matches_jacrev():
    x = _tensor((3,), 0)

    def f(a):
        return a.sin(), (a * a).sum()

    forward, reverse = jacfwd(f)(x), jacrev(f)(x)
    assert forward[0].shape == (3, 3) and forward[1].shape == (3,)
    for a, b in zip(forward, reverse):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12)


def test_functional_call_replaces_parameters_for_one_call_only():
    tg.manual_seed(0)
    layer = nn.Linear(3, 2).double()
    weight = _tensor((2, 3), 5)
    x = _tensor((4, 3), 1)
    out = functional_call(layer, {"weight": weight}, (x,))
    np.testing.assert_allclose(out.numpy(), x.numpy() @ weight.numpy().T + layer.bias.numpy())
    assert layer.weight is layer._parameters["weight"] and layer.weight.shape == (2, 3)
    with pytest.raises(KeyError, match="no parameter or buffer named 'wieght'"):
        functional_call(layer, {"wieght": weight}, (x,))
    with pytest.raises(ValueError, match="has shape"):
        functional_call(layer, {"weight": _tensor((3, 3), 0)}, (x,))
    np.testing.assert_allclose(
        layer(x).numpy(), out.numpy() - x.numpy() @ (weight.numpy() - layer.weight.numpy()).T
    )


# ---- every recurrent configuration, dual inputs and dual parameters -------------------------------------

CONFIGURATIONS = list(
    itertools.product(["RNN", "LSTM", "GRU"], [1, 2], [False, True], [False, True], [False, True])
)


def _layer(kind, layers, bidirectional, batch_first):
    tg.manual_seed(3)
    return getattr(nn, kind)(
        3, 4, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first
    ).double()


@pytest.mark.parametrize("kind,layers,bidirectional,batch_first,unfused", CONFIGURATIONS)
def test_forward_ad_through_every_recurrent_layer_matches_reverse_mode(
    kind, layers, bidirectional, batch_first, unfused
):
    layer = _layer(kind, layers, bidirectional, batch_first)
    names = [name for name, _ in layer.named_parameters()]
    params = [p.detach() for _, p in layer.named_parameters()]
    x = _tensor((2, 5, 3) if batch_first else (5, 2, 3), 0)

    def f(inputs, *weights):
        out, hidden = functional_call(layer, dict(zip(names, weights)), (inputs,))
        last = hidden[0] if kind == "LSTM" else hidden
        return (out * out).sum() + (last * 1.5).sum() + (hidden[1].sum() if kind == "LSTM" else 0)

    primals = [x, *params]
    directions = [_tensor(p.shape, 10 + i) for i, p in enumerate(primals)]
    with nn.unfused() if unfused else _nothing():
        _, forward = jvp(f, tuple(primals), tuple(directions))
        _, vjp_fn = vjp(f, *primals)
        pulled = vjp_fn(tg.tensor(1.0, dtype=tg.float64))
    reverse = sum(float((g.numpy() * d.numpy()).sum()) for g, d in zip(pulled, directions))
    assert forward.item() == pytest.approx(reverse, rel=1e-10)


def test_an_lstm_module_runs_on_dual_inputs_and_matches_finite_differences():
    layer = _layer("LSTM", 2, True, False)
    x, v = _tensor((4, 2, 3), 0), _tensor((4, 2, 3), 1)
    with fwad.dual_level():
        out, (_, c) = layer(fwad.make_dual(x, v))
        tangent = fwad.unpack_dual(out).tangent.numpy()
        assert fwad.unpack_dual(c).tangent is not None
    step = 1e-6
    with tg.no_grad():
        numeric = (layer(x + step * v)[0].numpy() - layer(x - step * v)[0].numpy()) / (2 * step)
    np.testing.assert_allclose(tangent, numeric, rtol=1e-6, atol=1e-8)


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return None


# ---- Gauss-Newton vector products ------------------------------------------------------------------------


def _rnn_outputs_and_parameters():
    tg.manual_seed(4)
    rnn, head = nn.RNN(2, 3).double(), nn.Linear(3, 4).double()
    x = _tensor((3, 2, 2), 0)
    names = [name for name, _ in rnn.named_parameters()]
    params = [p.detach() for p in rnn.parameters()] + [p.detach() for p in head.parameters()]

    def outputs(*weights):
        out, _ = functional_call(rnn, dict(zip(names, weights[: len(names)])), (x,))
        return (out @ weights[len(names)].T + weights[len(names) + 1]).reshape(-1, 4)

    return outputs, params


def _explicit_jacobian(func, params):
    blocks = jacfwd(func, argnums=tuple(range(len(params))))(*params)
    rows = blocks[0].shape[0] * blocks[0].shape[1]
    return np.concatenate([b.numpy().reshape(rows, -1) for b in blocks], axis=1)


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_gauss_newton_vector_product_equals_explicit_jt_h_j_on_a_small_rnn(loss):
    func, params = _rnn_outputs_and_parameters()
    jacobian = _explicit_jacobian(func, params)
    z = func(*params).numpy()
    if loss == "mse":
        hessian, product = 2.0 * np.eye(z.size), tg.func.mse_hessian_vp("sum")
    else:
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        blocks = [np.diag(row) - np.outer(row, row) for row in p]
        hessian = np.zeros((z.size, z.size))
        for i, block in enumerate(blocks):
            hessian[4 * i : 4 * i + 4, 4 * i : 4 * i + 4] = block / len(blocks)
        product = tg.func.cross_entropy_hessian_vp("mean")
    v = [_tensor(p.shape, 20 + i) for i, p in enumerate(params)]
    flat_v = np.concatenate([t.numpy().reshape(-1) for t in v])
    expected = jacobian.T @ hessian @ jacobian @ flat_v
    got = tg.func.gnvp(func, tuple(params), tuple(v), product)
    np.testing.assert_allclose(
        np.concatenate([g.numpy().reshape(-1) for g in got]), expected, rtol=1e-10, atol=1e-12
    )
    # G is positive semi-definite: vᵀ G v >= 0
    assert flat_v @ expected >= -1e-12
