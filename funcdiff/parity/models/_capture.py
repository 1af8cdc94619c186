"""Intermediates and activation gradients of both models, in execution order.

JAX side: :func:`tap` marks an intermediate in any JAX code. While :func:`compare_model
<funcdiff.parity.compare_model>` runs, a tap is an identity with a custom VJP whose forward
hands the value to the host and whose backward hands over the cotangent arriving there, which
is the gradient with respect to a zero perturbation added at the tap. Both go through
``jax.pure_callback`` (``vmap_method="expand_dims"``), so a tap works under ``jit``, ``grad``,
``vmap`` (the host sees the whole batch) and ``scan`` (one value per step, stacked). Outside a
comparison a tap is the plain identity and costs nothing.

NNX and Equinox models are not edited: a copy gets a recording wrapper around each aligned
layer, which taps the layer's inputs (for ``isolate`` and the input check) and its first float
output. Recording wrappers keep the execution order, which ``nnx.capture`` loses (its keys come
back sorted), and they see through ``nnx.RNN``'s scan at the level of the RNN.

Torch side: forward pre-hooks and hooks on a deep copy of the module record each aligned
layer's inputs and output, and a tensor hook on the output records its gradient.

Examples:
  >>> import jax, jax.numpy as jnp
  >>> from funcdiff.parity import tap
  >>> def f(x):
  ...     h = tap("hidden", jnp.tanh(x))
  ...     return (h**2).sum()
  >>> float(jax.jit(jax.grad(f))(jnp.zeros(3)).sum())  # an identity outside a comparison
  0.0
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from funcdiff._validation import is_float_dtype

__all__ = [
    "SCOPE",
    "FunctionalCall",
    "Recorder",
    "TorchCapture",
    "capture_torch",
    "recording",
    "tap",
]

_LOCAL = threading.local()

# name-scope prefix of an aligned layer's call: its equations in the whole model's jaxpr carry
# ``fd:<path>`` in their name stack (how the functional check tells a layer's own code from
# the code around it)
SCOPE = "fd:"


def _active() -> Recorder | None:
    stack = getattr(_LOCAL, "stack", None)
    return stack[-1] if stack else None


def _is_float_array(x: Any) -> bool:
    return hasattr(x, "dtype") and hasattr(x, "shape") and is_float_dtype(np.dtype(x.dtype))


@dataclasses.dataclass
class CallInfo:
    """What a recording wrapper saw at trace time for one call of a layer."""

    treedef: Any
    leaves: list[Any]  # non-array leaves as they were; float arrays replaced by None
    float_ndims: list[int]  # ndim of each float input inside the trace (to undo vmaps)
    out_ndim: int | None
    other_arrays: bool  # non-float array inputs (masks, indices): isolation is skipped
    specs: list[Any] = dataclasses.field(default_factory=list)  # ShapeDtypeStruct per array leaf


class Recorder:
    """Collects tapped values and cotangents during one JAX run (see the module docstring).

    Keys are tap names, with ``#k`` appended for the k-th repeated call in one trace.
    ``order`` is the order in which taps were traced (the execution order of the program).
    """

    def __init__(self) -> None:
        self.values: dict[str, list[np.ndarray]] = {}
        self.grads: dict[str, list[np.ndarray]] = {}
        self.inputs: dict[str, list[np.ndarray]] = {}
        self.calls: dict[str, CallInfo] = {}
        self.order: list[str] = []
        self._counts: dict[str, int] = {}

    def begin_trace(self) -> None:
        self._counts = {}
        self.order = []

    def key(self, name: str) -> str:
        k = self._counts.get(name, 0)
        self._counts[name] = k + 1
        key = name if k == 0 else f"{name}#{k}"
        self.order.append(key)
        return key

    def _store(self, where: dict[str, Any], key: str) -> Callable[[Any], Any]:
        def store(v: Any) -> Any:
            v = np.asarray(v)
            where.setdefault(key, []).append(v.copy())
            return v

        return store

    def identity(self, key: str, x: Any, *, grad: bool) -> Any:
        """``x`` unchanged; its value (and, with ``grad``, its cotangent) sent to the host."""
        fwd_store = self._store(self.values, key)
        bwd_store = self._store(self.grads, key) if grad else None

        @jax.custom_vjp
        def ident(v: Any) -> Any:
            return to_host(fwd_store, v)

        def fwd(v: Any) -> tuple[Any, None]:
            return ident(v), None

        def bwd(_: None, g: Any) -> tuple[Any]:
            return (g if bwd_store is None else to_host(bwd_store, g),)

        ident.defvjp(fwd, bwd)
        return ident(x)

    def input(self, key: str, x: Any) -> Any:
        """``x`` unchanged; its value sent to the host (one float input of a layer call)."""
        store = self._store(self.inputs, key)

        @jax.custom_vjp
        def ident(v: Any) -> Any:
            return to_host(store, v)

        ident.defvjp(lambda v: (ident(v), None), lambda _, g: (g,))
        return ident(x)

    # ---- after the run ---------------------------------------------------------------------

    @staticmethod
    def _one(vals: list[np.ndarray] | None) -> np.ndarray | None:
        """The recorded value; several (a tap inside ``scan``) stacked along a new axis 0.

        XLA may run a pure callback more than once for one value (rematerialisation), so
        exact repeats of the previous value are dropped first.
        """
        if not vals:
            return None
        kept = [vals[0]]
        for v in vals[1:]:
            if not (v.shape == kept[-1].shape and np.array_equal(v, kept[-1], equal_nan=True)):
                kept.append(v)
        return kept[0] if len(kept) == 1 else np.stack(kept)

    def value(self, key: str) -> np.ndarray | None:
        return self._one(self.values.get(key))

    def grad(self, key: str) -> np.ndarray | None:
        return self._one(self.grads.get(key))

    def layer_inputs(self, key: str) -> list[np.ndarray] | None:
        info = self.calls.get(key)
        if info is None:
            return None
        out = []
        for i in range(len(info.float_ndims)):
            v = self._one(self.inputs.get(f"{key}@{i}"))
            if v is None:
                return None
            out.append(v)
        return out

    def reset_values(self) -> None:
        self.values, self.grads, self.inputs = {}, {}, {}


def to_host(store: Callable[[Any], Any], x: Any) -> Any:
    """``x`` unchanged, with ``store`` called on its value on the host.

    float64 travels as its bits (``uint32`` pairs): JAX canonicalises a callback's arguments
    and results with the x64 setting of the thread that runs it, and XLA runs callbacks of
    larger programs on worker threads, where the scoped x64 of the caller does not hold.
    """
    dtype = jnp.result_type(x)
    if dtype == jnp.float64:
        bits = jax.lax.bitcast_convert_type(x, jnp.uint32)

        def via_bits(b: Any) -> Any:
            b = np.ascontiguousarray(np.asarray(b))
            store(b.view(np.float64)[..., 0])
            return b

        sds = jax.ShapeDtypeStruct(bits.shape, bits.dtype)
        out = jax.pure_callback(via_bits, sds, bits, vmap_method="expand_dims")
        return jax.lax.bitcast_convert_type(out, jnp.float64)
    sds = jax.ShapeDtypeStruct(jnp.shape(x), dtype)
    return jax.pure_callback(store, sds, x, vmap_method="expand_dims")


@contextmanager
def recording(rec: Recorder) -> Iterator[Recorder]:
    """Makes ``rec`` the active recorder (taps record into it) inside the block."""
    stack = getattr(_LOCAL, "stack", None)
    if stack is None:
        stack = _LOCAL.stack = []
    stack.append(rec)
    try:
        yield rec
    finally:
        stack.pop()


def tap(name: str, x: Any) -> Any:
    """Marks ``x`` as the intermediate ``name`` of a pure JAX function; returns ``x``.

    In a :func:`~funcdiff.parity.compare_model` run, a tap's name aligns it with the torch
    module of the same dotted name (``"encoder.0"``), its value is compared with that module's
    output and the gradient arriving at it with the gradient at the module's output. Outside
    a comparison it is the identity. It works under ``jit``, ``grad``, ``vmap`` and ``scan``;
    a tap inside a function that was already jitted (and cached) before the comparison is not
    seen, so pass the plain function. For a pytree ``x`` the first float leaf is tapped.

    Args:
      name: the intermediate's name, usually the torch module's dotted name.
      x: an array (or a pytree whose first float leaf is tapped).

    Returns:
      ``x``, unchanged.

    Raises:
      TypeError: ``name`` is not a non-empty string.

    Examples:
      >>> import jax.numpy as jnp
      >>> from funcdiff.parity import tap
      >>> def mlp(x, w1, w2):
      ...     h = tap("fc1", x @ w1.T)
      ...     return tap("fc2", jnp.tanh(h) @ w2.T)
      >>> mlp(jnp.ones((1, 2)), jnp.ones((3, 2)), jnp.ones((1, 3))).shape
      (1, 1)
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"Expected `name` to be a non-empty string, got {name!r}.")
    rec = _active()
    if rec is None:
        return x
    leaves, treedef = jax.tree_util.tree_flatten(x)
    idx = next((i for i, v in enumerate(leaves) if _is_float_array(v)), None)
    key = rec.key(name)
    if idx is None:
        return x
    leaves = list(leaves)
    leaves[idx] = rec.identity(key, leaves[idx], grad=True)
    return jax.tree_util.tree_unflatten(treedef, leaves)


