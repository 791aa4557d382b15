"""Sine-wave continuation with two stacked LSTM cells trained by L-BFGS.

Written the way PyTorch's ``time_sequence_prediction`` example writes it: ``nn.LSTMCell`` stepped by
hand over ``input.split(1, dim=1)``, ``torch.cat`` of the outputs, float64 parameters through
``.double()``, ``nn.MSELoss`` and ``optim.LBFGS`` with a closure; the trained model then predicts
``future`` steps past the end of the input by feeding its own outputs back.
"""

import argparse

import numpy as np

import tinygrad_rnn as torch
import tinygrad_rnn.nn as nn
import tinygrad_rnn.optim as optim


def make_waves(n_waves=40, length=200, period=20):
    """Sine waves with random phase shifts, as the example's generator writes them."""
    rng = np.random.RandomState(2)
    x = np.empty((n_waves, length), "int64")
    x[:] = np.array(range(length)) + rng.randint(-4 * period, 4 * period, n_waves).reshape(n_waves, 1)
    return np.sin(x / 1.0 / period).astype("float64")


class Sequence(nn.Module):
    def __init__(self, hidden=51):
        super(Sequence, self).__init__()
        self.hidden = hidden
        self.lstm1 = nn.LSTMCell(1, hidden)
        self.lstm2 = nn.LSTMCell(hidden, hidden)
        self.linear = nn.Linear(hidden, 1)

    def forward(self, input, future=0):
        outputs = []
        h_t = torch.zeros(input.size(0), self.hidden, dtype=torch.double)
        c_t = torch.zeros(input.size(0), self.hidden, dtype=torch.double)
        h_t2 = torch.zeros(input.size(0), self.hidden, dtype=torch.double)
        c_t2 = torch.zeros(input.size(0), self.hidden, dtype=torch.double)

        for input_t in input.split(1, dim=1):
            h_t, c_t = self.lstm1(input_t, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs += [output]
        for i in range(future):  # if we should predict the future
            h_t, c_t = self.lstm1(output, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs += [output]
        outputs = torch.cat(outputs, dim=1)
        return outputs


def main(steps=4, hidden=24, length=60, future=40, verbose=True):
    np.random.seed(0)
    torch.manual_seed(0)
    data = make_waves(n_waves=12, length=length + 1)
    input = torch.from_numpy(data[3:, :-1])
    target = torch.from_numpy(data[3:, 1:])
    test_input = torch.from_numpy(data[:3, :-1])
    test_target = torch.from_numpy(data[:3, 1:])
    seq = Sequence(hidden)
    seq.double()
    criterion = nn.MSELoss()
    # use LBFGS as optimizer since we can load the whole data to train
    optimizer = optim.LBFGS(seq.parameters(), lr=0.8)
    losses, test_losses = [], []
    for i in range(steps):
        if verbose:
            print("STEP: ", i)

        def closure():
            optimizer.zero_grad()
            out = seq(input)
            loss = criterion(out, target)
            if verbose:
                print("loss:", loss.item())
            losses.append(loss.item())
            loss.backward()
            return loss

        optimizer.step(closure)
        # begin to predict, no need to track gradient here
        with torch.no_grad():
            pred = seq(test_input, future=future)
            loss = criterion(pred[:, :-future], test_target)
            if verbose:
                print("test loss:", loss.item())
            test_losses.append(loss.item())
            y = pred.detach().numpy()
    return {"losses": losses, "test_losses": test_losses, "prediction": y}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=4, help="steps to run")
    opt = parser.parse_args()
    main(steps=opt.steps)
