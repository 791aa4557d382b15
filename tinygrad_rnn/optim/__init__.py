"""Optimizers and learning-rate schedulers, laid out as ``torch.optim``: the first-order optimizers in
``optimizer.py``, L-BFGS in ``lbfgs.py``, the schedulers in ``lr_scheduler.py``
(``from tinygrad_rnn.optim.lr_scheduler import StepLR``)."""

from . import lr_scheduler
from .lbfgs import LBFGS
from .optimizer import SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop

__all__ = ["LBFGS", "SGD", "Adagrad", "Adam", "AdamW", "Optimizer", "RMSprop", "lr_scheduler"]

# isort: split
# Adam's relatives
from .adam_variants import Adamax, NAdam, RAdam

__all__ += ["Adamax", "NAdam", "RAdam"]