def record_call(name: str, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    """Calls ``fn(*args, **kwargs)`` with its float inputs and first float output recorded."""
    rec = _active()
    if rec is None:
        return fn(*args, **kwargs)
    leaves, treedef = jax.tree_util.tree_flatten((args, kwargs))
    float_pos = [i for i, v in enumerate(leaves) if _is_float_array(v)]
    other = any(hasattr(v, "shape") and i not in float_pos for i, v in enumerate(leaves))
    key_probe = name if name not in rec._counts else f"{name}#{rec._counts[name]}"
    new = list(leaves)
    for j, i in enumerate(float_pos):
        new[i] = rec.input(f"{key_probe}@{j}", leaves[i])
    a, k = jax.tree_util.tree_unflatten(treedef, new)
    with jax.named_scope(SCOPE + name):  # the layer's equations in the model's jaxpr
        out = fn(*a, **k)
    out_leaves, out_def = jax.tree_util.tree_flatten(out)
    o = next((i for i, v in enumerate(out_leaves) if _is_float_array(v)), None)
    key = rec.key(name)
    rec.calls[key] = CallInfo(
        treedef,
        [None if i in float_pos else v for i, v in enumerate(leaves)],
        [int(np.ndim(leaves[i])) for i in float_pos],
        None if o is None else int(np.ndim(out_leaves[o])),
        other,
        [
            jax.ShapeDtypeStruct(np.shape(v), v.dtype) if hasattr(v, "shape") else None
            for v in leaves
        ],
    )
    if o is None:
        return out
    out_leaves = list(out_leaves)
    out_leaves[o] = rec.identity(key, out_leaves[o], grad=True)
    return jax.tree_util.tree_unflatten(out_def, out_leaves)


# ---- torch ----------------------------------------------------------------------------------


@dataclasses.dataclass
class TorchCapture:
    """What the torch copy computed: per aligned layer (key as in :class:`Recorder`)."""

    outputs: list[np.ndarray]
    values: dict[str, np.ndarray]
    inputs: dict[str, list[np.ndarray]]
    grads: dict[str, np.ndarray]
    input_grads: list[np.ndarray | None]
    param_grads: dict[str, np.ndarray]
    buffers: dict[str, np.ndarray]
    pre_order: list[str]
    post_order: list[str]
    functional: list[FunctionalCall] = dataclasses.field(default_factory=list)


class FunctionalCall(NamedTuple):
    """One call of a torch functional that carries a porting convention (``F.gelu``, ...).

    Attributes:
      name: the function's name (``"gelu"``, ``"layer_norm"``, ``"avg_pool2d"``, ...).
      settings: its convention-relevant arguments, positional ones by name
        (``{"approximate": "none"}``, ``{"eps": 1e-5}``, ...), defaults filled in.
      stack: the enclosing torch modules, outermost first (``""`` is the root module).
      after: the aligned layer (key as in :class:`Recorder`) whose output came last before
        the call, or None (the model inputs).
      before: the aligned layer whose input came next after the call, or None (the output).
      in_shape: shape of the first tensor argument.
      out_shape: shape of the first tensor result.
    """

    name: str
    settings: dict[str, Any]
    stack: tuple[str, ...]
    after: str | None
    before: str | None
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]


