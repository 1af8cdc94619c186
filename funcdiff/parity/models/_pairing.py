"""Pairing for the comparison: layers by name and kind, activations and gradients by layout.

- Layers: a torch module and a JAX submodule pair when their dotted names agree after
  ``layers.`` containers are dropped before an index (``nnx.Sequential``'s ``layers.0`` is
  torch's ``0``); leftover torch layers with parameters then pair with leftover JAX layers of
  the same kind, in definition order.
- Activations: JAX's array is put into torch's layout by shape: identical, channels-last
  (``N...C`` to ``NC...``), or the first two axes swapped (sequence-first torch RNN/attention).
- Parameters: a torch parameter pairs with the JAX leaf of the aligned layer whose name it
  maps to (``weight`` to ``kernel``/``scale``/``embedding``/``weight``, ``running_mean`` to
  ``mean``); a Flax ``kernel`` is transposed to torch's (out, in, *spatial) layout.

Examples:
  >>> import numpy as np
  >>> act_to_torch(np.zeros((2, 5, 5, 3)), (2, 3, 5, 5)).shape
  (2, 3, 5, 5)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["act_to_jax", "act_to_torch", "align_layers", "best_layout", "layout_of", "param_pairs"]

_KINDS = {
    "Linear": ("Linear",),
    "Conv1d": ("Conv", "Conv1d"),
    "Conv2d": ("Conv", "Conv2d"),
    "Conv3d": ("Conv", "Conv3d"),
    "ConvTranspose1d": ("ConvTranspose", "ConvTranspose1d"),
    "ConvTranspose2d": ("ConvTranspose", "ConvTranspose2d"),
    "LayerNorm": ("LayerNorm",),
    "GroupNorm": ("GroupNorm",),
    "RMSNorm": ("RMSNorm",),
    "BatchNorm1d": ("BatchNorm",),
    "BatchNorm2d": ("BatchNorm",),
    "BatchNorm3d": ("BatchNorm",),
    "Embedding": ("Embed", "Embedding"),
    "MultiheadAttention": ("MultiHeadAttention", "MultiheadAttention"),
    "LSTM": ("RNN", "LSTM"),
    "GRU": ("RNN", "GRU"),
}


def _norm(path: str) -> str:
    parts = path.split(".")
    keep = [
        p
        for k, p in enumerate(parts)
        if not (p == "layers" and k + 1 < len(parts) and parts[k + 1].isdigit())
    ]
    return ".".join(keep)


def align_layers(
    torch_module: Any,
    jax_modules: list[tuple[str, Any]],
    weight_layers: list[tuple[str, str, str]] = (),  # type: ignore[assignment]
) -> list[tuple[str, str, str]]:
    """``(torch name, JAX path, torch kind)`` per aligned layer, in torch definition order.

    By name first; then the weight loader's alignment (``weight_layers``, from
    ``load_torch_weights``: order and shapes of layers of the same kind); then leftover
    layers with parameters of the same kind, in order.
    """
    tmods = [(n, m) for n, m in torch_module.named_modules() if n]
    by_norm: dict[str, str] = {}
    for p, _ in jax_modules:
        by_norm.setdefault(_norm(p), p)
    pairs: dict[str, tuple[str, str]] = {}
    used: set[str] = set()
    for n, m in tmods:
        hit = by_norm.get(_norm(n))
        if hit is not None and hit not in used:
            pairs[n] = (hit, type(m).__name__)
            used.add(hit)
    known = {p for p, _ in jax_modules}
    kinds = {n: type(m).__name__ for n, m in tmods}
    for t, j, _ in weight_layers:
        if t in kinds and t not in pairs and j in known and j not in used:
            pairs[t] = (j, kinds[t])
            used.add(j)
    jtypes = {p: type(m).__name__ for p, m in jax_modules}
    for n, m in tmods:
        kind = type(m).__name__
        if n in pairs or kind not in _KINDS or not any(True for _ in m.parameters(False)):
            continue
        cand = next(
            (p for p, _ in jax_modules if p not in used and jtypes[p] in _KINDS[kind]), None
        )
        if cand is not None:
            pairs[n] = (cand, kind)
            used.add(cand)
    order = {n: k for k, (n, _) in enumerate(tmods)}
    return [(n, p, k) for n, (p, k) in sorted(pairs.items(), key=lambda kv: order[kv[0]])]


_TO_TORCH = {
    "same": lambda a: a,
    "last": lambda a: np.moveaxis(a, -1, 1) if a.ndim >= 3 else a,
    "swap": lambda a: np.swapaxes(a, 0, 1) if a.ndim >= 2 else a,
}
_TO_JAX = {
    "same": lambda t: t,
    "last": lambda t: np.moveaxis(t, 1, -1) if t.ndim >= 3 else t,
    "swap": lambda t: np.swapaxes(t, 0, 1) if t.ndim >= 2 else t,
}


def layout_of(jax_shape: tuple[int, ...], torch_shape: tuple[int, ...]) -> str | None:
    """``"same"``, ``"last"`` (JAX channels-last) or ``"swap"`` (first two axes), or None."""
    z = np.zeros(jax_shape, dtype=np.int8)
    for name, f in _TO_TORCH.items():
        if f(z).shape == tuple(torch_shape):
            return name
    return None


def best_layout(a: np.ndarray | None, t: np.ndarray | None) -> str | None:
    """The layout that puts JAX's ``a`` into torch's ``t``: by shape, and where several fit
    (a channels-last (4, 16, 16, 16) is also a channels-first one), by the smallest error."""
    if a is None or t is None:
        return None
    fits = [n for n, f in _TO_TORCH.items() if f(np.empty(a.shape, np.int8)).shape == t.shape]
    if len(fits) <= 1:
        return fits[0] if fits else None
    x = np.asarray(t, np.float64)

    def err(n: str) -> float:
        d = np.abs(_TO_TORCH[n](np.asarray(a, np.float64)) - x)
        return float(np.nanmax(np.where(np.isnan(d), np.inf, d))) if d.size else 0.0

    return min(fits, key=err)


def act_to_torch(a: np.ndarray, shape: tuple[int, ...], prefer: str | None = None) -> np.ndarray:
    """JAX activation ``a`` in torch's layout of ``shape`` (unchanged when nothing fits).

    ``prefer`` (a layout seen at the layer's input) wins when it fits, so a channels-last
    output with equal sizes (N, 3, 3, 3) is not taken for channels-first.
    """
    shape = tuple(shape)
    names = ([prefer] if prefer else []) + ["same", "last", "swap"]
    for name in names:
        out = _TO_TORCH[name](a)
        if out.shape == shape:
            return out
    return a


def act_to_jax(t: np.ndarray, shape: tuple[int, ...], prefer: str | None = None) -> np.ndarray:
    """Torch activation ``t`` in JAX's layout of ``shape`` (the inverse of :func:`act_to_torch`)."""
    shape = tuple(shape)
    names = ([prefer] if prefer else []) + ["same", "last", "swap"]
    for name in names:
        out = _TO_JAX[name](t)
        if out.shape == shape:
            return out
    return t


_NAMES = {
    "weight": ("weight", "kernel", "scale", "embedding"),
    "bias": ("bias",),
    "running_mean": ("mean", "running_mean", "ema_mean"),
    "running_var": ("var", "running_var", "ema_var"),
}


def _kernel_to_torch(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if a.ndim == 2:
        return a.T
    return np.transpose(a, (a.ndim - 1, a.ndim - 2, *range(a.ndim - 2)))


def _as_is(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return a if a.shape == tuple(shape) or a.size != int(np.prod(shape)) else a.reshape(shape)


def param_pairs(
    pairs: list[tuple[str, str, str]],
    torch_module: Any,
    jax_leaves: dict[str, Any],
    prog: Any,
    *,
    buffers: bool = False,
) -> tuple[list[tuple[str, str, Callable[..., np.ndarray]]], list[str]]:
    """``(torch name, JAX leaf path, to-torch-layout)`` for the aligned layers' direct leaves,
    and the torch names left unpaired."""
    matched: list[tuple[str, str, Callable[..., np.ndarray]]] = []
    unmatched: list[str] = []
    aligned = {t: j for t, j, _ in pairs}
    seen: set[str] = set()
    for tname, tmod in torch_module.named_modules():
        items = (
            [
                (n, b)
                for n, b in tmod.named_buffers(recurse=False)
                if n in ("running_mean", "running_var")
            ]
            if buffers
            else list(tmod.named_parameters(recurse=False))
        )
        if not items:
            continue
        jpath = aligned.get(tname)
        for leaf, _ in items:
            full = f"{tname}.{leaf}" if tname else leaf
            if full in seen:
                continue
            seen.add(full)
            if jpath is None:
                unmatched.append(full)
                continue
            hit = next(
                (f"{jpath}.{c}" for c in _NAMES.get(leaf, (leaf,)) if f"{jpath}.{c}" in jax_leaves),
                None,
            )
            if hit is None:
                unmatched.append(full)
                continue
            conv = (
                _kernel_to_torch if hit.endswith(".kernel") and prog.framework == "nnx" else _as_is
            )
            matched.append((full, hit, conv))
    return matched, unmatched
