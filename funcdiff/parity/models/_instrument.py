"""The JAX model as one pure function with its aligned layers recorded.

``instrument(model, paths, train=...)`` returns a :class:`JaxProgram`: differentiable arrays,
the rest of the state, and ``run(params, rest, inputs) -> (outputs, new_rest)``. NNX models are
copied (``nnx.clone``) and each aligned submodule of the copy is replaced by a recording
wrapper; Equinox models get the wrappers through ``eqx.tree_at`` (a new tree); a pure function
is run as is (its :func:`~funcdiff.parity.tap` calls record). The user's model is never edited.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import jax

from funcdiff.parity.models._capture import Recorder, record_call
from funcdiff.parity.models._frameworks import require_equinox, require_flax_nnx

__all__ = ["JaxProgram", "instrument", "jax_modules", "layer_fn", "module_at"]


@dataclasses.dataclass
class JaxProgram:
    """A JAX model split for differentiation (see the module docstring)."""

    framework: str
    params: Any
    rest: Any
    run: Callable[[Any, Any, tuple[Any, ...]], tuple[Any, Any]]
    modules: dict[str, Any]  # dotted path -> the (unwrapped) layer, for isolate and checks
    param_paths: Callable[[Any], dict[str, Any]]  # params-like tree -> {dotted leaf path: array}


def _dotted(path: tuple[Any, ...]) -> str:
    """A key path as ``"layers.0.kernel"``, without the recording wrappers' segment."""
    parts = (str(getattr(p, "key", getattr(p, "idx", getattr(p, "name", p)))) for p in path)
    return ".".join(p for p in parts if p != "fd_wrapped")


def jax_modules(model: Any, framework: str) -> Iterator[tuple[str, Any]]:
    """``(dotted path, submodule)`` for every submodule in definition order (root excluded)."""
    if framework == "nnx":
        for path, sub in require_flax_nnx().iter_modules(model):
            if path:
                yield ".".join(str(p) for p in path), sub
        return
    if framework == "equinox":
        eqx = require_equinox()
        if isinstance(model, tuple):
            model = model[0]

        def walk(node: Any, prefix: str) -> Iterator[tuple[str, Any]]:
            if isinstance(node, eqx.Module):
                if prefix:
                    yield prefix, node
                for f in dataclasses.fields(node):
                    if f.metadata.get("static", False):
                        continue
                    yield from walk(getattr(node, f.name, None), f"{prefix}.{f.name}".lstrip("."))
            elif isinstance(node, list | tuple):
                for i, v in enumerate(node):
                    yield from walk(v, f"{prefix}.{i}".lstrip("."))
            elif isinstance(node, dict):
                for k, v in node.items():
                    yield from walk(v, f"{prefix}.{k}".lstrip("."))

        yield from walk(model, "")


def module_at(model: Any, path: str) -> Any:
    node = model
    for part in path.split("."):
        node = (
            node[int(part)] if part.isdigit() and not hasattr(node, part) else getattr(node, part)
        )
    return node


def _nnx_wrapper_cls() -> type:
    nnx = require_flax_nnx()

    class Recording(nnx.Module):  # type: ignore[name-defined]
        def __init__(self, inner: Any, name: str) -> None:
            self.fd_wrapped = inner
            self.fd_name = name

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return record_call(self.fd_name, self.fd_wrapped, args, kwargs)

        def __getattr__(self, item: str) -> Any:  # the wrapped layer's attributes stay visible
            if item.startswith("_") or item.startswith("fd_"):
                raise AttributeError(item)
            return getattr(self.fd_wrapped, item)

    return Recording


def _eqx_wrapper(inner: Any, name: str) -> Any:
    eqx = require_equinox()

    class Recording(eqx.Module):  # type: ignore[name-defined]
        fd_wrapped: Any
        fd_name: str = eqx.field(static=True)

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return record_call(self.fd_name, self.fd_wrapped, args, kwargs)

    return Recording(inner, name)


def _set_nnx(model: Any, path: str, value: Any) -> None:
    parent_path, _, last = path.rpartition(".")
    parent = module_at(model, parent_path) if parent_path else model
    if last.isdigit() and not hasattr(parent, last):
        parent[int(last)] = value
    else:
        setattr(parent, last, value)


def _cast(x: Any, dtype: Any) -> Any:
    if hasattr(x, "dtype") and jax.numpy.issubdtype(x.dtype, jax.numpy.floating):
        return jax.numpy.asarray(x, dtype)
    return x


