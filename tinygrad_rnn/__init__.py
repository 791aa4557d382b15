"""tinygrad_rnn: a from-scratch reverse-mode autodiff framework for recurrent networks.

Backpropagation through time is not hand-coded here: a recurrent network is unrolled on the tape
and ``loss.backward()`` walks it back. See ``docs/bptt.md`` for the derivation term by term.
"""

from . import autograd, backend, bptt, cuda, gradflow, nn, ops, optim, reference
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
    set_default_device,
    set_default_dtype,
)
from .backend import Device as device
from .functions import (
    abs,
    add,
    amax,
    amin,
    arange,
    argmax,
    argmin,
    cat,
    chunk,
    clamp,
    clip,
    concat,
    concatenate,
    div,
    dropout,
    empty,
    empty_like,
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
    masked_fill,
    matmul,
    max,
    maximum,
    mean,
    min,
    minimum,
    mul,
    neg,
    numel,
    ones,
    ones_like,
    permute,
    pow,
    rand,
    rand_like,
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
    sub,
    sum,
    t,
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
from .serialization import load, save
from .tensor import Tensor

__version__ = "0.1.0"

# PyTorch's short dtype names, so that `torch.long`, `torch.float`, ... port unchanged.
float = float32
double = float64
half = float16
long = int64
int = int32
bool = bool_

# Drawing the tape (DOT text; SVG/PNG through the optional graphviz package)
from . import viz  # noqa: E402

# isort: split
# Random generators (tg.Generator, seeding, randperm/multinomial) and tg.utils.data.
from . import random, utils  # noqa: E402  (a block of its own, kept last for merging)
from .random import (  # noqa: E402
    Generator,
    default_generator,
    get_rng_state,
    initial_seed,
    manual_seed,
    multinomial,
    randperm,
    seed,
    set_rng_state,
)

# isort: split
# Tensor methods and functions everyday PyTorch code reaches (issue 11, item 5)
from .functions import (  # noqa: E402
    addmm,
    argsort,
    baddbmm,
    bmm,
    clamp_max,
    clamp_min,
    cos,
    cumsum,
    einsum,
    flip,
    floor,
    index_add,
    index_select,
    linspace,
    masked_select,
    mm,
    narrow,
    norm,
    one_hot,
    roll,
    round,
    scatter,
    scatter_add,
    sign,
    sin,
    sort,
    topk,
    tril,
    triu,
)
from .legacy import BoolTensor, DoubleTensor, FloatTensor, IntTensor, LongTensor  # noqa: E402

# isort: split
# More of the everyday surface: elementwise math, products, index queries, utilities (issue 11, item 5)
from .toplevel import (  # noqa: E402
    Size,
    allclose,
    argwhere,
    as_tensor,
    bernoulli,
    ceil,
    clone,
    cumprod,
    diag,
    diagonal,
    dot,
    finfo,
    fmod,
    get_num_threads,
    iinfo,
    index_fill,
    inference_mode,
    is_floating_point,
    is_inference_mode_enabled,
    isclose,
    isfinite,
    isinf,
    isnan,
    log1p,
    logical_and,
    logical_not,
    logical_or,
    logical_xor,
    nonzero,
    outer,
    prod,
    reciprocal,
    remainder,
    repeat_interleave,
    rsqrt,
    set_num_threads,
    square,
    std,
    trunc,
    unflatten,
    unique,
    var,
)

uint8 = backend.as_dtype("uint8")
int16 = backend.as_dtype("int16")
short = int16

# Forward mode, function transforms and online gradients (tg.autograd.forward_ad, tg.func, tg.online)
from . import forward_ad, func, online  # noqa: E402
