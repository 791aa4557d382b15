"""tinygrad_rnn: a from-scratch reverse-mode autodiff framework for recurrent networks.

Backpropagation through time is not hand-coded here: a recurrent network is unrolled on the tape
and ``loss.backward()`` walks it back. See ``docs/bptt.md`` for the derivation term by term.
"""

from . import autograd, backend, cuda, nn, ops
from .autograd import Function, enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .backend import (
    Device,
    bool_,
    float16,
    float32,
    float64,
    get_default_device,
    get_default_dtype,
    int32,
    int64,
    manual_seed,
    set_default_device,
    set_default_dtype,
)
from .backend import device as device
from .functions import (
    abs,
    arange,
    cat,
    chunk,
    clamp,
    dropout,
    empty,
    exp,
    eye,
    flatten,
    from_numpy,
    full,
    full_like,
    gather,
    is_tensor,
    log,
    log_softmax,
    logsumexp,
    matmul,
    maximum,
    minimum,
    ones,
    ones_like,
    permute,
    rand,
    randint,
    randn,
    randn_like,
    relu,
    reshape,
    sigmoid,
    softmax,
    split,
    sqrt,
    squeeze,
    stack,
    tanh,
    tensor,
    transpose,
    unbind,
    unsqueeze,
    where,
    zeros,
    zeros_like,
)
from .gradcheck import gradcheck, gradcheck_projection
from .tensor import Tensor

__version__ = "0.1.0"
