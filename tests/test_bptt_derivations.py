"""The LSTM and GRU derivations of docs/bptt.md §2, written out term by term with the document's names,
held against the tape.

Each cell is written twice: forward with Tensor ops (PyTorch's gate layout), and backward on arrays
exactly as the document states it. ``reference.check_cell_bptt`` compares the parameter gradients, the
initial-state gradients and ∂L/∂h_t (and ∂L/∂c_t) at every step; the pre-activation gradients
(da_i, da_f, da_g, da_o; da_r, da_z, da_n and dm) are compared with the gradients ``backward()`` leaves on
the pre-activation tensors. The step Jacobians of the LSTM and the order of their product are checked
against Jacobians the engine computes.
"""

import numpy as np

import tinygrad_rnn as tg
from tinygrad_rnn import reference

HIDDEN, INPUTS, BATCH, STEPS = 3, 2, 2, 5


def sigmoid(a):
    return 0.5 * (1 + np.tanh(0.5 * a))


def random_params(gates, seed):
    rng = np.random.default_rng(seed)
    shapes = {
        "weight_ih": (gates * HIDDEN, INPUTS),
        "weight_hh": (gates * HIDDEN, HIDDEN),
        "bias_ih": (gates * HIDDEN,),
        "bias_hh": (gates * HIDDEN,),
    }
    params = {name: rng.standard_normal(shape) * 0.6 for name, shape in shapes.items()}
    return params, rng.standard_normal((STEPS, BATCH, INPUTS)), rng


# ---- LSTM ------------------------------------------------------------------------------------------------


def lstm_cell(recorded):
    def cell(p, x, state):
        h, c = state
        a = (
            x @ p["weight_ih"].T + p["bias_ih"] + h @ p["weight_hh"].T + p["bias_hh"]
        )  # a_t = [a_i; a_f; a_g; a_o]
        a.retain_grad()
        recorded.append(a)
        a_i, a_f, a_g, a_o = a.chunk(4, dim=1)
        i, f, g, o = a_i.sigmoid(), a_f.sigmoid(), a_g.tanh(), a_o.sigmoid()
        c_new = f * c + i * g
        return o * c_new.tanh(), c_new

    return cell


def lstm_backward(derived):
    """One step of §2's LSTM backward: (dh_t, dc_next_t) in, (grads, (dh_next_{t−1}, dc_next_{t−1})) out."""

    def backward(p, x, state, d_state):
        h_prev, c_prev = state
        dh, dc_next = d_state
        a = x @ p["weight_ih"].T + p["bias_ih"] + h_prev @ p["weight_hh"].T + p["bias_hh"]
        a_i, a_f, a_g, a_o = np.split(a, 4, axis=1)
        i, f, g, o = sigmoid(a_i), sigmoid(a_f), np.tanh(a_g), sigmoid(a_o)
        c = f * c_prev + i * g
        do = dh * np.tanh(c)  # ∂h_t/∂o_t = tanh(c_t)
        dc = dc_next + dh * o * (1 - np.tanh(c) ** 2)  # the total ∂L/∂c_t
        di, df, dg = dc * g, dc * c_prev, dc * i  # ∂c_t/∂i_t = g_t, ∂c_t/∂f_t = c_{t−1}, ∂c_t/∂g_t = i_t
        da = np.concatenate(
            [di * i * (1 - i), df * f * (1 - f), dg * (1 - g * g), do * o * (1 - o)], axis=1
        )  # da_t = [da_i; da_f; da_g; da_o]
        derived.append(da)
        grads = {
            "weight_ih": da.T @ x,  # da_t x_tᵀ (rows here: the code's layout is transposed)
            "weight_hh": da.T @ h_prev,  # da_t h_{t−1}ᵀ
            "bias_ih": da.sum(axis=0),
            "bias_hh": da.sum(axis=0),
        }
        dh_next = da @ p["weight_hh"]  # W_hhᵀ da_t, in rows
        dc_next_prev = dc * f  # ∂c_t/∂c_{t−1} = diag(f_t)
        return grads, (dh_next, dc_next_prev)

    return backward


