"""Neural-network building blocks: modules, layers, recurrent layers, losses and utilities."""

from . import functional, init, utils
from .cells import GRUCell, LSTMCell, RNNCell
from .containers import ModuleDict, ModuleList, Sequential
from .layers import Dropout, Embedding, Identity, Linear, ReLU, Sigmoid, Tanh
from .module import Module, Parameter
from .rnn import GRU, LSTM, RNN

# isort: split
# Losses, activations, normalisation and attention, with PyTorch's names
from .activation import ELU, GELU, Flatten, LeakyReLU, LogSoftmax, Softmax, Softplus
from .attention import MultiheadAttention
from .losses import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    HuberLoss,
    KLDivLoss,
    L1Loss,
    MSELoss,
    NLLLoss,
    SmoothL1Loss,
)
from .normalization import LayerNorm
from .transformer import (
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
)

# isort: split
# More activations, parameter containers and the module-level hook handle
from .activation import Hardtanh, LogSigmoid, PReLU, ReLU6, SiLU, Softsign, Unflatten
from .containers import ParameterDict, ParameterList
from .module import RemovableHandle

# isort: split
# Recording recurrent layers as their plain per-step ops (docs/bptt.md §3)
from .rnn import unfused as unfused