# argument names of the recorded functionals, in positional order (after the input(s)); the
# values are the defaults
_FUNCTIONALS: dict[str, tuple[int, tuple[tuple[str, Any], ...]]] = {
    "gelu": (1, (("approximate", "none"),)),
    "layer_norm": (
        1,
        (("normalized_shape", None), ("weight", None), ("bias", None), ("eps", 1e-5)),
    ),
    "group_norm": (1, (("num_groups", None), ("weight", None), ("bias", None), ("eps", 1e-5))),
    **{
        f"avg_pool{d}d": (
            1,
            (
                ("kernel_size", None),
                ("stride", None),
                ("padding", 0),
                ("ceil_mode", False),
                ("count_include_pad", True),
            ),
        )
        for d in (1, 2, 3)
    },
    **{
        f"max_pool{d}d": (
            1,
            (
                ("kernel_size", None),
                ("stride", None),
                ("padding", 0),
                ("dilation", 1),
                ("ceil_mode", False),
            ),
        )
        for d in (1, 2, 3)
    },
    "interpolate": (
        1,
        (
            ("size", None),
            ("scale_factor", None),
            ("mode", "nearest"),
            ("align_corners", None),
            ("recompute_scale_factor", None),
            ("antialias", False),
        ),
    ),
    "scaled_dot_product_attention": (
        3,
        (("attn_mask", None), ("dropout_p", 0.0), ("is_causal", False), ("scale", None)),
    ),
    "softmax": (1, (("dim", None),)),
    "pad": (1, (("pad", None), ("mode", "constant"), ("value", None))),
}


