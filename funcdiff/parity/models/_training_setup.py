"""The pieces :func:`compare_training` is built from, each checked at the boundary.

- :func:`copy_torch`: private copies of the torch module, optimizer and scheduler, so the
  user's objects are never stepped.
- :func:`bind_jax_model`: the JAX model as a pure function of the parameters *in torch's
  layout* (one array per ``named_parameters()`` entry) and of the float buffers (BatchNorm
  running statistics; for an Equinox ``(module, state)`` pair, the ``eqx.nn.State`` leaves).
  The correspondence between torch elements and JAX leaf elements is read once, by loading
  index-coded state dicts through the model's weight loader; inside the jitted step it is one
  gather, so gradients come back in torch's layout by construction.
- :func:`named_loss`: ``"mse"`` and ``"cross_entropy"`` as torch defines them (mean).
- :func:`clip_grad_norm_like_torch`: ``torch.nn.utils.clip_grad_norm_`` as an optax
  transformation.
- :func:`optax_state_from_torch`: a torch optimizer's state written into the optax state of
  :func:`~funcdiff.parity.optax_like` (teacher forcing).
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from funcdiff.parity import _transforms as T
from funcdiff.parity.models._weights import load_torch_weights

__all__ = [
    "JaxSide",
    "TorchSide",
    "bind_jax_model",
    "clip_grad_norm_like_torch",
    "copy_torch",
    "named_loss",
    "optax_state_from_torch",
]

# ----------------------------------------------------------------------------- torch side


class TorchSide(NamedTuple):
    """Private copies of the user's torch objects and the names compare_training tracks."""

    module: Any
    optimizer: Any
    scheduler: Any
    param_names: tuple[str, ...]  # module.named_parameters() order
    buffer_names: tuple[str, ...]  # float buffers (running statistics)
    opt_index: tuple[int, ...]  # index into param_names of each optimizer param, in order
    dtype: str


def _rewrap_step(optimizer: Any) -> None:
    # An LRScheduler wraps `optimizer.step` in a closure holding a weak reference to the
    # optimizer it was built with. The copy must not keep a wrapper of the original (it
    # would step the user's optimizer) and needs one of its own (else every
    # scheduler.step() warns that the optimizer was not stepped).
    if "step" in vars(optimizer):
        del optimizer.step
    method = optimizer.step

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        optimizer._opt_called = True
        return method(*args, **kwargs)

    wrapper._wrapped_by_lr_sched = True  # type: ignore[attr-defined]
    optimizer.step = wrapper


def copy_torch(torch: Any, module: Any, optimizer: Any, scheduler: Any) -> TorchSide:
    """Validates and deep-copies the torch module, optimizer and scheduler together."""
    if not isinstance(module, torch.nn.Module):
        raise TypeError(
            f"Expected `torch_module` to be a torch.nn.Module, got {type(module).__name__}."
        )
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            "Expected `torch_optimizer` to be a torch.optim.Optimizer, got "
            f"{type(optimizer).__name__}."
        )
    named = list(module.named_parameters())
    if not named:
        raise ValueError("Expected `torch_module` to have parameters, got a module with none.")
    where = {id(p): i for i, (_, p) in enumerate(named)}
    opt_params = [p for g in optimizer.param_groups for p in g["params"]]
    strangers = [tuple(p.shape) for p in opt_params if id(p) not in where]
    if strangers:
        raise ValueError(
            f"Expected `torch_optimizer` to optimise parameters of `torch_module`, but "
            f"{len(strangers)} of its parameters (shapes {strangers[:4]}) are not the module's. "
            "Build the optimizer from torch_module.parameters()."
        )
    if scheduler is not None:
        if not isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler):
            raise TypeError(
                "Expected `scheduler` to be a torch.optim.lr_scheduler.LRScheduler or None, "
                f"got {type(scheduler).__name__}."
            )
        if scheduler.optimizer is not optimizer:
            raise ValueError(
                "Expected `scheduler` to be attached to `torch_optimizer`, but it was built for "
                "another optimizer."
            )
    dtypes = {str(p.dtype).removeprefix("torch.") for _, p in named}
    if len(dtypes) != 1 or not dtypes <= {"float32", "float64"}:
        raise TypeError(
            "Expected every parameter of `torch_module` to be float32 or all float64, got "
            f"{sorted(dtypes)}. Call torch_module.double() or .float() first."
        )
    m, o, s = copy.deepcopy((module, optimizer, scheduler))
    if s is not None:
        _rewrap_step(o)
    buffers = tuple(
        n for n, b in m.named_buffers() if b.is_floating_point() and "num_batches" not in n
    )
    return TorchSide(
        module=m,
        optimizer=o,
        scheduler=s,
        param_names=tuple(n for n, _ in named),
        buffer_names=buffers,
        opt_index=tuple(where[id(p)] for p in opt_params),
        dtype=dtypes.pop(),
    )