def test_lstm_derivation_in_bptt_md_matches_the_tape_term_by_term():
    params, x, rng = random_params(4, seed=0)
    h0, c0 = rng.standard_normal((2, BATCH, HIDDEN))
    recorded, derived = [], []
    report = reference.check_cell_bptt(
        lstm_cell(recorded), lstm_backward(derived), params, x, (h0, c0), state_names=("h", "c")
    )
    # Parameters, dh_0 (= dh_next_0), dc_0 (= dc_next_0), dh_t and dc_next_t + direct at every step.
    assert report.max_error < 1e-12, report.errors
    # The pre-activation gradients [da_i; da_f; da_g; da_o] of every step (the hand walk runs t = T … 1).
    for t, a in enumerate(recorded):
        np.testing.assert_allclose(derived[STEPS - 1 - t], a.grad.numpy(), rtol=1e-12, atol=1e-14)


def lstm_step_arrays(p, x, h_prev, c_prev):
    a = x @ p["weight_ih"].T + p["bias_ih"] + h_prev @ p["weight_hh"].T + p["bias_hh"]
    a_i, a_f, a_g, a_o = np.split(a, 4, axis=1)
    i, f, g, o = sigmoid(a_i), sigmoid(a_f), np.tanh(a_g), sigmoid(a_o)
    c = f * c_prev + i * g
    return o * np.tanh(c), c, (i, f, g, o)


def formula_jacobian(p, x, h_prev, c_prev):
    """§2's J_t = ∂(h_t, c_t)/∂(h_{t−1}, c_{t−1}) for one batch row, as a 2H × 2H block matrix."""
    _, c, (i, f, g, o) = lstm_step_arrays(p, x, h_prev, c_prev)
    i, f, g, o, c, c_prev = (v[0] for v in (i, f, g, o, c, c_prev))
    w_i, w_f, w_g, w_o = np.split(p["weight_hh"], 4, axis=0)
    tanh_prime = 1 - np.tanh(c) ** 2
    dc_dh = (
        np.diag(c_prev * f * (1 - f)) @ w_f + np.diag(g * i * (1 - i)) @ w_i + np.diag(i * (1 - g * g)) @ w_g
    )
    dc_dc = np.diag(f)
    dh_dh = np.diag(np.tanh(c) * o * (1 - o)) @ w_o + np.diag(o * tanh_prime) @ dc_dh
    dh_dc = np.diag(o * tanh_prime * f)
    return np.block([[dh_dh, dh_dc], [dc_dh, dc_dc]])


def tape_jacobian(p, xs, h_prev, c_prev):
    """∂(h_t, c_t)/∂(h_k, c_k) over the steps xs, one backward pass per output unit."""
    rows = []
    for unit in range(2 * HIDDEN):
        h0 = tg.tensor(h_prev, requires_grad=True)
        c0 = tg.tensor(c_prev, requires_grad=True)
        leaves = {name: tg.tensor(value) for name, value in p.items()}
        h, c = h0, c0
        for x in xs:
            h, c = lstm_cell([])(leaves, tg.tensor(x), (h, c))
        picked = h[0, unit] if unit < HIDDEN else c[0, unit - HIDDEN]
        picked.backward()
        rows.append(np.concatenate([h0.grad.numpy()[0], c0.grad.numpy()[0]]))
    return np.array(rows)


def test_lstm_step_jacobian_blocks_and_the_order_of_their_product():
    params, x, rng = random_params(4, seed=3)
    x = x[:, :1]  # one batch row
    h0, c0 = rng.standard_normal((2, 1, HIDDEN))
    h1, c1, _ = lstm_step_arrays(params, x[0], h0, c0)
    j1 = formula_jacobian(params, x[0], h0, c0)
    j2 = formula_jacobian(params, x[1], h1, c1)
    np.testing.assert_allclose(j1, tape_jacobian(params, x[:1], h0, c0), rtol=1e-10, atol=1e-12)
    # ∂s_2/∂s_0 = J_2 J_1: the newest step's Jacobian on the left (the backward pass applies J_2ᵀ first).
    two_steps = tape_jacobian(params, x[:2], h0, c0)
    np.testing.assert_allclose(j2 @ j1, two_steps, rtol=1e-10, atol=1e-12)
    assert np.abs(j1 @ j2 - two_steps).max() > 1e-3  # the other order is a different matrix


