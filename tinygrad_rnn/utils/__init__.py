"""``tg.utils``: as ``torch.utils``, the data loading utilities live in ``tg.utils.data``."""

from . import data

__all__ = ["data"]
