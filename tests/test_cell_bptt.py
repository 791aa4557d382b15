"""Tests for reference.check_cell_bptt: a user-written cell's hand-derived BPTT held against the tape.

The cells here are the worked example of docs/bptt.md §8: a minimal gated cell with one state and a
two-part (h, c) cell. A correct derivation agrees to 1e-10; each classic mistake is caught and named.
"""

import numpy as np
import pytest

from tinygrad_rnn import reference


def sigmoid(a):
    return 0.5 * (1 + np.tanh(0.5 * a))


# ---- the minimal gated cell: z = σ(W_z x + U_z h + b_z), n = tanh(W x + U h + b), h' = z ⊙ h + (1 − z) ⊙ n


def gated_cell(p, x, h):
    z = (x @ p["W_z"].T + h @ p["U_z"].T + p["b_z"]).sigmoid()
    n = (x @ p["W"].T + h @ p["U"].T + p["b"]).tanh()
    return z * h + (1 - z) * n


def gated_backward(p, x, h, dh_new, mistake=None):
    """dh' arrives; the pre-activations are a_z (of z) and a_n (of n)."""
    z = sigmoid(x @ p["W_z"].T + h @ p["U_z"].T + p["b_z"])
    n = np.tanh(x @ p["W"].T + h @ p["U"].T + p["b"])
    dz = dh_new * (h - n)  # ∂h'/∂z = h − n
    dn = dh_new * (1 - z)  # ∂h'/∂n = 1 − z
    da_z = dz * z * (1 - z)  # σ' = z(1 − z)
    da_n = dn * (1 - n * n) if mistake != "tanh_derivative" else dn * (1 - n)
    grads = {
        "W_z": da_z.T @ x,
        "U_z": da_z.T @ h,
        "b_z": da_z.sum(axis=0),
        "W": da_n.T @ x,
        "U": da_n.T @ h if mistake != "transposed_product" else h.T @ da_n,
        "b": da_n.sum(axis=0),
    }
    # dh = direct path z ⊙ dh' plus the two products back through U_z and U.
    dh = da_z @ p["U_z"] + da_n @ p["U"]
    if mistake != "missing_direct_path":
        dh = dh + z * dh_new
    return grads, dh


def gated_problem(seed=0, steps=6, batch=3, inputs=4, hidden=5):
    rng = np.random.default_rng(seed)
    params = {
        "W_z": rng.standard_normal((hidden, inputs)) * 0.5,
        "U_z": rng.standard_normal((hidden, hidden)) * 0.5,
        "b_z": rng.standard_normal(hidden) * 0.5,
        "W": rng.standard_normal((hidden, inputs)) * 0.5,
        "U": rng.standard_normal((hidden, hidden)) * 0.5,
        "b": rng.standard_normal(hidden) * 0.5,
    }
    return params, rng.standard_normal((steps, batch, inputs)), rng.standard_normal((batch, hidden))


def test_a_correct_hand_derivation_of_a_gated_cell_agrees_with_the_tape_to_1e10():
    params, x, h0 = gated_problem()
    report = reference.check_cell_bptt(gated_cell, gated_backward, params, x, h0)
    assert set(report.errors) == {*params, "dh_0", "dh_t"}
    assert report.max_error < 1e-10, report.errors
    report.assert_close(1e-10)
    assert report.tape["dh_t"].shape == (6, 3, 5)


@pytest.mark.parametrize(
    ("mistake", "wrong"),
    [
        ("missing_direct_path", {"dh_0", "dh_t"}),  # every parameter is hit too, through the states
        ("tanh_derivative", {"W", "U", "b"}),
        ("transposed_product", {"U"}),
    ],
)
def test_a_wrong_hand_derivation_is_caught_and_the_wrong_terms_are_named(mistake, wrong):
    params, x, h0 = gated_problem()

    def backward(p, x_t, h, dh):
        return gated_backward(p, x_t, h, dh, mistake=mistake)

    report = reference.check_cell_bptt(gated_cell, backward, params, x, h0)
    assert all(report.errors[name] > 1e-3 for name in wrong), report.errors
    with pytest.raises(AssertionError, match="differs from the tape") as caught:
        report.assert_close(1e-8)
    for name in wrong:
        assert f"{name}:" in str(caught.value)


