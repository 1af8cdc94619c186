"""The directions ``compare`` differentiates along: seeded random draws, or the user's own.

By default the tangent (for JVP and HVP rows) and the cotangent (for VJP rows) are standard
normal draws from the seeded generator. Some ops are only defined on a subset of their input
space: ``cholesky``, ``eigh`` and ``solve`` with a symmetric matrix see only symmetric
perturbations, and the frameworks are free to differ off that subset (JAX symmetrises a
Cholesky tangent, PyTorch's forward mode does not). ``compare(..., tangent=..., cotangent=...)``
takes either explicit directions or a function that maps the random draw onto the op's domain;
the checks here turn them into the per-leaf NumPy arrays both sides use.

Examples:
  >>> import numpy as np
  >>> sym = lambda a: ((a + a.T) / 2,)   # tangent: one entry per positional argument
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from funcdiff._validation import user_function
from funcdiff.parity._measure import Prepared, describe_mismatch, flatten_output

__all__ = ["output_draw", "resolve_cotangent", "resolve_tangent"]


def _as_leaf(name: str, path: str, value: Any, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """One direction leaf as a finite real array of ``shape``, cast to ``dtype``."""
    if hasattr(value, "detach") and hasattr(value, "requires_grad"):  # a torch tensor
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value)
    except Exception:
        arr = np.asarray(None)
    if arr.dtype.kind not in "fiu":
        raise TypeError(
            f"Expected `{name}` to hold real arrays, got {type(value).__name__} "
            f"(dtype {arr.dtype}) at {path}."
        )
    if arr.shape != shape:
        raise ValueError(
            f"Expected `{name}` at {path} to have the shape of the value it perturbs, {shape}, "
            f"got {arr.shape}."
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"Expected finite `{name}`, got NaN or inf at {path}.")
    return arr.astype(dtype)


def _check_tuple(name: str, value: Any, n: int, what: str) -> tuple[Any, ...]:
    if not isinstance(value, tuple | list) or len(value) != n:
        got = (
            f"a {type(value).__name__} of length {len(value)}"
            if isinstance(value, tuple | list)
            else type(value).__name__
        )
        raise TypeError(
            f"Expected `{name}` to be a tuple with one entry per positional argument ({n}), "
            f"like jax.jvp's tangents{what}, got {got}."
        )
    return tuple(value)


def _is_none(x: Any) -> bool:
    return x is None


def resolve_tangent(tangent: Any, prep: Prepared) -> tuple[np.ndarray, ...]:
    """The tangent of every float leaf of ``args``, from ``tangent`` (see ``compare``).

    Raises:
      TypeError: not a tuple matching ``args`` (or a callable returning one), non-real leaves.
      ValueError: a leaf of the wrong shape, or NaN/inf.
    """
    n = len(jax.tree_util.tree_unflatten(prep.treedef, list(prep.leaves)))
    if callable(tangent):
        draw = [np.zeros(a.shape, a.dtype) for a in prep.leaves]
        for i, t in zip(prep.float_idx, prep.tangents, strict=True):
            draw[i] = t.copy()
        with user_function("tangent"):
            value = tangent(*jax.tree_util.tree_unflatten(prep.treedef, draw))
        value = _check_tuple("tangent", value, n, " (a callable `tangent` must return one)")
    else:
        value = _check_tuple("tangent", tangent, n, " (or a callable returning one)")
    # None may stand for an (ignored) integer leaf, as float0 does for jax.jvp
    paths_leaves, treedef = jax.tree_util.tree_flatten_with_path(value, is_leaf=_is_none)
    if treedef != prep.treedef:
        raise ValueError(
            "Expected `tangent` to have the pytree structure of `args`, "
            f"{prep.treedef}, got {treedef}."
        )
    leaves = [x for _, x in paths_leaves]
    for i in prep.float_idx:
        if leaves[i] is None:
            where = prep.paths[i].replace("args", "tangent", 1)
            raise TypeError(f"Expected a tangent for the float leaf {where}, got None.")
    return tuple(
        _as_leaf(
            "tangent",
            prep.paths[i].replace("args", "tangent", 1),
            leaves[i],
            prep.leaves[i].shape,
            prep.leaves[i].dtype,
        )
        for i in prep.float_idx
    )


def _map_output(tree: Any, leaf_fn: Callable[[str, Any], Any], path: str = "out") -> Any:
    """``tree`` with every leaf replaced by ``leaf_fn(path, leaf)``, walked as
    :func:`flatten_output` walks it (so paths and order agree)."""
    if tree is None:
        return None
    if isinstance(tree, Mapping):
        return {k: _map_output(tree[k], leaf_fn, f"{path}[{k!r}]") for k in tree}
    if isinstance(tree, tuple | list):
        items = [_map_output(c, leaf_fn, f"{path}[{i}]") for i, c in enumerate(tree)]
        if isinstance(tree, tuple) and hasattr(tree, "_fields"):
            return type(tree)(*items)
        return type(tree)(items)
    return leaf_fn(path, tree)


def output_draw(out: Any, spec: dict[str, tuple[tuple[int, ...], Any]], rng: Any) -> Any:
    """A random normal pytree shaped like the JAX output ``out`` (float leaves drawn from
    ``rng``, other leaves zeros), for a callable ``cotangent``."""

    def leaf(path: str, x: Any) -> np.ndarray:
        shape, dtype = spec[path]
        if np.issubdtype(dtype, np.floating):
            return rng.standard_normal(shape).astype(dtype)
        return np.zeros(shape, dtype)

    return _map_output(out, leaf)


def resolve_cotangent(
    cotangent: Any,
    out: Any,
    struct: Any,
    spec: dict[str, tuple[tuple[int, ...], Any]],
    rng: Any,
) -> list[np.ndarray]:
    """The cotangent of every float output leaf, from ``cotangent`` (see ``compare``).

    ``out`` is the JAX output (shapes only), ``struct`` its :func:`flatten_output` structure
    and ``spec`` maps each output path to its ``(shape, dtype)``.

    Raises:
      TypeError: not a pytree like the output (or a callable returning one); non-real leaves.
      ValueError: a leaf of the wrong shape, or NaN/inf.
    """
    if callable(cotangent):
        draw = output_draw(out, spec, rng)
        with user_function("cotangent"):
            value = cotangent(draw)
    else:
        value = cotangent
    got_struct, leaves = flatten_output(value)
    if got_struct != struct:
        why = describe_mismatch(struct, got_struct)
        why = why.replace("JAX returns", "the output is").replace(
            "PyTorch returns", "`cotangent` is"
        )
        raise TypeError(
            f"Expected `cotangent` to have the structure of the function's output ({why})."
        )
    cots = []
    for path, leaf in leaves:
        shape, dtype = spec[path]
        if np.issubdtype(dtype, np.floating):
            where = path.replace("out", "cotangent", 1)
            cots.append(_as_leaf("cotangent", where, leaf, shape, dtype))
    return cots
