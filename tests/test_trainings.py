"""Two small real trainings end to end (layers, tape, losses, Adam): each must reach a stated loss in a
fixed number of steps, from a fixed seed, in a few seconds on a CPU.

The sequences are unrolled on the tape and trained by full backpropagation through time.
"""

import numpy as np

import tinygrad_rnn as tg
import tinygrad_rnn.nn.functional as F
from tinygrad_rnn import nn, optim


class SineModel(nn.Module):
    """GRU(1 -> 24) and a linear read-out: predicts the next value of the wave at every step."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(1, 24)
        self.head = nn.Linear(24, 1)

    def forward(self, x, hx=None):
        out, hx = self.rnn(x, hx)
        return self.head(out), hx


def test_gru_learns_to_continue_a_sine_wave():
    """Predicting x_{t+1} from x_{≤t}, with random phases: repeating the last value scores
    1 - cos(0.25) ≈ 0.031; the trained model must reach 0.005 within 120 Adam steps and then keep the
    wave going on its own (fed its own predictions) for 20 steps."""
    steps, batch, dt = 40, 16, 0.25
    rng = np.random.default_rng(0)
    model = SineModel()
    optimizer = optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(120):
        phase = rng.uniform(0, 2 * np.pi, size=(1, batch, 1))
        wave = np.sin(np.arange(steps + 1).reshape(-1, 1, 1) * dt + phase).astype(np.float32)
        prediction, _ = model(tg.tensor(wave[:-1]))
        loss = F.mse_loss(prediction, tg.tensor(wave[1:]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > 0.1, f"the untrained model should be poor, got {losses[0]:.4f}"
    final = np.mean(losses[-10:])
    assert final < 0.005, f"mean MSE of the last 10 steps is {final:.5f}, expected < 0.005"

    wave = np.sin(np.arange(50) * dt + 0.7).astype(np.float32)
    with tg.no_grad():
        prediction, hx = model(tg.tensor(wave[:30].reshape(-1, 1, 1)))
        generated = []
        for _ in range(20):
            value = prediction[-1:]
            generated.append(value.item())
            prediction, hx = model(value.reshape(1, 1, 1), hx)
    error = np.mean((np.array(generated) - wave[30:50]) ** 2)
    print(f"sine GRU: first loss {losses[0]:.4f}, last-10 mean {final:.5f}, free-running MSE {error:.5f}")
    assert error < 0.02, f"free-running continuation MSE over 20 steps is {error:.4f}, expected < 0.02"


class CharModel(nn.Module):
    """Embedding -> LSTM -> Linear over a character vocabulary."""

    def __init__(self, vocabulary: int):
        super().__init__()
        self.embed = nn.Embedding(vocabulary, 16)
        self.rnn = nn.LSTM(16, 64)
        self.head = nn.Linear(64, vocabulary)

    def forward(self, x, hx=None):
        out, hx = self.rnn(self.embed(x), hx)
        return self.head(out), hx


def test_character_lstm_memorises_a_line_of_text():
    """Next-character cross-entropy over one 72-character line of 21 distinct characters (uniform
    guessing scores log 21 ≈ 3.04) must fall below 0.05 within 60 Adam steps, and greedy decoding from
    the first character must then reproduce the whole line."""
    text = "backpropagation through time is just the chain rule on an unrolled tape."
    chars = sorted(set(text))
    codes = np.array([chars.index(c) for c in text])
    model = CharModel(len(chars))
    optimizer = optim.Adam(model.parameters(), lr=0.01)
    inputs, targets = tg.tensor(codes[:-1].reshape(-1, 1)), tg.tensor(codes[1:])
    losses = []
    for _ in range(60):
        logits, _ = model(inputs)
        loss = F.cross_entropy(logits.reshape(-1, len(chars)), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    print(f"char LSTM: vocabulary {len(chars)}, first loss {losses[0]:.4f}, after 60 steps {losses[-1]:.5f}")
    assert losses[0] > 2.5, f"the untrained model should be near uniform, got {losses[0]:.3f}"
    assert losses[-1] < 0.05, f"final cross-entropy is {losses[-1]:.4f}, expected < 0.05"

    decoded = [text[0]]
    with tg.no_grad():
        code, hx = codes[0], None
        for _ in range(len(text) - 1):
            logits, hx = model(tg.tensor([[code]]), hx)
            code = int(logits.numpy()[-1, 0].argmax())
            decoded.append(chars[code])
    assert "".join(decoded) == text