def test_a_transposed_product_on_a_square_weight_is_the_only_term_wrong():
    params, x, h0 = gated_problem()
    report = reference.check_cell_bptt(
        gated_cell, lambda *a: gated_backward(*a, mistake="transposed_product"), params, x, h0
    )
    assert {name for name, error in report.errors.items() if error > 1e-8} == {"U"}


# ---- a cell with a two-part state: f = σ(W_f x + U_f h), c' = f ⊙ c + tanh(W x + U h), h' = tanh(c')


def two_part_cell(p, x, state):
    h, c = state
    f = (x @ p["W_f"].T + h @ p["U_f"].T).sigmoid()
    c_new = f * c + (x @ p["W"].T + h @ p["U"].T).tanh()
    return c_new.tanh(), c_new


def two_part_backward(p, x, state, d_state, mistake=None):
    h, c = state
    dh_new, dc_new = d_state
    f = sigmoid(x @ p["W_f"].T + h @ p["U_f"].T)
    g = np.tanh(x @ p["W"].T + h @ p["U"].T)
    c_new = f * c + g
    dc = dc_new + dh_new * (1 - np.tanh(c_new) ** 2)  # total ∂L/∂c' (direct, through h', from later)
    da_f = dc * c * f * (1 - f)
    da_g = dc * (1 - g * g)
    grads = {"W_f": da_f.T @ x, "U_f": da_f.T @ h, "W": da_g.T @ x, "U": da_g.T @ h}
    dc_prev = dc * f if mistake != "no_forget_gate" else dc  # ∂c'/∂c = f
    return grads, (da_f @ p["U_f"] + da_g @ p["U"], dc_prev)


def test_a_cell_with_a_tuple_state_is_checked_part_by_part():
    rng = np.random.default_rng(1)
    params = {
        name: rng.standard_normal((4, 3 if name.startswith("W") else 4)) * 0.5
        for name in ("W_f", "U_f", "W", "U")
    }
    x, h0, c0 = rng.standard_normal((5, 2, 3)), rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    report = reference.check_cell_bptt(
        two_part_cell, two_part_backward, params, x, (h0, c0), state_names=("h", "c")
    )
    assert set(report.errors) == {"W_f", "U_f", "W", "U", "dh_0", "dc_0", "dh_t", "dc_t"}
    assert report.max_error < 1e-10, report.errors

    def forgets_the_forget_gate(p, x_t, state, d_state):
        return two_part_backward(p, x_t, state, d_state, mistake="no_forget_gate")

    wrong = reference.check_cell_bptt(
        two_part_cell, forgets_the_forget_gate, params, x, (h0, c0), state_names=("h", "c")
    )
    assert wrong.errors["dc_0"] > 1e-3


def test_malformed_hand_backwards_raise_errors_that_name_the_problem():
    params, x, h0 = gated_problem(steps=2)

    def missing(p, x_t, h, dh):
        grads, d = gated_backward(p, x_t, h, dh)
        del grads["b"]
        return grads, d

    with pytest.raises(ValueError, match=r"lack \['b'\]"):
        reference.check_cell_bptt(gated_cell, missing, params, x, h0)

    def wrong_shape(p, x_t, h, dh):
        grads, d = gated_backward(p, x_t, h, dh)
        return grads, d[:, :2]

    with pytest.raises(ValueError, match=r"d_state_prev at step 1 .*shape \(3, 2\), expected \(3, 5\)"):
        reference.check_cell_bptt(gated_cell, wrong_shape, params, x, h0)
    with pytest.raises(ValueError, match="must return"):
        reference.check_cell_bptt(gated_cell, lambda *a: gated_backward(*a)[0], params, x, h0)
    with pytest.raises(ValueError, match="T ≥ 1"):
        reference.check_cell_bptt(gated_cell, gated_backward, params, x[:0], h0)
