"""Pytrees of arrays <-> pytrees of PyTorch tensors, dtype and shape preserved.

The copy goes through NumPy on the host: a tensor is detached, moved to the CPU, its lazy
conjugate/negative bits resolved and made contiguous before its buffer is read, and NumPy
arrays are copied into fresh C-contiguous buffers before torch sees them. That sidesteps the
DLPack stride bugs reported for non-contiguous tensors (jax#17784, jax#7657) at the price of
one host copy, which is negligible next to a parity check. ``bfloat16`` (which NumPy only knows
through ``ml_dtypes``) crosses as its raw 16-bit pattern.

64-bit dtypes are kept: ``from_torch`` of a float64 tensor returns a float64 ``jax.Array``
even when JAX's x64 mode is off (the array is created inside a scoped x64 block; the global
flag is left as it was).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from funcdiff._config import DeviceNotFoundError, scoped
from funcdiff._validation import first_line
from funcdiff.parity._torch import require_torch

__all__ = ["from_torch", "to_numpy_tree", "to_torch"]

_BF16 = np.dtype(jnp.bfloat16)
_WIDE = tuple(np.dtype(d) for d in ("float64", "int64", "uint64", "complex128"))


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def _leaf_to_numpy(path: tuple[Any, ...], leaf: Any, name: str) -> np.ndarray:
    if isinstance(leaf, np.ndarray | np.generic | jax.Array):
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            raise TypeError(
                f"Expected `{name}` leaves to be arrays, got a PRNG key at "
                f"{name}{jax.tree_util.keystr(path)}; pass jax.random.key_data(key) instead."
            )
        arr = np.array(leaf, copy=True, order="C")
        if arr.dtype.kind not in "biufc" and arr.dtype != _BF16:
            raise TypeError(
                f"Expected `{name}` leaves to be numeric arrays, got dtype {arr.dtype} at "
                f"{name}{jax.tree_util.keystr(path)}."
            )
        return arr
    if _is_tensor(leaf):
        return _tensor_to_numpy(leaf, f"{name}{jax.tree_util.keystr(path)}")
    raise TypeError(
        f"Expected `{name}` leaves to be NumPy or JAX arrays, got {type(leaf).__name__} at "
        f"{name}{jax.tree_util.keystr(path)}; wrap it with np.asarray(value, dtype=...)."
    )


def to_numpy_tree(tree: Any, *, name: str = "tree") -> Any:
    """Copies every leaf of ``tree`` (NumPy, JAX or torch arrays) into a contiguous NumPy array.

    Raises:
      TypeError: a leaf is not an array; the message names its pytree path.
    """
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    return jax.tree_util.tree_unflatten(treedef, [_leaf_to_numpy(p, x, name) for p, x in leaves])


def _refuse_special(torch: Any, t: Any, where: str) -> None:
    """Tensors without a plain strided buffer of a NumPy dtype are refused by name."""
    if getattr(t, "is_nested", False):
        raise TypeError(
            f"Expected dense tensors, got a nested tensor at {where}; convert its components "
            "(t.unbind()) or pad it (t.to_padded_tensor(0.0))."
        )
    if t.layout != torch.strided:
        raise TypeError(
            f"Expected dense tensors, got a {t.layout} tensor at {where}; call .to_dense() first."
        )
    if t.is_meta:
        raise TypeError(
            f"Expected tensors with data, got a meta tensor at {where} (meta tensors hold only "
            "shapes and dtypes); materialise it, e.g. torch.empty_like(t, device='cpu')."
        )
    if t.is_quantized:
        raise TypeError(
            f"Expected unquantized tensors, got {t.dtype} at {where}; call .dequantize() first."
        )


def _tensor_to_numpy(t: Any, where: str = "tree") -> np.ndarray:
    torch = require_torch()
    _refuse_special(torch, t, where)
    t = t.detach()
    if t._is_zerotensor():  # autograd's lazily-zero gradients own no memory
        t = torch.zeros(t.shape, dtype=t.dtype)
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.resolve_conj().resolve_neg().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().copy().view(_BF16)
    try:
        return t.numpy().copy()
    except TypeError:  # complex32, float8, ...: no NumPy dtype
        raise TypeError(
            f"Expected a tensor dtype NumPy and JAX share, got {t.dtype} at {where}; cast it "
            "first, e.g. t.float()."
        ) from None


def _numpy_to_tensor(a: np.ndarray, device: Any) -> Any:
    torch = require_torch()
    a = np.array(a, copy=True, order="C")  # (ascontiguousarray turns 0-d into 1-d)
    if a.dtype == _BF16:
        t = torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    else:
        if a.dtype.kind not in "biufc":
            raise TypeError(f"Expected a numeric array, got dtype {a.dtype}.")
        t = torch.from_numpy(a)
    return t if device is None else t.to(device)


def _torch_device(torch: Any, device: Any) -> Any:
    """``device`` as a ``torch.device`` that exists on this machine, or None."""
    if device is None:
        return None
    if isinstance(device, bool) or not isinstance(device, str | int | torch.device):
        raise TypeError(
            f"Expected `device` to be a torch device such as 'cpu' or 'cuda:0', got "
            f"{type(device).__name__}."
        )
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError) as e:
        first = first_line(e)
        raise ValueError(
            f"Expected `device` to be a torch device such as 'cpu' or 'cuda:0', got "
            f"{device!r} ({first})."
        ) from None
    try:
        torch.empty(0, device=dev)
    except Exception as e:  # AssertionError "Torch not compiled with CUDA", RuntimeError
        first = first_line(e)
        raise DeviceNotFoundError(
            f"No torch device {str(dev)!r} on this machine ({first}). Use device='cpu' or None."
        ) from None
    return dev


def to_torch(tree: Any, *, device: Any = None) -> Any:
    """Converts a pytree of NumPy/JAX arrays to the same pytree of ``torch.Tensor``.

    Dtypes and shapes are preserved exactly (bfloat16 included); every tensor owns fresh,
    contiguous memory, so writing to it never touches the source array. Tensor leaves are
    copied too.

    Args:
      tree: a pytree (dicts, lists, tuples, None) whose leaves are arrays.
      device: a torch device for the tensors (default: CPU).

    Returns:
      The pytree with every leaf replaced by a tensor.

    Raises:
      TypeError: a leaf is not an array; the message names its pytree path. ``device`` is
        not a string, int or ``torch.device``.
      ValueError: ``device`` is not a torch device name.
      DeviceNotFoundError: this machine has no such device (e.g. ``"cuda"`` without CUDA).
      ImportError: PyTorch is not installed.

    Examples:
      >>> import numpy as np
      >>> t = to_torch({"w": np.ones((2, 3), np.float32)})
      >>> t["w"].dtype, tuple(t["w"].shape)
      (torch.float32, (2, 3))
    """
    torch = require_torch()
    dev = _torch_device(torch, device)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    out = [_numpy_to_tensor(_leaf_to_numpy(p, x, "tree"), dev) for p, x in leaves]
    return jax.tree_util.tree_unflatten(treedef, out)


def from_torch(tree: Any) -> Any:
    """Converts a pytree of ``torch.Tensor`` (tuples, lists, dicts) to the same pytree of
    ``jax.Array``.

    Tensors are detached and copied (gradients, devices, strides, lazy conjugation are all
    dealt with); dtype and shape are preserved, 64-bit ones included.

    Args:
      tree: a pytree whose leaves are tensors (NumPy/JAX arrays are accepted too).

    Returns:
      The pytree with every leaf replaced by a ``jax.Array``.

    Raises:
      TypeError: a leaf is not an array or tensor, or a tensor with no dense NumPy view
        (sparse, nested, meta, quantized, complex32/float8); the message names its path.

    Examples:
      >>> import torch
      >>> x = from_torch((torch.arange(3.0), {"b": torch.zeros(2, dtype=torch.float64)}))
      >>> x[0].dtype, x[1]["b"].dtype
      (dtype('float32'), dtype('float64'))
    """
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    arrays = [_leaf_to_numpy(p, x, "tree") for p, x in leaves]
    wide = any(a.dtype in _WIDE for a in arrays)
    with scoped(x64=True if wide else None):
        out = [jnp.array(a) for a in arrays]
    return jax.tree_util.tree_unflatten(treedef, out)