# ---- GRU -------------------------------------------------------------------------------------------------


def gru_cell(recorded):
    def cell(p, x, h):
        x_r, x_z, x_n = (x @ p["weight_ih"].T + p["bias_ih"]).chunk(3, dim=1)
        h_r, h_z, m = (h @ p["weight_hh"].T + p["bias_hh"]).chunk(3, dim=1)  # m_t = W_hn h_{t−1} + b_hn
        a_r, a_z = x_r + h_r, x_z + h_z
        r, z = a_r.sigmoid(), a_z.sigmoid()
        a_n = x_n + r * m
        for tensor in (a_r, a_z, a_n, m):
            tensor.retain_grad()
        recorded.append((a_r, a_z, a_n, m))
        n = a_n.tanh()
        return (1 - z) * n + z * h

    return cell


def gru_backward(derived):
    def backward(p, x, h_prev, dh):
        x_r, x_z, x_n = np.split(x @ p["weight_ih"].T + p["bias_ih"], 3, axis=1)
        h_r, h_z, m = np.split(h_prev @ p["weight_hh"].T + p["bias_hh"], 3, axis=1)
        r, z = sigmoid(x_r + h_r), sigmoid(x_z + h_z)
        n = np.tanh(x_n + r * m)
        da_n = dh * (1 - z) * (1 - n * n)  # ∂h_t/∂n_t = 1 − z_t, tanh′ = 1 − n²
        da_z = dh * (h_prev - n) * z * (1 - z)  # ∂h_t/∂z_t = h_{t−1} − n_t
        dm = da_n * r  # ∂a_n/∂m_t = r_t
        da_r = da_n * m * r * (1 - r)  # ∂a_n/∂r_t = m_t
        derived.append((da_r, da_z, da_n, dm))
        d_in = np.concatenate([da_r, da_z, da_n], axis=1)  # input side [da_r; da_z; da_n]
        d_rec = np.concatenate([da_r, da_z, dm], axis=1)  # recurrent side [da_r; da_z; dm]
        grads = {
            "weight_ih": d_in.T @ x,
            "weight_hh": d_rec.T @ h_prev,
            "bias_ih": d_in.sum(axis=0),
            "bias_hh": d_rec.sum(axis=0),
        }
        dh_next = z * dh + d_rec @ p["weight_hh"]  # z_t ⊙ dh_t + W_hhᵀ d_rec
        return grads, dh_next

    return backward


def test_gru_derivation_in_bptt_md_matches_the_tape_term_by_term():
    params, x, rng = random_params(3, seed=1)
    h0 = rng.standard_normal((BATCH, HIDDEN))
    recorded, derived = [], []
    report = reference.check_cell_bptt(gru_cell(recorded), gru_backward(derived), params, x, h0)
    assert report.max_error < 1e-12, report.errors
    for t, tensors in enumerate(recorded):
        for hand, tensor in zip(derived[STEPS - 1 - t], tensors):
            np.testing.assert_allclose(hand, tensor.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_the_document_cells_are_pytorchs_layout_and_agree_with_the_shipped_reference():
    """The cells above are the ones ``reference.bptt`` and ``nn.LSTM``/``nn.GRU`` compute."""
    for cell, gates, make in (("lstm", 4, lstm_cell), ("gru", 3, gru_cell)):
        params, x, rng = random_params(gates, seed=2)
        h0 = rng.standard_normal((BATCH, HIDDEN))
        named = {f"{name}_l0": value for name, value in params.items()}
        named["readout.weight"], named["readout.bias"] = np.eye(HIDDEN), np.zeros(HIDDEN)
        c0 = np.zeros((BATCH, HIDDEN)) if cell == "lstm" else None
        expected = reference.bptt(
            cell, named, x, np.zeros((STEPS, BATCH, HIDDEN)), h0, c0, compute_grad=False
        )
        leaves = {name: tg.tensor(value) for name, value in params.items()}
        state = (tg.tensor(h0), tg.tensor(c0)) if cell == "lstm" else tg.tensor(h0)
        for t in range(STEPS):
            state = make([])(leaves, tg.tensor(x[t]), state)
        h = state[0] if cell == "lstm" else state
        np.testing.assert_allclose(h.numpy(), expected.hidden, rtol=1e-12)
