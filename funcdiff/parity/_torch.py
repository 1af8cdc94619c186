"""The one place funcdiff imports PyTorch, lazily, with an install hint when it is missing."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

__all__ = ["INSTALL_HINT", "require_torch", "torch_available"]

INSTALL_HINT = "PyTorch is required for funcdiff.parity: pip install 'funcdiff[torch]'"


def torch_available() -> bool:
    """Whether ``import torch`` would succeed, without importing it.

    Examples:
      >>> from funcdiff.parity import torch_available
      >>> torch_available()  # PyTorch is installed here
      True
    """
    return importlib.util.find_spec("torch") is not None


def require_torch() -> ModuleType:
    """Imports and returns ``torch``.

    Raises:
      ImportError: PyTorch is not installed; the message says how to install it.

    Examples:
      >>> from funcdiff.parity import require_torch
      >>> torch = require_torch()
      >>> torch.__name__
      'torch'
    """
    try:
        return importlib.import_module("torch")
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