# ----------------------------------------------------------------------------- JAX side


class JaxSide(NamedTuple):
    """The JAX model as ``forward(theta, buffers, x) -> (outputs, new_buffers)``.

    ``theta`` and ``buffers`` are tuples of arrays in torch's layout and order
    (:attr:`TorchSide.param_names`, :attr:`TorchSide.buffer_names`).
    """

    framework: str
    forward: Callable[[tuple[Any, ...], tuple[Any, ...], Any], tuple[Any, tuple[Any, ...]]]
    notes: tuple[str, ...]


def _framework(jax_model: Any) -> str:
    mro = [c.__module__ for c in type(jax_model).__mro__]
    if isinstance(jax_model, tuple) and len(jax_model) == 2 and callable(jax_model[0]):
        if type(jax_model[1]).__module__.startswith("equinox"):
            import equinox as eqx

            if not (
                isinstance(jax_model[0], eqx.Module) and isinstance(jax_model[1], eqx.nn.State)
            ):
                raise TypeError(
                    "Expected `jax_model` as an Equinox pair to be (module, state) from "
                    f"eqx.nn.make_with_state, got ({type(jax_model[0]).__name__}, "
                    f"{type(jax_model[1]).__name__})."
                )
            return "equinox-state"
        return "function"
    if any(m.startswith("flax.nnx") for m in mro):
        return "nnx"
    if any(m.startswith("equinox") for m in mro):
        return "equinox"
    raise TypeError(
        "Expected `jax_model` to be a flax.nnx.Module, an equinox.Module, or a pair "
        f"(apply_fn, params), got {type(jax_model).__name__}."
    )


def _key_str(k: Any) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def _dotted(path: tuple[Any, ...]) -> str:
    return ".".join(_key_str(k) for k in path)


def _loader(framework: str, jax_model: Any, torch: Any) -> tuple[Callable[[dict], list], Any]:
    """``load(state_dict of numpy arrays) -> float leaves`` and the model's rebuild data."""

    def loaded(model: Any, sd: dict[str, np.ndarray]) -> Any:
        tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}
        return load_torch_weights(model, tensors).model

    if framework == "function":
        apply_fn, params = jax_model
        flat, treedef = jax.tree_util.tree_flatten_with_path(params)
        names = [_dotted(p) for p, _ in flat]

        def own(sd: dict[str, np.ndarray]) -> list[Any] | None:
            if all(
                n in sd and np.shape(sd[n]) == np.shape(x)
                for n, (_, x) in zip(names, flat, strict=True)
            ):
                return [sd[n] for n in names]
            return None

        def load(sd: dict[str, np.ndarray]) -> list[Any]:
            got = own(sd)
            if got is not None:
                return got
            return jax.tree_util.tree_leaves(loaded(params, sd))

        return load, (apply_fn, treedef)
    if framework == "nnx":
        from flax import nnx

        def load(sd: dict[str, np.ndarray]) -> list[Any]:
            m = loaded(nnx.clone(jax_model), sd)
            return jax.tree_util.tree_leaves(nnx.split(m)[1])

        return load, None
    import equinox as eqx

    if framework == "equinox-state":

        def load(sd: dict[str, np.ndarray]) -> list[Any]:
            m, state = loaded(jax_model, sd)
            params = jax.tree_util.tree_leaves(eqx.filter(m, eqx.is_inexact_array))
            return [*params, *jax.tree_util.tree_leaves(state)]

        return load, None

    def load(sd: dict[str, np.ndarray]) -> list[Any]:  # type: ignore[no-redef]
        m = loaded(jax_model, sd)
        return jax.tree_util.tree_leaves(eqx.filter(m, eqx.is_inexact_array))

    return load, None