def _plain(torch: Any, v: Any) -> Any:
    """A setting as plain Python (tensors by their shape only)."""
    if isinstance(v, torch.Tensor):
        return f"tensor{tuple(v.shape)}"
    if isinstance(v, tuple | list):
        return tuple(_plain(torch, x) for x in v)
    if isinstance(v, bool | int | float | str) or v is None:
        return v
    return repr(v)


def _settings(torch: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict:
    n_in, spec = _FUNCTIONALS[name]
    out = {}
    for k, (arg, default) in enumerate(spec):
        v = args[n_in + k] if n_in + k < len(args) else kwargs.get(arg, default)
        if arg not in ("weight", "bias"):
            out[arg] = _plain(torch, v)
    return out


def _functional_mode(
    torch: Any,
    calls: list[dict[str, Any]],
    stack: list[str],
    pre_order: list[str],
    post_order: list[str],
) -> Any:
    """A ``TorchFunctionMode`` noting every call of :data:`_FUNCTIONALS` (see
    :class:`FunctionalCall`); anything else passes through untouched."""
    from torch.overrides import TorchFunctionMode

    class Mode(TorchFunctionMode):
        def __torch_function__(
            self, func: Any, types: Any, args: Any = (), kwargs: Any = None
        ) -> Any:
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            name = getattr(func, "__name__", "")
            if name in _FUNCTIONALS:
                try:
                    first = next((a for a in args if isinstance(a, torch.Tensor)), None)
                    res = out[0] if isinstance(out, tuple | list) else out
                    calls.append(
                        {
                            "name": name,
                            "settings": _settings(torch, name, tuple(args), kwargs),
                            "stack": tuple(stack),
                            "after": post_order[-1] if post_order else None,
                            "next": len(pre_order),
                            "in_shape": () if first is None else tuple(first.shape),
                            "out_shape": tuple(getattr(res, "shape", ())),
                        }
                    )
                except Exception:  # a call we cannot read is simply not noted
                    pass
            return out

    return Mode()


def _t2n(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def _first_float_tensor(torch: Any, out: Any) -> tuple[Any, Callable[[Any], Any]]:
    """The first float tensor in ``out`` and a function that puts a replacement there."""
    if isinstance(out, torch.Tensor):
        return (out, lambda r: r) if out.is_floating_point() else (None, lambda r: out)
    if isinstance(out, tuple | list):
        for i, v in enumerate(out):
            t, put = _first_float_tensor(torch, v)
            if t is not None:

                def put_here(r: Any, i: int = i, put: Any = put) -> Any:
                    seq = list(out)
                    seq[i] = put(r)
                    return type(out)(seq) if not hasattr(out, "_fields") else type(out)(*seq)

                return t, put_here
    return None, lambda r: out


def float_tensors(torch: Any, tree: Any) -> list[Any]:
    if isinstance(tree, torch.Tensor):
        return [tree] if tree.is_floating_point() else []
    if isinstance(tree, tuple | list):
        return [t for v in tree for t in float_tensors(torch, v)]
    if isinstance(tree, dict):
        return [t for v in tree.values() for t in float_tensors(torch, v)]
    return []


def capture_torch(
    torch: Any,
    module: Any,
    inputs: list[np.ndarray],
    names: list[str],
    *,
    train: bool,
    dtype: Any,
    cotangents: Callable[[list[np.ndarray]], list[np.ndarray]] | None,
    loss: Callable[[Any], Any] | None,
) -> TorchCapture:
    """Runs a deep copy of ``module`` forward and backward with every layer in ``names`` hooked.

    ``cotangents`` maps the float outputs (NumPy) to their cotangents; ``loss`` (used when
    given) maps the output to a scalar tensor. The user's module is not touched.
    """
    m = copy.deepcopy(module).to(dtype)
    m.train(train)
    values: dict[str, np.ndarray] = {}
    ins: dict[str, list[np.ndarray]] = {}
    grads: dict[str, np.ndarray] = {}
    pre_order: list[str] = []
    post_order: list[str] = []
    counts: dict[str, int] = {}
    handles = []

    def pre(name: str) -> Callable[..., None]:
        def hook(_: Any, args: Any, kwargs: Any) -> None:
            k = counts.get(name, 0)
            key = name if k == 0 else f"{name}#{k}"
            pre_order.append(key)
            ins[key] = [_t2n(t) for t in float_tensors(torch, (args, kwargs))]

        return hook

    def post(name: str) -> Callable[..., Any]:
        def hook(_: Any, args: Any, kwargs: Any, out: Any) -> Any:
            k = counts.get(name, 0)
            counts[name] = k + 1
            key = name if k == 0 else f"{name}#{k}"
            post_order.append(key)
            t, put = _first_float_tensor(torch, out)
            if t is None:
                return None
            values[key] = _t2n(t)
            if t.requires_grad:
                t.register_hook(lambda g, key=key: grads.__setitem__(key, _t2n(g)))
                # a fresh tensor downstream, so in-place ops after the layer (ReLU(inplace))
                # leave the recorded output and its gradient hook alone
                return put(t.clone())
            return None

        return hook

    for name in names:
        sub = m.get_submodule(name)
        handles.append(sub.register_forward_pre_hook(pre(name), with_kwargs=True))
        handles.append(sub.register_forward_hook(post(name), with_kwargs=True))
    # the enclosing-module stack and the functional calls made inside it (forward only)
    stack: list[str] = []
    calls: list[dict[str, Any]] = []

    def push(name: str) -> Callable[..., None]:
        return lambda *_: stack.append(name)

    def pop(*_: Any) -> None:
        if stack:
            stack.pop()

    for name, sub in m.named_modules():
        handles.append(sub.register_forward_pre_hook(push(name)))
        handles.append(sub.register_forward_hook(pop))
    xs = [
        torch.tensor(x, dtype=dtype, requires_grad=True)
        if is_float_dtype(x.dtype)
        else torch.tensor(x)
        for x in inputs
    ]
    mode = _functional_mode(torch, calls, stack, pre_order, post_order)
    try:
        with mode:
            out = m(*xs)
        outs = float_tensors(torch, out)
        if loss is not None:
            total = loss(out)
        else:
            assert cotangents is not None
            cots = cotangents([_t2n(o) for o in outs])
            total = sum(
                (
                    (o * torch.tensor(c, dtype=o.dtype)).sum()
                    for o, c in zip(outs, cots, strict=True)
                )
            )
        if hasattr(total, "backward") and getattr(total, "requires_grad", False):
            total.backward()
    finally:
        for h in handles:
            h.remove()
    return TorchCapture(
        outputs=[_t2n(o) for o in outs],
        values=values,
        inputs=ins,
        grads=grads,
        input_grads=[None if getattr(x, "grad", None) is None else _t2n(x.grad) for x in xs],
        param_grads={n: _t2n(p.grad) for n, p in m.named_parameters() if p.grad is not None},
        buffers={
            n: _t2n(b)
            for n, b in m.named_buffers()
            if b.is_floating_point() and ("running_mean" in n or "running_var" in n)
        },
        pre_order=pre_order,
        post_order=post_order,
        functional=[
            FunctionalCall(
                c["name"],
                c["settings"],
                c["stack"],
                c["after"],
                pre_order[c["next"]] if c["next"] < len(pre_order) else None,
                c["in_shape"],
                c["out_shape"],
            )
            for c in calls
        ],
    )
