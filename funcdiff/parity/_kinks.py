"""Probing a catalog case at chosen inputs: where do JAX and PyTorch differ, and is it known?

:func:`probe` evaluates a case's JAX function and PyTorch twin at the given NumPy arguments in
float64, the values and a VJP with a fixed cotangent (``1, 1.1, 1.2, ...`` over each output
leaf, so opposite errors cannot cancel), and lists every quantity that differs: NaN and inf
must sit in the same places, finite entries agree to ``rtol=1e-9, atol=1e-12``.
:func:`explain` names the registry entries whose point the arguments hit. The kink search
(``tests/test_parity_kinks.py``) feeds zeros, ties, clamp bounds and ``-inf`` rows through
both and requires every disagreement to be explained.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from funcdiff._config import scoped
from funcdiff.parity._divergences import Divergence, divergences
from funcdiff.parity._torch import require_torch

__all__ = ["Disagreement", "explain", "probe"]

RTOL, ATOL = 1e-9, 1e-12


class Disagreement(NamedTuple):
    """One quantity on which the two frameworks differ.

    Attributes:
      quantity: ``"value"`` or ``"vjp"``.
      path: the output leaf (``out[0]``) or argument leaf (``args[1]['w']``).
      detail: what differs (both values at the worst index, or the NaN/inf pattern).
    """

    quantity: str
    path: str
    detail: str


def _is_float(x: Any) -> bool:
    return np.issubdtype(np.asarray(x).dtype, np.floating)


def _cotangent(shape: tuple[int, ...]) -> np.ndarray:
    return (1.0 + 0.1 * np.arange(int(np.prod(shape)))).reshape(shape)


def _diff(a: np.ndarray, b: np.ndarray) -> str | None:
    """None when ``a`` (JAX) and ``b`` (torch) agree, else a description."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return f"shape {a.shape} vs {b.shape}"
    for name, fn in (("nan", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf)):
        ma, mb = fn(a), fn(b)
        if not np.array_equal(ma, mb):
            i = np.unravel_index(int(np.argmax(ma != mb)), a.shape) if a.ndim else ()
            return f"{name} pattern differs at {tuple(int(k) for k in i)}: {a[i]} vs {b[i]}"
    fin = np.isfinite(a) & np.isfinite(b)
    with np.errstate(invalid="ignore"):
        err = np.where(fin, np.abs(a - b) - (ATOL + RTOL * np.abs(b)), -1.0)
    if err.size and err.max() > 0:
        i = np.unravel_index(int(np.argmax(err)), a.shape) if a.ndim else ()
        return f"at {tuple(int(k) for k in i)}: {a[i]!r} vs {b[i]!r}"
    return None


def probe(case: Any, args: Sequence[Any]) -> tuple[Disagreement, ...]:
    """Evaluates ``case`` at ``args`` (float64) in both frameworks; returns what differs.

    Args:
      case: a catalog :class:`~funcdiff.parity.Case` (or anything with ``jax_fn``/``torch_fn``).
      args: its NumPy arguments (pytrees allowed); float leaves are used as float64.

    Returns:
      The disagreements; empty when values and the VJP agree.

    Raises:
      ImportError: PyTorch is not installed.
    """
    torch = require_torch()
    leaves, treedef = jax.tree.flatten(tuple(args))
    leaves = [np.asarray(x, np.float64) if _is_float(x) else np.asarray(x) for x in leaves]
    fidx = [i for i, x in enumerate(leaves) if _is_float(x)]
    paths = [
        jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(tuple(args))[0]
    ]

    with scoped(x64=True, matmul_precision="highest"):
        jl = [jnp.asarray(x) for x in leaves]

        def jfun(*fl: Any) -> Any:
            full = list(jl)
            for i, v in zip(fidx, fl, strict=True):
                full[i] = v
            return case.jax_fn(*jax.tree.unflatten(treedef, full))

        jout, vjp = jax.vjp(jfun, *[jl[i] for i in fidx])
        jouts, otree = jax.tree.flatten(jout)
        cots = [_cotangent(np.shape(o)) for o in jouts]
        jgrads = vjp(
            jax.tree.unflatten(
                otree, [jnp.asarray(c, o.dtype) for c, o in zip(cots, jouts, strict=True)]
            )
        )
        jouts = [np.asarray(o) for o in jouts]
        jgrads = [np.asarray(g) for g in jgrads]

    tl = [torch.tensor(x) for x in leaves]
    for i in fidx:
        tl[i].requires_grad_(True)
    tout = case.torch_fn(*jax.tree.unflatten(treedef, tl))
    touts = jax.tree.leaves(tout, is_leaf=lambda x: isinstance(x, torch.Tensor))
    out: list[Disagreement] = []
    if len(touts) != len(jouts):
        return (Disagreement("value", "out", f"{len(jouts)} vs {len(touts)} output leaves"),)
    for k, (a, t) in enumerate(zip(jouts, touts, strict=True)):
        d = _diff(a, t.detach().numpy())
        if d:
            out.append(Disagreement("value", f"out[{k}]", d))
    grads = (
        torch.autograd.grad(
            [t for t in touts if t.requires_grad],
            [tl[i] for i in fidx],
            [torch.tensor(c) for c, t in zip(cots, touts, strict=True) if t.requires_grad],
            allow_unused=True,
        )
        if any(t.requires_grad for t in touts)
        else [None] * len(fidx)
    )
    for i, jg, tg in zip(fidx, jgrads, grads, strict=True):
        tgn = np.zeros_like(leaves[i]) if tg is None else tg.numpy()
        d = _diff(jg, tgn)
        if d:
            out.append(Disagreement("vjp", f"args{paths[i]}", d))
    return tuple(out)


def explain(
    case: Any, args: Sequence[Any], registry: Sequence[Divergence] | None = None
) -> tuple[Divergence, ...]:
    """The registry entries that list ``case`` and whose point ``args`` hit."""
    reg = divergences() if registry is None else registry
    return tuple(
        d for d in reg if case.name in d.cases and d.covers is not None and d.covers(*args)
    )