def _gather_plan(
    load: Callable[[dict[str, np.ndarray]], list[Any]],
    names: Sequence[str],
    shapes: Sequence[tuple[int, ...]],
    dtype: str,
) -> list[np.ndarray | None]:
    """For every JAX leaf, the indices into the concatenated torch vector (None: not mapped)."""
    sizes = [int(np.prod(s)) for s in shapes]
    total = int(sum(sizes))
    ids = np.arange(total)
    base = 2048  # both halves exact in float32 up to 2**35 elements

    def as_sd(vec: np.ndarray) -> dict[str, np.ndarray]:
        parts = np.split(vec.astype(dtype), np.cumsum(sizes)[:-1])
        return {n: p.reshape(s) for n, p, s in zip(names, parts, shapes, strict=True)}

    rand = np.random.default_rng(0).uniform(1.0, 2.0, total)
    low, high, probe = (load(as_sd(v)) for v in (ids % base, ids // base, rand))
    plan: list[np.ndarray | None] = []
    for lo, hi, pr in zip(low, high, probe, strict=True):
        lo_a, hi_a, pr_a = np.asarray(lo), np.asarray(hi), np.asarray(pr)
        if not np.issubdtype(lo_a.dtype, np.floating):
            plan.append(None)
            continue
        idx = np.rint(hi_a.astype(np.float64) * base + lo_a.astype(np.float64)).astype(np.int64)
        ok = (
            idx.size > 0
            and idx.min() >= 0
            and idx.max() < total
            and np.array_equal(rand[idx].astype(pr_a.dtype), pr_a)
        )
        if not ok:
            plan.append(None)
            continue
        plan.append(idx)
    return plan


def _wants_train(apply_fn: Callable[..., Any]) -> bool:
    try:
        return "train" in inspect.signature(apply_fn).parameters
    except (TypeError, ValueError):
        return False


def _state_leaf(x: Any, dtype: str) -> Any:
    """An Equinox state leaf rebuilt under the run's x64 setting (float leaves in ``dtype``)."""
    if not isinstance(x, jax.Array | np.ndarray):
        return x
    if jnp.issubdtype(x.dtype, jnp.inexact):
        return jnp.asarray(x, dtype)
    if getattr(x, "weak_type", False) and np.ndim(x) == 0:
        return jnp.asarray(np.asarray(x).item())  # a Python scalar keeps the weak type
    return jnp.asarray(x, jax.dtypes.canonicalize_dtype(x.dtype))


def bind_jax_model(jax_model: Any, side: TorchSide, *, train: bool, torch: Any) -> JaxSide:
    """The JAX model as a function of torch-layout parameters and buffers (see JaxSide)."""
    framework = _framework(jax_model)
    sd = side.module.state_dict()
    names = [*side.param_names, *side.buffer_names]
    shapes = [tuple(sd[n].shape) for n in names]
    notes: list[str] = []
    if framework == "nnx":
        from flax import nnx

        model = nnx.clone(jax_model)
        model.train() if train else model.eval()
        graphdef, state = nnx.split(model)
        template, treedef = jax.tree_util.tree_flatten(state)
        rebuild = lambda leaves: nnx.merge(graphdef, jax.tree_util.tree_unflatten(treedef, leaves))
        load, _ = _loader(framework, model, torch)
    elif framework == "equinox":
        import equinox as eqx

        # any StateIndex field (BatchNorm statistics) needs the eqx.nn.State beside the module
        if any(
            isinstance(x, eqx.nn.StateIndex)
            for x in jax.tree_util.tree_leaves(
                jax_model, is_leaf=lambda x: isinstance(x, eqx.nn.StateIndex)
            )
        ):
            raise TypeError(
                "Expected `jax_model` with state (BatchNorm running statistics, held at "
                "eqx.nn.StateIndex fields) to be the (module, state) pair from "
                "eqx.nn.make_with_state, got the module alone."
            )
        model = eqx.nn.inference_mode(jax_model, value=not train)
        params, static = eqx.partition(model, eqx.is_inexact_array)
        template, treedef = jax.tree_util.tree_flatten(params)
        rebuild = lambda leaves: eqx.combine(jax.tree_util.tree_unflatten(treedef, leaves), static)
        load, _ = _loader(framework, model, torch)
    elif framework == "equinox-state":
        import equinox as eqx

        module, state0 = jax_model
        # the statistics in torch's dtype, as compare_model does, and every other leaf (the
        # batch counter) in this run's integer width: eqx.nn.State.set, which loads them,
        # refuses a new dtype or weak type
        state0 = jax.tree_util.tree_map(lambda x: _state_leaf(x, side.dtype), state0)
        model = eqx.nn.inference_mode(module, value=not train)
        params, static = eqx.partition(model, eqx.is_inexact_array)
        p_leaves, p_def = jax.tree_util.tree_flatten(params)
        s_leaves, s_def = jax.tree_util.tree_flatten(state0)
        n_p = len(p_leaves)
        template = [*p_leaves, *s_leaves]

        def rebuild_pair(leaves: list[Any]) -> tuple[Any, Any]:
            m = eqx.combine(jax.tree_util.tree_unflatten(p_def, leaves[:n_p]), static)
            return m, jax.tree_util.tree_unflatten(s_def, leaves[n_p:])

        load, _ = _loader(framework, (model, state0), torch)
    else:
        apply_fn, params = jax_model
        template, treedef = jax.tree_util.tree_flatten(params)
        load, _ = _loader(framework, jax_model, torch)
        pass_train = _wants_train(apply_fn)
    try:
        plan = _gather_plan(load, names, shapes, side.dtype)
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(
            f"Could not load the weights of `torch_module` into `jax_model`: {e}"
        ) from None
    if len(plan) != len(template):
        raise ValueError(
            f"Expected `jax_model` to have {len(plan)} array leaves after loading the torch "
            f"weights, got {len(template)}."
        )
    n_theta = sum(int(np.prod(s)) for s in shapes[: len(side.param_names)])
    leaf_dtypes = [getattr(t, "dtype", None) for t in template]
    mixed = {str(d) for d, p in zip(leaf_dtypes, plan, strict=True) if p is not None} - {side.dtype}
    if mixed:
        notes.append(
            f"JAX leaves in {sorted(mixed)} while torch runs in {side.dtype}: the port computes "
            "in another precision"
        )
    # Inverse map for buffers: for each torch buffer element, one JAX leaf element holding it.
    inverse: list[tuple[int, np.ndarray, np.ndarray]] = []  # (leaf, positions, buffer offsets)
    for j, idx in enumerate(plan):
        if idx is None:
            continue
        flat = idx.ravel()
        sel = np.flatnonzero(flat >= n_theta)
        if sel.size:
            inverse.append((j, sel, flat[sel] - n_theta))
    buf_sizes = [int(np.prod(s)) for s in shapes[len(side.param_names) :]]
    buf_shapes = shapes[len(side.param_names) :]
    consts = list(template)

    def leaves_from(theta: tuple[Any, ...], buffers: tuple[Any, ...]) -> list[Any]:
        vec = jnp.concatenate([jnp.ravel(a) for a in (*theta, *buffers)])
        return [
            c if idx is None else vec[idx].astype(c.dtype)
            for c, idx in zip(consts, plan, strict=True)
        ]

    def buffers_from(leaves: list[Any], old: tuple[Any, ...]) -> tuple[Any, ...]:
        if not buf_sizes:
            return ()
        vec = jnp.concatenate([jnp.ravel(b) for b in old])
        for j, pos, off in inverse:
            vec = vec.at[off].set(jnp.ravel(leaves[j])[pos].astype(vec.dtype))
        parts = jnp.split(vec, np.cumsum(buf_sizes)[:-1])
        return tuple(p.reshape(s) for p, s in zip(parts, buf_shapes, strict=True))

    if framework == "function":

        def forward(theta: tuple, buffers: tuple, x: Any) -> tuple[Any, tuple]:
            tree = jax.tree_util.tree_unflatten(treedef, leaves_from(theta, buffers))
            out = apply_fn(tree, x, train=train) if pass_train else apply_fn(tree, x)
            if (
                isinstance(out, tuple)
                and len(out) == 2
                and str(treedef) == str(jax.tree_util.tree_structure(out[1]))
            ):
                return out[0], buffers_from(jax.tree_util.tree_leaves(out[1]), buffers)
            return out, buffers

    elif framework == "nnx":
        from flax import nnx

        def forward(theta: tuple, buffers: tuple, x: Any) -> tuple[Any, tuple]:
            m = rebuild(leaves_from(theta, buffers))
            out = m(x)
            return out, buffers_from(jax.tree_util.tree_leaves(nnx.split(m)[1]), buffers)

    elif framework == "equinox-state":

        def forward(theta: tuple, buffers: tuple, x: Any) -> tuple[Any, tuple]:
            m, state = rebuild_pair(leaves_from(theta, buffers))
            got = m(x, state)
            if not (isinstance(got, tuple) and len(got) == 2):
                raise TypeError(
                    "Expected `jax_model` as (module, state) to be called as module(x, state) "
                    f"-> (outputs, new_state), got a {type(got).__name__}."
                )
            out, new_state = got
            if not isinstance(new_state, eqx.nn.State):
                raise TypeError(
                    "Expected `jax_model` as (module, state) to return (outputs, new_state) "
                    f"with an eqx.nn.State, got ({type(out).__name__}, "
                    f"{type(new_state).__name__})."
                )
            new_leaves = jax.tree_util.tree_leaves(new_state)
            return out, buffers_from([*[None] * n_p, *new_leaves], buffers)

    else:

        def forward(theta: tuple, buffers: tuple, x: Any) -> tuple[Any, tuple]:
            return rebuild(leaves_from(theta, buffers))(x), buffers

    return JaxSide(framework.removesuffix("-state"), forward, tuple(notes))


# ----------------------------------------------------------------------------- losses


def named_loss(name: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """``(jax_loss, torch_loss)`` for ``"mse"`` or ``"cross_entropy"`` (torch, mean)."""
    if name == "mse":
        return (lambda out, y: jnp.mean((out - y) ** 2)), _torch_mse
    if name == "cross_entropy":
        return _jax_cross_entropy, _torch_cross_entropy
    raise ValueError(
        f"Expected `loss` to be 'mse', 'cross_entropy' or a pair (jax_loss, torch_loss), "
        f"got {name!r}."
    )


def _torch_mse(out: Any, y: Any) -> Any:
    import torch

    return torch.nn.functional.mse_loss(out, y)


def _torch_cross_entropy(out: Any, y: Any) -> Any:
    import torch

    return torch.nn.functional.cross_entropy(out, y)


def _jax_cross_entropy(logits: jax.Array, y: jax.Array) -> jax.Array:
    """torch.nn.functional.cross_entropy: class axis 1, integer labels or probabilities."""
    logp = jax.nn.log_softmax(logits, axis=1 if logits.ndim > 1 else 0)
    if jnp.issubdtype(y.dtype, jnp.integer):
        axis = 1 if logits.ndim > 1 else 0
        picked = jnp.take_along_axis(logp, jnp.expand_dims(y, axis), axis=axis)
        return -jnp.mean(picked)
    per = -jnp.sum(y * logp, axis=1 if logits.ndim > 1 else 0)
    return jnp.mean(per)


# ----------------------------------------------------------------------------- clipping


def clip_grad_norm_like_torch(max_norm: float) -> optax.GradientTransformation:
    r"""``torch.nn.utils.clip_grad_norm_(params, max_norm)`` as an optax transformation.

    .. math::
       n = \big\|(\|g_1\|_2, \dots, \|g_k\|_2)\big\|_2,\qquad
       g_i \leftarrow g_i \cdot \min\!\Big(1, \frac{\text{max\_norm}}{n + 10^{-6}}\Big).

    ``optax.clip_by_global_norm`` scales by ``max_norm / n`` and only when ``n > max_norm``:
    above the threshold the two differ by a relative ``1e-6 / n``, and torch also rescales
    (slightly) gradients whose norm lies in ``(max_norm - 1e-6, max_norm]``.

    Args:
      max_norm: the largest allowed global 2-norm.

    Returns:
      A stateless ``GradientTransformation``; chain the optimizer after it.

    Examples:
      >>> import jax.numpy as jnp
      >>> tx = clip_grad_norm_like_torch(1.0)
      >>> u, _ = tx.update([jnp.array([3.0, 4.0])], tx.init(None))
      >>> print(u[0])  # scaled by 1 / (5 + 1e-6)
      [0.5999999  0.79999983]
    """

    def update_fn(updates: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        del params
        leaves = jax.tree_util.tree_leaves(updates)
        norms = jnp.stack([jnp.linalg.norm(jnp.ravel(g)) for g in leaves])
        total = jnp.linalg.norm(norms)
        coef = jnp.minimum(max_norm / (total + 1e-6), 1.0)
        return jax.tree_util.tree_map(lambda g: g * coef.astype(g.dtype), updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


# ----------------------------------------------------------------------------- optimizer state


_KNOWN: dict[type, tuple[str, ...]] = {
    optax.TraceState: ("momentum_buffer",),
    T.TraceTorchState: ("#step", "momentum_buffer"),
    optax.ScaleByAdamState: ("#step", "exp_avg", "exp_avg_sq"),
    T.AmsgradTorchState: ("#step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
    optax.ScaleByRmsState: ("square_avg",),
    optax.ScaleByRStdDevState: ("grad_avg", "square_avg"),
    T.AdagradTorchState: ("sum",),
    optax.ScaleByScheduleState: ("#count",),
}


def optax_state_from_torch(
    state: Any, torch_state: list[dict[str, np.ndarray]], count: int
) -> tuple[Any, list[str]]:
    """Writes torch's optimizer state into an optax state of :func:`optax_like`'s shape.

    ``torch_state[i]`` is the state of the optimizer's i-th parameter (group after group).
    Known optax states (trace, Adam moments, RMS, Adagrad sums, schedule counts) are replaced;
    others are kept as they are and named in the returned notes.
    """
    notes: list[str] = []

    def fill(old: Any, key: str) -> Any:
        if key in ("#count", "#step"):
            return np.asarray(count, np.asarray(old).dtype)
        out = []
        for i, leaf in enumerate(old):
            if isinstance(leaf, optax.MaskedNode) or i >= len(torch_state):
                out.append(leaf)
                continue
            value = torch_state[i].get(key)
            out.append(leaf if value is None else np.asarray(value, leaf.dtype).reshape(leaf.shape))
        return type(old)(out)

    def visit(node: Any) -> Any:
        if type(node) in _KNOWN:
            fields = _KNOWN[type(node)]
            return type(node)(*(fill(v, k) for v, k in zip(node, fields, strict=True)))
        if isinstance(node, tuple) and hasattr(node, "_fields"):
            kids = [visit(v) for v in node]
            if any(isinstance(v, jax.Array | np.ndarray) for v in node):
                notes.append(f"optimizer state {type(node).__name__} kept on the JAX side")
            return type(node)(*kids)
        if isinstance(node, list | tuple):
            return type(node)(visit(v) for v in node)
        if isinstance(node, dict):
            return {k: visit(v) for k, v in node.items()}
        return node

    return visit(state), sorted(set(notes))
