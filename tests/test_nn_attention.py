"""MultiheadAttention, the Transformer layers and nn.Transformer: PyTorch's state_dict names and shapes,
a NumPy reference written from the formula, masks (a masked position gets zero weight and zero
gradient), batch_first, finite differences in float64, and clear errors."""

import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn import nn, optim


def f64(array, requires_grad=True):
    return tg.tensor(np.asarray(array, dtype=np.float64), requires_grad=requires_grad)


def reference_attention(query, key, value, mha, heads, mask=None):
    """softmax(Q Kᵀ/sqrt(d) + mask) V per head, from the parameters, sequence-first (L, N, E)."""
    size = query.shape[-1]
    w, b = mha.in_proj_weight.numpy(), mha.in_proj_bias.numpy()

    def split(x, i):
        projected = x @ w[i * size : (i + 1) * size].T + b[i * size : (i + 1) * size]
        return projected.reshape(x.shape[0], x.shape[1], heads, size // heads).transpose(1, 2, 0, 3)

    q, k, v = split(query, 0), split(key, 1), split(value, 2)
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(size // heads)
    if mask is not None:
        scores = scores + mask
    scores = scores - scores.max(axis=-1, keepdims=True)
    weights = np.exp(scores) / np.exp(scores).sum(axis=-1, keepdims=True)
    heads_out = (weights @ v).transpose(2, 0, 1, 3).reshape(query.shape[0], query.shape[1], size)
    return heads_out @ mha.out_proj.weight.numpy().T + mha.out_proj.bias.numpy(), weights


def random_inputs(rng, target=3, source=4, batch=2, size=4):
    return (
        rng.standard_normal((target, batch, size)),
        rng.standard_normal((source, batch, size)),
        rng.standard_normal((source, batch, size)),
    )


def double_attention(size=4, heads=2, **options):
    mha = nn.MultiheadAttention(size, heads, **options).double()
    rng = np.random.default_rng(7)
    # Non-zero biases, so that the reference checks where each one enters.
    mha.in_proj_bias.data = f64(rng.standard_normal(3 * size), False)
    mha.out_proj.bias.data = f64(rng.standard_normal(size), False)
    return mha


# ---- parameters and state_dict ---------------------------------------------------------------------------


def test_multihead_attention_has_pytorchs_parameter_names_shapes_and_init():
    mha = nn.MultiheadAttention(8, 2)
    shapes = {name: value.shape for name, value in mha.state_dict().items()}
    assert shapes == {
        "in_proj_weight": (24, 8),
        "in_proj_bias": (24,),
        "out_proj.weight": (8, 8),
        "out_proj.bias": (8,),
    }
    assert list(shapes) == ["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"]
    assert isinstance(mha.out_proj, nn.Linear)
    np.testing.assert_array_equal(mha.in_proj_bias.numpy(), 0)
    bound = np.sqrt(6 / (8 + 24))  # Xavier-uniform over the (3E, E) matrix, as PyTorch
    assert np.abs(mha.in_proj_weight.numpy()).max() <= bound
    separate = nn.MultiheadAttention(8, 2, kdim=3, vdim=5, bias=False)
    assert {name: value.shape for name, value in separate.state_dict().items()} == {
        "q_proj_weight": (8, 8),
        "k_proj_weight": (8, 3),
        "v_proj_weight": (8, 5),
        "out_proj.weight": (8, 8),
    }
    assert separate.in_proj_weight is None


def encoder_layer_keys(prefix):
    names = ["self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight"]
    names += ["self_attn.out_proj.bias", "linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias"]
    names += ["norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"]
    return [prefix + name for name in names]


def decoder_layer_keys(prefix):
    attention = ["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"]
    names = [f"self_attn.{n}" for n in attention] + [f"multihead_attn.{n}" for n in attention]
    names += ["linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias"]
    names += [f"norm{i}.{p}" for i in (1, 2, 3) for p in ("weight", "bias")]
    return [prefix + name for name in names]


def test_transformer_state_dict_keys_and_shapes_match_pytorchs_layout():
    model = nn.Transformer(d_model=8, nhead=2, num_encoder_layers=2, num_decoder_layers=1, dim_feedforward=16)
    expected = encoder_layer_keys("encoder.layers.0.") + encoder_layer_keys("encoder.layers.1.")
    expected += ["encoder.norm.weight", "encoder.norm.bias"]
    expected += [*decoder_layer_keys("decoder.layers.0."), "decoder.norm.weight", "decoder.norm.bias"]
    state = model.state_dict()
    assert list(state) == expected
    assert state["encoder.layers.1.linear1.weight"].shape == (16, 8)
    assert state["decoder.layers.0.linear2.weight"].shape == (8, 16)
    assert state["decoder.layers.0.multihead_attn.in_proj_weight"].shape == (24, 8)
    layer = nn.TransformerEncoderLayer(8, 2)
    assert layer.linear1.weight.shape == (2048, 8) and layer.dropout.p == 0.1  # PyTorch's defaults
    assert list(layer.state_dict()) == encoder_layer_keys("")


def test_encoder_deep_copies_the_layer_so_layers_start_equal_but_train_apart():
    layer = nn.TransformerEncoderLayer(4, 2, dim_feedforward=8)
    encoder = nn.TransformerEncoder(layer, num_layers=3)
    first, second = encoder.layers[0], encoder.layers[1]
    assert first.linear1.weight is not second.linear1.weight and first is not layer
    np.testing.assert_array_equal(first.linear1.weight.numpy(), second.linear1.weight.numpy())
    assert len(list(encoder.parameters())) == 3 * len(list(layer.parameters()))


# ---- values against the reference ------------------------------------------------------------------------


@pytest.mark.parametrize("average", [True, False])
def test_multihead_attention_matches_the_reference_and_returns_pytorchs_weights(average):
    rng = np.random.default_rng(0)
    query, key, value = random_inputs(rng)
    mha = double_attention()
    out, weights = mha(f64(query), f64(key), f64(value), average_attn_weights=average)
    expected_out, expected_weights = reference_attention(query, key, value, mha, 2)
    np.testing.assert_allclose(out.numpy(), expected_out, rtol=1e-12, atol=1e-12)
    expected_weights = expected_weights.mean(axis=1) if average else expected_weights
    assert weights.shape == ((2, 3, 4) if average else (2, 2, 3, 4))
    np.testing.assert_allclose(weights.numpy(), expected_weights, rtol=1e-12, atol=1e-14)
    assert mha(f64(query), f64(key), f64(value), need_weights=False)[1] is None


def test_batch_first_and_unbatched_inputs_give_the_same_numbers():
    rng = np.random.default_rng(1)
    query, key, value = random_inputs(rng)
    mha = double_attention()
    first = double_attention(batch_first=True)
    first.load_state_dict(mha.state_dict())
    out = mha(f64(query), f64(key), f64(value))[0].numpy()
    swap = [f64(x.transpose(1, 0, 2)) for x in (query, key, value)]
    np.testing.assert_allclose(first(*swap)[0].numpy(), out.transpose(1, 0, 2), rtol=1e-12)
    single, weights = mha(f64(query[:, 0]), f64(key[:, 0]), f64(value[:, 0]))
    assert single.shape == (3, 4) and weights.shape == (3, 4)
    np.testing.assert_allclose(single.numpy(), out[:, 0], rtol=1e-12)


# ---- masks -----------------------------------------------------------------------------------------------


def test_masked_keys_get_zero_weight_and_zero_gradient():
    rng = np.random.default_rng(2)
    query, key, value = random_inputs(rng)
    mha = double_attention()
    padding = tg.tensor(np.array([[False, False, True, True], [False, False, False, True]]))
    causal = tg.tensor(np.triu(np.ones((3, 4), dtype=bool), k=1))
    q, k, v = f64(query), f64(key), f64(value)
    out, weights = mha(q, k, v, key_padding_mask=padding, attn_mask=causal)
    blocked = causal.numpy()[None] | padding.numpy()[:, None, :]
    assert np.all(weights.numpy()[blocked] == 0.0)
    additive = np.where(blocked[:, None], -np.inf, 0.0)
    expected_out, _ = reference_attention(query, key, value, mha, 2, additive)
    np.testing.assert_allclose(out.numpy(), expected_out, rtol=1e-12, atol=1e-12)
    out.sum().backward()
    # Sequence 0 pads keys 2 and 3; sequence 1 pads key 3: they receive no gradient at all.
    for grad in (k.grad.numpy(), v.grad.numpy()):
        assert np.all(grad[2:, 0] == 0.0) and np.all(grad[3, 1] == 0.0)
        assert np.all(np.abs(grad[:2, 0]).sum(axis=-1) > 0)


def test_float_and_bool_masks_agree_and_a_three_d_mask_is_per_head():
    rng = np.random.default_rng(3)
    query, key, value = random_inputs(rng)
    mha = double_attention()
    boolean = rng.uniform(size=(3, 4)) < 0.3
    boolean[:, 0] = False  # every query keeps a key
    as_float = np.where(boolean, -np.inf, 0.0)
    a = mha(f64(query), f64(key), f64(value), attn_mask=tg.tensor(boolean))[0]
    b = mha(f64(query), f64(key), f64(value), attn_mask=f64(as_float, False))[0]
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    per_head = rng.standard_normal((2 * 2, 3, 4))  # (N·heads, L, S), index n·heads + h
    out = mha(f64(query), f64(key), f64(value), attn_mask=f64(per_head, False))[0]
    expected, _ = reference_attention(query, key, value, mha, 2, per_head.reshape(2, 2, 3, 4))
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_causal_decoder_output_does_not_depend_on_later_target_positions():
    model = nn.Transformer(d_model=4, nhead=2, num_encoder_layers=1, num_decoder_layers=2, dim_feedforward=8)
    model = model.double().eval()
    rng = np.random.default_rng(4)
    src, tgt = f64(rng.standard_normal((5, 2, 4))), f64(rng.standard_normal((4, 2, 4)))
    mask = nn.Transformer.generate_square_subsequent_mask(4, dtype=tg.float64)
    np.testing.assert_array_equal(np.isinf(mask.numpy()), np.triu(np.ones((4, 4), dtype=bool), 1))
    out = model(src, tgt, tgt_mask=mask, tgt_is_causal=True)
    assert out.shape == (4, 2, 4)
    # A random read-out: the sum of a LayerNorm's output over its features is constant.
    (out[1] * f64(rng.standard_normal((2, 4)), False)).sum().backward()
    assert np.all(tgt.grad.numpy()[2:] == 0.0) and np.any(tgt.grad.numpy()[:2] != 0.0)


# ---- gradients in float64 --------------------------------------------------------------------------------


def test_multihead_attention_gradients_match_finite_differences_with_masks():
    rng = np.random.default_rng(5)
    query, key, value = random_inputs(rng, target=2, source=3, batch=2, size=4)
    mha = double_attention(kdim=4, vdim=4)
    padding = tg.tensor(np.array([[False, False, True], [False, False, False]]))
    inputs = [f64(query), f64(key), f64(value), mha.in_proj_weight, mha.in_proj_bias, mha.out_proj.weight]
    assert tg.gradcheck(lambda q, k, v, *p: mha(q, k, v, key_padding_mask=padding), inputs)
    other = double_attention(kdim=3, vdim=2)
    key3, value2 = f64(rng.standard_normal((3, 2, 3))), f64(rng.standard_normal((3, 2, 2)))
    inputs = [f64(query), key3, value2, other.k_proj_weight, other.v_proj_weight]
    assert tg.gradcheck(lambda q, k, v, *p: other(q, k, v)[0], inputs)


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_layers_gradients_match_finite_differences(norm_first):
    rng = np.random.default_rng(6)
    options = dict(dim_feedforward=6, dropout=0.0, activation="gelu", norm_first=norm_first, batch_first=True)
    encoder = nn.TransformerEncoderLayer(4, 2, **options).double()
    decoder = nn.TransformerDecoderLayer(4, 2, **options).double()
    src, tgt = f64(rng.standard_normal((1, 3, 4))), f64(rng.standard_normal((1, 2, 4)))
    mask = nn.Transformer.generate_square_subsequent_mask(2, dtype=tg.float64)
    assert tg.gradcheck(lambda s, w: encoder(s), [src, encoder.linear1.weight])
    assert tg.gradcheck(
        lambda t, s, w: decoder(t, encoder(s), tgt_mask=mask, tgt_is_causal=True),
        [tgt, src, decoder.multihead_attn.in_proj_weight],
    )


# ---- training mode, errors and a program that runs either model ------------------------------------------


def test_dropout_acts_in_training_mode_only():
    layer = nn.TransformerEncoderLayer(4, 2, dim_feedforward=8, dropout=0.5)
    x = tg.randn(3, 2, 4)
    assert not np.allclose(layer(x).numpy(), layer(x).numpy())
    layer.eval()
    np.testing.assert_array_equal(layer(x).numpy(), layer(x).numpy())


def test_bad_arguments_get_errors_that_name_the_problem():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        nn.MultiheadAttention(6, 4)
    mha = nn.MultiheadAttention(4, 2)
    x = tg.randn(3, 2, 4)
    with pytest.raises(ValueError, match="2-D attn_mask has shape"):
        mha(x, x, x, attn_mask=tg.zeros(3, 2))
    with pytest.raises(ValueError, match="3-D attn_mask"):
        mha(x, x, x, attn_mask=tg.zeros(2, 3, 3))
    with pytest.raises(ValueError, match="key_padding_mask has shape"):
        mha(x, x, x, key_padding_mask=tg.zeros(3, 2).bool())
    with pytest.raises(TypeError, match="only bool and floating"):
        mha(x, x, x, attn_mask=tg.zeros(3, 3).long())
    with pytest.raises(RuntimeError, match="is_causal=True needs attn_mask"):
        mha(x, x, x, is_causal=True)
    with pytest.raises(ValueError, match="embed_dim=4"):
        mha(tg.randn(3, 2, 5), x, x)
    with pytest.raises(NotImplementedError, match="add_bias_kv"):
        nn.MultiheadAttention(4, 2, add_bias_kv=True)
    with pytest.raises(ValueError, match="activation"):
        nn.TransformerEncoderLayer(4, 2, activation="swish")
    model = nn.Transformer(d_model=4, nhead=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=8)
    with pytest.raises(RuntimeError, match="batch number of src and tgt"):
        model(tg.randn(3, 2, 4), tg.randn(3, 5, 4))
    with pytest.raises(RuntimeError, match="d_model=4"):
        model(tg.randn(3, 2, 4), tg.randn(3, 2, 3))


class SequenceModel(nn.Module):
    """A word-LM-shaped model, written as PyTorch code writes it, that is an LSTM or a Transformer."""

    def __init__(self, kind, vocabulary=11, size=8):
        super().__init__()
        self.kind = kind
        self.embedding = nn.Embedding(vocabulary, size)
        if kind == "lstm":
            self.body = nn.LSTM(size, size)
        else:
            layer = nn.TransformerEncoderLayer(size, nhead=2, dim_feedforward=16, dropout=0.0)
            self.body = nn.TransformerEncoder(layer, num_layers=2)
        self.decoder = nn.Linear(size, vocabulary)

    def forward(self, tokens):
        x = self.embedding(tokens)
        if self.kind == "lstm":
            x, _ = self.body(x)
        else:
            mask = nn.Transformer.generate_square_subsequent_mask(len(tokens))
            x = self.body(x, mask=mask, is_causal=True)
        return self.decoder(x).log_softmax(-1)


@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_one_program_trains_either_an_lstm_or_a_transformer(kind):
    tg.manual_seed(0)
    model = SequenceModel(kind)
    criterion = nn.NLLLoss()
    optimizer = optim.Adam(model.parameters(), lr=0.02)
    tokens = tg.tensor(np.arange(13).reshape(13, 1) % 11 * np.ones((1, 3), dtype=np.int64))
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        output = model(tokens[:-1])
        loss = criterion(output.reshape(-1, 11), tokens[1:].reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_transformer_losses_and_activations_run_on_each_device(device):
    model = nn.Transformer(d_model=4, nhead=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=8)
    model = model.to(device)
    src, tgt = tg.randn(5, 2, 4, device=device), tg.randn(3, 2, 4, device=device)
    mask = nn.Transformer.generate_square_subsequent_mask(3, device=device)
    padding = tg.tensor(np.array([[False] * 4 + [True], [False] * 5]), device=device)
    out = model(src, tgt, tgt_mask=mask, src_key_padding_mask=padding, memory_key_padding_mask=padding)
    probabilities = nn.Softmax(dim=-1)(out)
    loss = nn.BCELoss()(nn.Sigmoid()(out), probabilities.detach())
    loss = loss + nn.KLDivLoss(reduction="batchmean")(out.log_softmax(-1), probabilities.detach())
    loss = loss + nn.HuberLoss()(nn.GELU()(out), nn.ELU()(out).detach())
    loss = loss + nn.CrossEntropyLoss(label_smoothing=0.1)(
        out.reshape(-1, 4), probabilities.reshape(-1, 4).detach()
    )
    loss.backward()
    assert out.device == src.device and loss.device == src.device
    gradient = model.encoder.layers[0].self_attn.in_proj_weight.grad
    assert gradient.device == src.device and np.all(np.isfinite(gradient.numpy()))


def test_scaled_dot_product_attention_matches_the_formula_masks_and_gradcheck():
    F = nn.functional
    rng = np.random.default_rng(8)
    q, k, v = (f64(rng.standard_normal(shape)) for shape in ((2, 3, 4), (2, 5, 4), (2, 5, 2)))
    scores = q.numpy() @ k.numpy().transpose(0, 2, 1) / 2.0
    allowed = rng.uniform(size=(3, 5)) < 0.7
    allowed[:, 0] = True
    masked = np.where(allowed, scores, -np.inf)
    weights = np.exp(masked - masked.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=tg.tensor(allowed))
    np.testing.assert_allclose(out.numpy(), weights @ v.numpy(), rtol=1e-12)
    assert tg.gradcheck(
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=tg.tensor(allowed)), [q, k, v]
    )
    causal = F.scaled_dot_product_attention(q[:, :3], k[:, :3], v[:, :3], is_causal=True)
    lower = tg.tensor(np.tril(np.ones((3, 3), dtype=bool)))
    expected = F.scaled_dot_product_attention(q[:, :3], k[:, :3], v[:, :3], attn_mask=lower)
    np.testing.assert_array_equal(causal.numpy(), expected.numpy())
    with pytest.raises(ValueError, match="not both"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=tg.tensor(allowed), is_causal=True)
    with pytest.raises(ValueError, match="disagree"):
        F.scaled_dot_product_attention(q, k, v[:, :4])
