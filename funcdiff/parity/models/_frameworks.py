"""What kind of JAX model this is, and its array leaves by dotted path.

One small adapter per framework, so that the rest of the porting code (weights, capture,
comparison, training) never walks a Flax NNX graph, an Equinox tree or a dict by hand:

- ``"nnx"``: a ``flax.nnx.Module``. Leaves are its ``nnx.Param`` and ``nnx.BatchStat``
  variables (RNG state, intermediates and caches are not weights). Paths follow attribute
  names in definition order; ``nnx.List``, ``nnx.Sequential`` and ``nnx.data`` lists give
  ``layers.0.linear``. Setting leaves updates the variables in place.
- ``"equinox"``: an ``equinox.Module``, or a ``(module, state)`` pair from
  ``eqx.nn.make_with_state``. Leaves are the floating array fields (static fields and integer
  arrays skipped, like ``eqx.is_inexact_array``) and the arrays
  held in the state at each ``eqx.nn.StateIndex`` field (``bn.ema_state_index.0`` is a
  BatchNorm's running mean). Setting leaves returns a new module (``eqx.tree_at``), or a new
  ``(module, state)`` pair.
- ``"pytree"``: nested dicts (lists and tuples too) of arrays or ``jax.ShapeDtypeStruct``;
  setting leaves returns a new tree of the same containers. An ``nnx.State`` (what
  ``nnx.state`` and ``nnx.grad`` return) is read as a pytree of its ``Param``/``BatchStat``
  values, with the same paths as its module (its keys are sorted, though).
- ``"function"``: any other callable (a pure function of the inputs); it has no leaves.

Examples:
  >>> from funcdiff.parity.models._frameworks import framework_of, jax_leaves, set_leaves
  >>> import numpy as np
  >>> tree = {"dense": {"kernel": np.zeros((2, 3)), "bias": np.zeros(3)}}
  >>> framework_of(tree)
  'pytree'
  >>> list(jax_leaves(tree))
  ['dense.kernel', 'dense.bias']
  >>> set_leaves(tree, {"dense.bias": np.ones(3)})["dense"]["bias"]
  array([1., 1., 1.])
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal, NamedTuple

import numpy as np

__all__ = [
    "Framework",
    "JaxLayer",
    "JaxLeaf",
    "eqx_if_imported",
    "framework_of",
    "get_leaf",
    "jax_layers",
    "jax_leaves",
    "nnx_if_imported",
    "require_equinox",
    "require_flax_nnx",
    "set_leaves",
]

Framework = Literal["nnx", "equinox", "pytree", "function"]
_COLLECTIONS = ("params", "batch_stats")
Key = str | int


def require_flax_nnx() -> Any:
    """Imports and returns ``flax.nnx``, with an install hint when flax is missing."""
    try:
        return importlib.import_module("flax.nnx")
    except ImportError as e:
        raise ImportError(
            "Flax is required for Flax NNX models: pip install 'funcdiff[flax]'"
        ) from e


def require_equinox() -> Any:
    """Imports and returns ``equinox``, with an install hint when it is missing."""
    try:
        return importlib.import_module("equinox")
    except ImportError as e:
        raise ImportError(
            "Equinox is required for Equinox models: pip install 'funcdiff[equinox]'"
        ) from e


def nnx_if_imported() -> Any:
    """``flax.nnx`` when flax is already imported (a model of it can exist), else None."""
    return sys.modules.get("flax.nnx") if "flax" in sys.modules else None


def eqx_if_imported() -> Any:
    return sys.modules.get("equinox")


def _is_eqx_pair(model: Any) -> bool:
    eqx = eqx_if_imported()
    return (
        eqx is not None
        and isinstance(model, tuple)
        and len(model) == 2
        and isinstance(model[0], eqx.Module)
        and isinstance(model[1], eqx.nn.State)
    )


def framework_of(jax_model: Any) -> Framework:
    """Says which framework ``jax_model`` belongs to.

    Args:
      jax_model: a ``flax.nnx.Module``, an ``equinox.Module`` or ``(module, state)`` pair, a
        pytree of arrays (nested dicts, lists, tuples), or a callable.

    Returns:
      ``"nnx"``, ``"equinox"``, ``"pytree"`` or ``"function"``.

    Raises:
      TypeError: ``jax_model`` is none of these (a torch module, a bare array, ...).

    Examples:
      >>> framework_of({"w": np.ones(2)}), framework_of(np.tanh)
      ('pytree', 'function')
    """
    nnx = nnx_if_imported()
    if nnx is not None and isinstance(jax_model, nnx.Module):
        return "nnx"
    eqx = eqx_if_imported()
    if eqx is not None and (isinstance(jax_model, eqx.Module) or _is_eqx_pair(jax_model)):
        return "equinox"
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(jax_model, torch.nn.Module):
        raise TypeError(
            "Expected `jax_model` to be a JAX model (flax.nnx.Module, equinox.Module or a "
            f"pytree of arrays), got the torch module {type(jax_model).__name__}; "
            "pass the torch model as the second argument."
        )
    linen = sys.modules.get("flax.linen")
    if linen is not None and isinstance(jax_model, linen.Module):
        raise TypeError(
            f"Expected `jax_model` to hold weights, got the Flax Linen module "
            f"{type(jax_model).__name__}, which holds none; pass its variables instead "
            "(`model.init(key, x)`, a {'params': ..., 'batch_stats': ...} dict)."
        )
    if isinstance(jax_model, Mapping | list | tuple):
        return "pytree"
    if callable(jax_model):
        return "function"
    raise TypeError(
        "Expected `jax_model` to be a flax.nnx.Module, an equinox.Module (or a (module, "
        "state) pair), a pytree of arrays or a function, got "
        f"{type(jax_model).__name__}."
    )


class JaxLeaf(NamedTuple):
    """One array leaf of a JAX model.

    Attributes:
      path: dotted path (``"layers.0.kernel"``, ``"bn.ema_state_index.0"``).
      key: the same path as a tuple of attribute names, indices and dict keys.
      shape: the leaf's shape.
      dtype: the leaf's dtype (a NumPy dtype).
      collection: ``"param"`` for trainable parameters, ``"state"`` for statistics
        (``nnx.BatchStat``, Equinox state, pytree leaves under ``batch_stats``).
    """

    path: str
    key: tuple[Key, ...]
    shape: tuple[int, ...]
    dtype: np.dtype
    collection: str


class JaxLayer(NamedTuple):
    """A module of a JAX model together with the leaves it owns.

    Attributes:
      path: dotted module path (``"blocks.0.attn"``; ``""`` for the root).
      type_name: the module's class name (``"Linear"``); for a pytree, ``"dict"``.
      module: the module object (None for pytrees).
      leaves: the layer's leaves keyed by their path relative to the layer
        (``"kernel"``, ``"query.kernel"``), in definition order.
    """

    path: str
    type_name: str
    module: Any
    leaves: dict[str, JaxLeaf]


def dotted(key: Sequence[Key]) -> str:
    """``("layers", 0, "kernel")`` -> ``"layers.0.kernel"``."""
    return ".".join(str(k) for k in key)


def _shape_dtype(x: Any) -> tuple[tuple[int, ...], np.dtype]:
    return tuple(int(d) for d in np.shape(x)), np.dtype(x.dtype)


def _is_array(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, type)


# ----------------------------------------------------------------------------------- walking
# Each walker yields (key, kind, obj): kind "module" for a module node (before its leaves),
# "leaf" for an array leaf, whose obj is (value, collection).


def _walk_nnx(
    obj: Any, key: tuple[Key, ...], seen: set[int] | None = None
) -> Iterator[tuple[tuple[Key, ...], str, Any]]:
    """Walks an NNX graph; a module or variable met again (shared, tied) is listed once,
    under its first path, as ``nnx.state`` does."""
    nnx = nnx_if_imported()
    seen = set() if seen is None else seen
    if isinstance(obj, nnx.Variable | nnx.Module):
        if id(obj) in seen:
            return
        seen.add(id(obj))
    if isinstance(obj, nnx.Variable):
        if isinstance(obj, nnx.Param | nnx.BatchStat):
            collection = "state" if isinstance(obj, nnx.BatchStat) else "param"
            yield key, "leaf", (obj.get_value(), collection)
        return
    if isinstance(obj, nnx.Module):
        yield key, "module", obj
        for name, value in vars(obj).items():
            if not name.startswith("_"):
                k: Key = int(name) if isinstance(obj, nnx.List) else name
                yield from _walk_nnx(value, (*key, k), seen)
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            yield from _walk_nnx(value, (*key, i), seen)
    elif isinstance(obj, Mapping):
        for name, value in obj.items():
            yield from _walk_nnx(value, (*key, name), seen)


def _walk_eqx(
    obj: Any, key: tuple[Key, ...], state: Any
) -> Iterator[tuple[tuple[Key, ...], str, Any]]:
    eqx = eqx_if_imported()
    if isinstance(obj, eqx.nn.StateIndex):
        if state is None:
            return  # reported by the caller: a stateful layer without its state
        import jax

        value = state.get(obj)
        for sub, leaf in jax.tree_util.tree_flatten_with_path(value)[0]:
            if _is_array(leaf):
                idx: tuple[Key, ...] = tuple(getattr(s, "idx", getattr(s, "key", "?")) for s in sub)
                yield (*key, *idx), "leaf", (leaf, "state")
        return
    if isinstance(obj, eqx.Module):
        yield key, "module", obj
        for f in dataclasses.fields(obj):
            if not f.metadata.get("static", False):
                yield from _walk_eqx(getattr(obj, f.name), (*key, f.name), state)
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            yield from _walk_eqx(value, (*key, i), state)
    elif isinstance(obj, Mapping):
        for name, value in obj.items():
            yield from _walk_eqx(value, (*key, name), state)
    elif _is_array(obj) and np.issubdtype(np.dtype(obj.dtype), np.inexact):
        # parameters are the floating arrays (eqx.is_inexact_array); an integer array field
        # (indices, a fixed mask) is no weight
        yield key, "leaf", (obj, "param")


def _walk_pytree(obj: Any, key: tuple[Key, ...]) -> Iterator[tuple[tuple[Key, ...], str, Any]]:
    nnx = nnx_if_imported()
    if nnx is not None and isinstance(obj, nnx.Variable):  # an nnx.State (gradients, ...)
        if isinstance(obj, nnx.Param | nnx.BatchStat):
            collection = "state" if isinstance(obj, nnx.BatchStat) else "param"
            yield key, "leaf", (obj.get_value(), collection)
        return
    if isinstance(obj, Mapping):
        yield key, "module", obj
        for name, value in obj.items():
            yield from _walk_pytree(value, (*key, name))
    elif isinstance(obj, list | tuple):
        yield key, "module", obj
        for i, value in enumerate(obj):
            yield from _walk_pytree(value, (*key, i))
    elif _is_array(obj):
        collection = "state" if key[:1] == ("batch_stats",) else "param"
        yield key, "leaf", (obj, collection)
    elif obj is not None:
        raise TypeError(
            "Expected `jax_model` to be a pytree of arrays, got a leaf of type "
            f"{type(obj).__name__} at `{dotted(key)}`."
        )


def _split(jax_model: Any) -> tuple[Framework, Any, Any]:
    fw = framework_of(jax_model)
    if fw == "equinox" and _is_eqx_pair(jax_model):
        return fw, jax_model[0], jax_model[1]
    return fw, jax_model, None


def _walk(jax_model: Any) -> Iterator[tuple[tuple[Key, ...], str, Any]]:
    fw, model, state = _split(jax_model)
    if fw == "nnx":
        yield from _walk_nnx(model, ())
    elif fw == "equinox":
        if state is None:
            eqx = eqx_if_imported()
            for key, kind, obj in _walk_eqx(model, (), None):
                yield key, kind, obj
                if kind == "module":
                    for f in dataclasses.fields(obj):
                        if isinstance(getattr(obj, f.name), eqx.nn.StateIndex):
                            raise TypeError(
                                f"The Equinox model has state ({type(obj).__name__} at "
                                f"`{dotted(key) or '<root>'}`); pass `jax_model` as the "
                                "`(model, state)` pair from `eqx.nn.make_with_state`."
                            )
        else:
            yield from _walk_eqx(model, (), state)
    elif fw == "pytree":
        yield from _walk_pytree(model, ())


def jax_leaves(jax_model: Any) -> dict[str, Any]:
    """The array leaves of ``jax_model`` (parameters and state) by dotted path, in definition order.

    Args:
      jax_model: see :func:`framework_of`. A function has no leaves.

    Returns:
      ``{path: array}``; NNX and Equinox leaves are the live arrays (not copies).

    Raises:
      TypeError: an Equinox model with state given without its state.
    """
    return {dotted(k): obj[0] for k, kind, obj in _walk(jax_model) if kind == "leaf"}


def jax_layers(
    jax_model: Any, *, atomic: Callable[[Any], bool] | None = None
) -> tuple[JaxLayer, ...]:
    """The modules of ``jax_model`` that own leaves, in definition order.

    A module for which ``atomic(module)`` is True owns every leaf below it (a
    ``MultiHeadAttention`` owns its ``query.kernel``); any other module owns its direct leaves.
    For a pytree every dict holding arrays is a layer; a Linen-style ``{"params": ...,
    "batch_stats": ...}`` dict gives one layer per module path (``"BatchNorm_0"`` owns
    ``params.BatchNorm_0.scale`` and ``batch_stats.BatchNorm_0.mean``).

    Args:
      jax_model: see :func:`framework_of`.
      atomic: which modules own their whole subtree; None: none.

    Returns:
      One :class:`JaxLayer` per leaf-owning module, ordered by its first leaf.
    """
    fw = framework_of(jax_model)
    # a Linen-style variables dict: {"params": {...}, "batch_stats": {...}} -> one layer per
    # module path, its parameters and statistics together
    collections = (
        fw == "pytree"
        and isinstance(jax_model, Mapping)
        and "params" in jax_model
        and set(jax_model) <= set(_COLLECTIONS)
    )
    owners: dict[tuple[Key, ...], JaxLayer] = {}
    stack: list[tuple[tuple[Key, ...], Any, bool]] = []  # (key, module, is_atomic)
    for key, kind, obj in _walk(jax_model):
        while stack and key[: len(stack[-1][0])] != stack[-1][0]:
            stack.pop()
        if kind == "module":
            if not (stack and stack[-1][2]):
                stack.append((key, obj, bool(atomic and atomic(obj))))
            continue
        value, collection = obj
        if not stack:  # a leaf at the root
            stack.append(((), jax_model, False))
        okey, module, _ = stack[-1]
        gkey = okey[1:] if collections else okey
        if gkey not in owners:
            tree = fw == "pytree"
            owners[gkey] = JaxLayer(
                dotted(gkey),
                "dict" if tree else type(module).__name__,
                None if tree else module,
                {},
            )
        shape, dtype = _shape_dtype(value)
        rel = dotted(key[len(okey) :])
        owners[gkey].leaves[rel] = JaxLeaf(dotted(key), key, shape, dtype, collection)
    return tuple(owners.values())


def _parse(model: Any, path: str, fw: Framework) -> tuple[Key, ...]:
    """Dotted path -> key tuple, turning digits into indices where the container is a sequence."""
    leaves = {dotted(k): k for k, kind, _ in _walk(model) if kind == "leaf"}
    if path not in leaves:
        import difflib

        close = difflib.get_close_matches(path, list(leaves), n=1)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        raise KeyError(f"The {fw} model has no leaf `{path}`.{hint}")
    return leaves[path]


def get_leaf(jax_model: Any, path: str) -> Any:
    """The array at dotted ``path`` in ``jax_model``.

    Raises:
      KeyError: no such leaf; the message names the closest one.

    Examples:
      >>> get_leaf({"a": [np.zeros(1), np.ones(2)]}, "a.1")
      array([1., 1.])
    """
    leaves = jax_leaves(jax_model)
    if path not in leaves:
        _parse(jax_model, path, framework_of(jax_model))
    return leaves[path]


def _child(obj: Any, k: Key) -> Any:
    if isinstance(obj, Mapping):
        return obj[k]
    if isinstance(obj, list | tuple):
        return obj[int(k)]
    nnx = nnx_if_imported()
    if nnx is not None and isinstance(obj, nnx.List):
        return obj[int(k)]
    return getattr(obj, str(k))


def _rebuild(tree: Any, updates: dict[tuple[Key, ...], Any], key: tuple[Key, ...]) -> Any:
    if key in updates:
        return updates[key]
    if isinstance(tree, Mapping):
        return {k: _rebuild(v, updates, (*key, k)) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        items = [_rebuild(v, updates, (*key, i)) for i, v in enumerate(tree)]
        return type(tree)(items) if not hasattr(tree, "_fields") else type(tree)(*items)
    return tree


def set_leaves(jax_model: Any, values: Mapping[str, Any]) -> Any:
    """Replaces leaves of ``jax_model`` by dotted path.

    NNX: the variables are updated in place and the same module is returned. Equinox: a new
    module (or a new ``(module, state)`` pair) is returned; the input is unchanged. Pytree: a new
    tree of the same containers. Values are stored as given (no dtype conversion), except
    Equinox state, which keeps each entry's dtype and weak type (``eqx.nn.State.set`` demands
    it).

    Args:
      jax_model: see :func:`framework_of`.
      values: ``{dotted path: array}``.

    Returns:
      The updated model.

    Raises:
      KeyError: a path that is not a leaf; the message names the closest leaf.
    """
    fw, model, state = _split(jax_model)
    if not values:
        return jax_model
    known = {dotted(k): k for k, kind, _ in _walk(jax_model) if kind == "leaf"}
    keys = {}
    for path in values:
        if path not in known:
            _parse(jax_model, path, fw)
        keys[known[path]] = values[path]
    if fw == "nnx":
        for key, value in keys.items():
            obj = model
            for k in key:
                obj = _child(obj, k)
            obj.set_value(value)
        return model
    if fw == "pytree":
        return _rebuild(model, keys, ())
    return _set_eqx(model, state, keys)


def _like_state(old: Any, key: tuple[Key, ...], value: Any) -> Any:
    """``value`` with the dtype and weak type of the state leaf it replaces (State.set checks)."""
    import jax.numpy as jnp

    for k in key:
        old = old[k]
    if getattr(old, "weak_type", False) and np.ndim(value) == 0:
        return jnp.asarray(np.asarray(value).item())  # a Python scalar makes a weak type
    return jnp.asarray(value, dtype=old.dtype)


def _set_eqx(model: Any, state: Any, keys: dict[tuple[Key, ...], Any]) -> Any:
    eqx = require_equinox()
    field_keys: dict[tuple[Key, ...], Any] = {}
    state_updates: dict[int, tuple[Any, dict[tuple[Key, ...], Any]]] = {}
    for key, value in keys.items():
        obj, i = model, 0
        while i < len(key) and not isinstance(obj, eqx.nn.StateIndex):
            obj = _child(obj, key[i])
            i += 1
        if isinstance(obj, eqx.nn.StateIndex):
            state_updates.setdefault(id(obj), (obj, {}))[1][tuple(key[i:])] = value
        else:
            field_keys[key] = value
    if field_keys:
        items = list(field_keys.items())

        def where(m: Any) -> list[Any]:
            out = []
            for key, _ in items:
                obj = m
                for k in key:
                    obj = _child(obj, k)
                out.append(obj)
            return out

        model = eqx.tree_at(where, model, replace=[v for _, v in items])
    if state_updates:
        import jax

        # a fresh copy: eqx.nn.State.set locks the state it is called on, and the caller's
        # state must stay usable
        leaves, treedef = jax.tree_util.tree_flatten(state)
        state = jax.tree_util.tree_unflatten(treedef, leaves)
    for index, sub in state_updates.values():
        old = state.get(index)
        new = _rebuild(old, {k: _like_state(old, k, v) for k, v in sub.items()}, ())
        state = state.set(index, new)
    return model if state is None else (model, state)