def instrument(
    model: Any, framework: str, paths: list[str], *, train: bool, dtype: Any = None
) -> JaxProgram:
    """Builds the recorded program (see the module docstring).

    With ``dtype``, the copy's floating weights and statistics are cast to it (as the torch
    copy is), so a float64 comparison of a float32 model runs in float64 throughout.

    Raises:
      ValueError: dropout with a rate > 0 is active in training mode.
    """
    if framework == "function":
        return JaxProgram(
            framework,
            {},
            {},
            lambda params, rest, xs: (model(*xs), rest),
            {},
            lambda tree: {},
        )
    if framework == "nnx":
        nnx = require_flax_nnx()
        work = nnx.clone(model)
        if dtype is not None:
            for _, v in nnx.iter_graph(work):
                if isinstance(v, nnx.Variable) and hasattr(v.get_value(), "dtype"):
                    v.set_value(_cast(v.get_value(), dtype))
            for _, sub in nnx.iter_modules(work):  # carries and new arrays follow param_dtype
                pd = getattr(sub, "param_dtype", None)
                if pd is not None and jax.numpy.issubdtype(pd, jax.numpy.floating):
                    object.__setattr__(sub, "param_dtype", dtype)
        if train:
            work.train()
        else:
            work.eval()
        modules = dict(jax_modules(work, "nnx"))
        _refuse_dropout(modules, train)
        wrap = _nnx_wrapper_cls()
        for p in sorted(paths, key=lambda s: -s.count(".")):  # children before parents
            _set_nnx(work, p, wrap(module_at(work, p), p))
        graphdef, params, rest = nnx.split(work, nnx.Param, ...)

        def run_nnx(params: Any, rest: Any, xs: tuple[Any, ...]) -> tuple[Any, Any]:
            # fresh Variables at this trace level (merge reuses the State's own objects, and
            # a BatchStat update must happen at the level it was created in)
            rest = jax.tree_util.tree_map(lambda v: v, rest)
            m = nnx.merge(graphdef, params, rest)
            out = m(*xs)
            _, _, new_rest = nnx.split(m, nnx.Param, ...)
            return out, new_rest

        def nnx_paths(tree: Any) -> dict[str, Any]:
            flat = jax.tree_util.tree_flatten_with_path(
                tree, is_leaf=lambda v: isinstance(v, nnx.Variable)
            )[0]
            out = {}
            for path, v in flat:
                key = _dotted(path)
                out[key] = v.get_value() if isinstance(v, nnx.Variable) else v
            return out

        return JaxProgram("nnx", params, rest, run_nnx, modules, nnx_paths)
    eqx = require_equinox()
    state = None
    if isinstance(model, tuple):  # (module, eqx.nn.State): called as module(*inputs, state)
        model, state = model
        if dtype is not None:
            state = jax.tree_util.tree_map(lambda x: _cast(x, dtype), state)
    base = eqx.nn.inference_mode(model, value=not train)
    if dtype is not None:
        base = jax.tree_util.tree_map(lambda x: _cast(x, dtype), base)
    modules = dict(jax_modules(base, "equinox"))
    _refuse_dropout(modules, train)
    work = base
    for p in sorted(paths, key=lambda s: -s.count(".")):
        work = eqx.tree_at(
            lambda m, p=p: module_at(m, p), work, _eqx_wrapper(module_at(work, p), p)
        )
    params, static = eqx.partition(work, eqx.is_inexact_array)

    def run_eqx(params: Any, rest: Any, xs: tuple[Any, ...]) -> tuple[Any, Any]:
        m = eqx.combine(params, static)
        if state is None:
            return m(*xs), rest
        out, new_state = m(*xs, rest)
        return out, new_state

    def eqx_paths(tree: Any) -> dict[str, Any]:
        flat = jax.tree_util.tree_flatten_with_path(tree)[0]
        return {_dotted(p): v for p, v in flat}

    return JaxProgram(
        "equinox", params, {} if state is None else state, run_eqx, modules, eqx_paths
    )


def _refuse_dropout(modules: dict[str, Any], train: bool) -> None:
    if not train:
        return
    for path, m in modules.items():
        rate = getattr(m, "rate", None) if type(m).__name__ == "Dropout" else None
        if rate is None and type(m).__name__ == "Dropout":
            rate = getattr(m, "p", None)
        if rate and not getattr(m, "deterministic", False) and not getattr(m, "inference", False):
            raise ValueError(
                f"`train=True` with dropout active in the JAX model at `{path}` (rate {rate}): "
                "dropout masks cannot be reproduced across frameworks. Pass both models with "
                "dropout rate 0 (or compare in eval mode)."
            )


def layer_fn(prog: JaxProgram, rec: Recorder, key: str, path: str) -> Callable[..., Any] | None:
    """The JAX layer at ``path`` as a function of its float inputs (batched like the record)."""
    info = rec.calls.get(key)
    layer = prog.modules.get(path)
    if info is None or layer is None or info.other_arrays:
        return None

    def call(*floats: Any) -> Any:
        it = iter(floats)
        leaves = [next(it) if v is None else v for v in info.leaves]
        args, kwargs = jax.tree_util.tree_unflatten(info.treedef, leaves)
        return layer(*args, **kwargs)

    recorded = rec.layer_inputs(key)
    if recorded is None:
        return None
    extra = {a.ndim - n for a, n in zip(recorded, info.float_ndims, strict=True)}
    if len(extra) != 1:
        return None
    fn: Callable[..., Any] = call
    for _ in range(extra.pop()):
        fn = jax.vmap(fn)
    return fn
