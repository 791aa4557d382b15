"""Neural-network building blocks: modules, layers, recurrent layers, losses and utilities."""

from . import functional, init, utils
from .cells import GRUCell, LSTMCell, RNNCell
from .containers import ModuleDict, ModuleList, Sequential
from .layers import Dropout, Embedding, Identity, Linear, ReLU, Sigmoid, Tanh
from .module import Module, Parameter
from .rnn import GRU, LSTM, RNN

# Recording recurrent layers as their plain per-step ops (docs/bptt.md §3)
from .rnn import unfused as unfused
