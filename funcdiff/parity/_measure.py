"""One side of a parity check: run a function and its derivatives in JAX or in PyTorch.

Both sides get the same inputs, the same seeded cotangent and tangent, and report a
:class:`Measurement`: the output pytree's structure and leaves, the gradient (or VJP) w.r.t.
every float leaf of every argument, the JVP of every float output, and, for scalar outputs, a
Hessian-vector product. Everything is NumPy on the way out, so :mod:`._compare` (and the golden
file) never see a framework object.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from funcdiff._config import ONE_SHOT_COMPILER_OPTIONS, QUICK_RUN_COMPILER_OPTIONS, OneShotJit
from funcdiff._validation import (
    TRACER_ERRORS,
    UserFunctionError,
    check_seed,
    is_float_dtype,
    is_prng_key,
)
from funcdiff.parity._convert import _numpy_to_tensor, _tensor_to_numpy, to_numpy_tree
from funcdiff.parity._torch import require_torch

__all__ = ["Measurement", "Prepared", "flatten_output", "measure_jax", "measure_torch", "prepare"]

Leaves = list[tuple[str, np.ndarray]]


def _cannot_trace(e: BaseException) -> bool:
    """A function that does not trace (under jit) but may run eagerly: retry without jit."""
    if isinstance(e, UserFunctionError):
        e = e.original if e.original is not None else e
    return isinstance(e, TRACER_ERRORS)


@dataclasses.dataclass(frozen=True)
class Prepared:
    """Inputs shared by both sides: NumPy leaves, their tree, and the seeded directions."""

    leaves: tuple[np.ndarray, ...]
    paths: tuple[str, ...]
    treedef: Any
    float_idx: tuple[int, ...]
    tangents: tuple[np.ndarray, ...]
    rng: np.random.Generator
    x64: bool
    dtype: str


@dataclasses.dataclass(frozen=True)
class Measurement:
    """What one framework computed, as NumPy arrays keyed by readable pytree paths."""

    structure: Any
    outputs: Leaves
    grads: Leaves | None = None
    jvp: Leaves | None = None
    hvp: Leaves | None = None
    notes: tuple[str, ...] = ()
    hvp_atol: float = 0.0  # error bound of a finite-difference HVP, added to its rows' atol


def _seed_rng(key: Any) -> np.random.Generator:
    if key is None:
        return np.random.default_rng(0)
    if isinstance(key, int | np.integer) and not isinstance(key, bool):
        # the seeds jax.random.key accepts; a negative one as its 64-bit two's complement
        seed = check_seed("key", key)
        return np.random.default_rng(seed if seed >= 0 else seed % 2**64)
    if is_prng_key(key):
        data = np.asarray(jax.random.key_data(key)).ravel()
    elif hasattr(key, "dtype") and np.asarray(key).dtype == np.uint32:
        data = np.asarray(key).ravel()
    else:
        raise TypeError(
            "Expected `key` to be a jax.random.key(...) (or an int seed), "
            f"got {type(key).__name__}."
        )
    return np.random.default_rng([int(v) for v in data])


def _arg_path(path: tuple[Any, ...]) -> str:
    return "args" + jax.tree_util.keystr(path)


def prepare(args: tuple[Any, ...], key: Any) -> Prepared:
    """Validates ``args`` and draws the seeded tangents (the cotangents come later).

    Raises:
      TypeError: a leaf is not a NumPy/JAX array (message names its path) or is complex.
    """
    tree = to_numpy_tree(args, name="args")
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
    paths = tuple(_arg_path(p) for p, _ in flat)
    leaves = tuple(a for _, a in flat)
    for p, a in zip(paths, leaves, strict=True):
        if a.dtype.kind == "c":
            raise TypeError(f"Expected real arrays in `args`, got {a.dtype} at {p}.")
        if not (is_float_dtype(a.dtype) or a.dtype.kind in "biu"):
            raise TypeError(f"Expected numeric arrays in `args`, got dtype {a.dtype} at {p}.")
    float_idx = tuple(i for i, a in enumerate(leaves) if is_float_dtype(a.dtype))
    float_dtypes = [leaves[i].dtype for i in float_idx]
    x64 = any(d == np.float64 for d in float_dtypes)
    # the least precise float dtype sets the precision of the whole call
    eps = lambda d: float(jnp.finfo(d).eps)  # jnp: NumPy's finfo does not know bfloat16
    dtype = str(max(float_dtypes, key=eps)) if float_dtypes else "int"
    rng = _seed_rng(key)
    tangents = tuple(
        rng.standard_normal(leaves[i].shape).astype(leaves[i].dtype) for i in float_idx
    )
    return Prepared(leaves, paths, treedef, float_idx, tangents, rng, x64, dtype)


# ---- output pytrees: sequences of either kind compare equal; dicts by key -------------------


def flatten_output(tree: Any, path: str = "out") -> tuple[Any, list[tuple[str, Any]]]:
    """Flattens an output pytree into (structure, [(path, leaf)]).

    Tuples, lists, NamedTuples and torch's ``return_types`` are all sequences (a JAX
    ``SlogdetResult`` matches torch's ``slogdet`` tuple); mappings are compared by key.
    """
    if tree is None:
        return None, []
    if isinstance(tree, Mapping):
        keys = sorted(tree, key=repr)
        struct, leaves = [], []
        for k in keys:
            s, sub = flatten_output(tree[k], f"{path}[{k!r}]")
            struct.append((repr(k), s))
            leaves.extend(sub)
        return ("dict", tuple(struct)), leaves
    if isinstance(tree, tuple | list):
        structs, leaves = [], []
        for i, child in enumerate(tree):
            s, sub = flatten_output(child, f"{path}[{i}]")
            structs.append(s)
            leaves.extend(sub)
        return ("seq", tuple(structs)), leaves
    return "*", [(path, tree)]


def describe_mismatch(a: Any, b: Any, path: str = "out") -> str:
    """Explains where two output structures (from :func:`flatten_output`) first differ."""

    def kind(s: Any) -> str:
        if s is None:
            return "None"
        if s == "*":
            return "an array"
        if s[0] == "seq":
            return f"a sequence of {len(s[1])}"
        return f"a dict with keys {[k for k, _ in s[1]]}"

    if a == b:
        return ""
    if a is None or b is None or a == "*" or b == "*" or a[0] != b[0] or len(a[1]) != len(b[1]):
        return f"at {path}: JAX returns {kind(a)}, PyTorch returns {kind(b)}"
    if a[0] == "dict" and [k for k, _ in a[1]] != [k for k, _ in b[1]]:
        return f"at {path}: JAX returns {kind(a)}, PyTorch returns {kind(b)}"
    for i, (ca, cb) in enumerate(zip(a[1], b[1], strict=True)):
        if a[0] == "dict":
            sub = f"{path}[{ca[0]}]"
            ca, cb = ca[1], cb[1]
        else:
            sub = f"{path}[{i}]"
        if ca != cb:
            return describe_mismatch(ca, cb, sub)
    return f"at {path}"  # pragma: no cover


def draw_cotangents(
    prep: Prepared, shapes: Sequence[tuple[tuple[int, ...], np.dtype]], scalar: bool
) -> list[np.ndarray]:
    """The seeded cotangents for the float outputs (1.0 for a scalar output)."""
    if scalar:
        return [np.ones((), shapes[0][1])]
    return [prep.rng.standard_normal(s).astype(d) for s, d in shapes]


# ---- JAX ------------------------------------------------------------------------------------


def _float_leaves(out: Any) -> list[Any]:
    return [jnp.asarray(x) for _, x in flatten_output(out)[1] if is_float_dtype(jnp.result_type(x))]


def jax_output(fn: Callable[..., Any], prep: Prepared, jargs: list[Any]) -> tuple[Any, bool]:
    """The output of ``fn`` by tracing (shapes only; falls back to running it) and whether
    it traced."""
    floats = [jargs[i] for i in prep.float_idx]
    call = _jax_caller(fn, prep, jargs)
    try:
        return jax.eval_shape(call, *floats), True
    except Exception as e:
        if not _cannot_trace(e):
            raise
        return call(*floats), False


def jax_output_spec(
    fn: Callable[..., Any], prep: Prepared, jargs: list[Any]
) -> tuple[Any, list[tuple[str, Any]], bool]:
    """Output structure and leaf specs of ``fn`` by tracing (falls back to running it)."""
    out, traced = jax_output(fn, prep, jargs)
    struct, leaves = flatten_output(out)
    return struct, leaves, traced


def _jax_caller(fn: Callable[..., Any], prep: Prepared, jargs: list[Any]) -> Callable[..., Any]:
    def call(*floats: Any) -> Any:
        leaves = list(jargs)
        for i, x in zip(prep.float_idx, floats, strict=True):
            leaves[i] = x
        return fn(*jax.tree_util.tree_unflatten(prep.treedef, leaves))

    return call


def jax_args(prep: Prepared) -> list[Any]:
    """The arguments as JAX arrays (call inside the scoped config of the comparison)."""
    out = []
    for a in prep.leaves:
        if not prep.x64 and a.dtype.itemsize == 8 and a.dtype.kind in "iu":
            narrow = a.astype(np.int32 if a.dtype.kind == "i" else np.uint32)
            if not np.array_equal(narrow, a):
                raise ValueError(
                    "Expected 64-bit integer `args` to fit in 32 bits when no argument is "
                    "float64 (JAX's x64 mode stays off); pass float64 arguments or smaller ints."
                )
            a = narrow
        out.append(jax.device_put(a))  # a transfer; jnp.asarray compiles a copy per shape
    return out


#: Inputs up to this many float elements (all arguments together) compile with LLVM at -O0
#: as well (:data:`funcdiff._config.QUICK_RUN_COMPILER_OPTIONS`): the program of one parity
#: check runs once, and for small inputs its run is tiny next to its compile.
QUICK_RUN_MAX_ELEMENTS = 4096


def _compiler_options(prep: Prepared) -> dict[str, Any] | None:
    """The CPU one-shot XLA options for the program of one check (see :mod:`funcdiff._config`)."""
    size = sum(prep.leaves[i].size for i in prep.float_idx)
    return (
        QUICK_RUN_COMPILER_OPTIONS if size <= QUICK_RUN_MAX_ELEMENTS else ONE_SHOT_COMPILER_OPTIONS
    )


def measure_jax(
    fn: Callable[..., Any],
    prep: Prepared,
    jargs: list[Any],
    cots: list[np.ndarray] | None,
    scalar: bool,
    *,
    jit: bool = True,
) -> Measurement:
    """Runs ``fn``, its VJP along ``cots``, its JVP along the tangents and (scalar) its HVP."""
    call = _jax_caller(fn, prep, jargs)
    floats = [jargs[i] for i in prep.float_idx]
    tans = [jax.device_put(t) for t in prep.tangents]
    derivs = bool(floats) and cots is not None

    def core(floats: list[Any], cots: list[Any], tans: list[Any]) -> Any:
        if not derivs:
            return call(*floats), None, None, None

        def with_out(*f: Any) -> tuple[list[Any], Any]:
            out = call(*f)
            return _float_leaves(out), out

        # one trace of the function for its output, its linearisation (the JVP) and the
        # transpose of that (the VJP); custom_jvp rules apply as in jax.jvp and jax.vjp
        _, f_jvp, out = jax.linearize(with_out, *floats, has_aux=True)
        jv = f_jvp(*tans)
        grads = jax.linear_transpose(f_jvp, *floats)(list(cots))
        hv = None
        if scalar:  # forward over reverse
            gfn = jax.grad(lambda *f: with_out(*f)[0][0], argnums=tuple(range(len(floats))))
            _, hv = jax.jvp(gfn, tuple(floats), tuple(tans))
        return out, grads, jv, hv

    cot_arrays = [jax.device_put(c) for c in cots] if cots is not None else []
    result = None
    if jit:
        try:
            result = OneShotJit(core, _compiler_options(prep))(floats, cot_arrays, tans)
        except Exception as e:
            if not _cannot_trace(e):
                raise
            result = None
    if result is None:
        result = core(floats, cot_arrays, tans)
    out, grads, jv, hv = result
    struct, leaves = flatten_output(out)
    outputs = [(p, np.asarray(x)) for p, x in leaves]
    fpaths = [p for p, x in outputs if is_float_dtype(x.dtype)]
    fargs = [prep.paths[i] for i in prep.float_idx]
    pair = lambda ps, xs: (
        None if xs is None else [(p, np.asarray(x)) for p, x in zip(ps, xs, strict=True)]
    )
    return Measurement(struct, outputs, pair(fargs, grads), pair(fpaths, jv), pair(fargs, hv))


# ---- PyTorch --------------------------------------------------------------------------------


@contextlib.contextmanager
def torch_precision(torch: Any, *, float64: bool) -> Iterator[None]:
    """Full-precision float32 matmuls and convolutions (no TF32/bf16 shortcuts) and, for
    float64 runs, float64 as torch's default dtype; everything restored afterwards."""
    saved_matmul = torch.get_float32_matmul_precision()
    conv = getattr(getattr(torch.backends.cudnn, "conv", None), "fp32_precision", None)
    saved_conv = conv if conv is not None else torch.backends.cudnn.allow_tf32
    saved_dtype = torch.get_default_dtype()
    try:
        torch.set_float32_matmul_precision("highest")
        if conv is not None:  # torch >= 2.9 API; mixing in the legacy flags is an error there
            torch.backends.cudnn.conv.fp32_precision = "ieee"
        else:  # pragma: no cover - older torch
            torch.backends.cudnn.allow_tf32 = False
        if float64:
            torch.set_default_dtype(torch.float64)
        yield
    finally:
        torch.set_float32_matmul_precision(saved_matmul)
        if conv is not None:
            torch.backends.cudnn.conv.fp32_precision = saved_conv
        else:  # pragma: no cover
            torch.backends.cudnn.allow_tf32 = saved_conv
        torch.set_default_dtype(saved_dtype)


def torch_leaf_problem(x: Any, path: str) -> str | None:
    """Why ``x`` (at ``path``) cannot be a leaf of a PyTorch twin's output (None when it can).

    Tensors are; Python and NumPy integers and booleans are too (they carry no derivative).
    A NumPy float array or a Python float is cut off from autograd, so its derivatives could
    not be compared: refused, with the fix.
    """
    if hasattr(x, "detach") and hasattr(x, "requires_grad"):
        return None
    if isinstance(x, bool | int | np.bool_ | np.integer):
        return None
    if isinstance(x, np.ndarray) and x.dtype.kind in "biu":
        return None
    if isinstance(x, np.ndarray | np.generic):
        what = f"a NumPy {x.dtype} array"
    elif isinstance(x, float | complex):
        what = f"a Python {type(x).__name__}"
    else:
        return f"{type(x).__module__.split('.')[0]}.{type(x).__name__} at {path}"
    return (
        f"{what} at {path}: it is cut off from autograd, so its derivatives cannot be compared; "
        "return the tensor itself (drop .item(), .numpy(), float())"
    )


def _torch_leaf(x: Any, path: str) -> np.ndarray:
    problem = torch_leaf_problem(x, path)
    if problem is not None:
        raise TypeError(f"Expected the PyTorch twin to return tensors, got {problem}.")
    if hasattr(x, "detach"):
        return _tensor_to_numpy(x)
    return np.asarray(x)


def measure_torch(
    fn: Callable[..., Any],
    prep: Prepared,
    cots: list[np.ndarray] | None,
    scalar: bool,
) -> Measurement:
    """The PyTorch twin's outputs and derivatives for the same inputs and directions."""
    torch = require_torch()
    notes: list[str] = []

    def fresh(requires_grad: bool) -> tuple[list[Any], list[Any]]:
        leaves = [_numpy_to_tensor(a, None) for a in prep.leaves]
        floats = [leaves[i].requires_grad_(requires_grad) for i in prep.float_idx]
        return leaves, floats

    def call(leaves: list[Any], floats: Sequence[Any]) -> Any:
        leaves = list(leaves)
        for i, x in zip(prep.float_idx, floats, strict=True):
            leaves[i] = x
        return fn(*jax.tree_util.tree_unflatten(prep.treedef, leaves))

    def float_outs(out: Any) -> list[Any]:
        return [
            x
            for _, x in flatten_output(out)[1]
            if isinstance(x, torch.Tensor) and x.dtype.is_floating_point
        ]

    leaves, floats = fresh(True)
    out = call(leaves, floats)
    struct, flat = flatten_output(out)
    outputs = [(p, _torch_leaf(x, p)) for p, x in flat]
    if cots is None or not floats:
        return Measurement(struct, outputs, notes=tuple(notes))
    fouts = float_outs(out)
    if [tuple(o.shape) for o in fouts] != [c.shape for c in cots]:
        return Measurement(struct, outputs, notes=tuple(notes))  # the comparison explains
    fargs = [prep.paths[i] for i in prep.float_idx]
    fpaths = [p for p, x in outputs if is_float_dtype(x.dtype)]
    zeros = lambda: [np.zeros(a.shape, a.dtype) for a in (prep.leaves[i] for i in prep.float_idx)]

    def grad(outs: list[Any], inputs: list[Any], gouts: list[Any], create: bool) -> list[Any]:
        pairs = [(o, g) for o, g in zip(outs, gouts, strict=True) if o.requires_grad]
        if not pairs:
            return [None] * len(inputs)
        return list(
            torch.autograd.grad(
                [o for o, _ in pairs],
                inputs,
                [g for _, g in pairs],
                allow_unused=True,
                create_graph=create,
            )
        )

    tcots = [_numpy_to_tensor(c, None).to(o.dtype) for c, o in zip(cots, fouts, strict=True)]
    g = grad(fouts, floats, tcots, scalar)
    grads = [z if x is None else _tensor_to_numpy(x) for x, z in zip(g, zeros(), strict=True)]
    tans = [_numpy_to_tensor(t, None) for t in prep.tangents]
    hvp, hvp_atol = None, 0.0
    if scalar:
        h, hvp_atol = _torch_hvp(torch, grad, g, floats, tans, prep, call, float_outs, notes)
        if h is not None:
            hvp = [z if x is None else x for x, z in zip(h, zeros(), strict=True)]
    jvp = _torch_jvp(torch, call, fresh, float_outs, tans, notes)
    jvp_leaves = None if jvp is None else list(zip(fpaths, jvp, strict=True))
    return Measurement(
        struct,
        outputs,
        list(zip(fargs, grads, strict=True)),
        jvp_leaves,
        None if hvp is None else list(zip(fargs, hvp, strict=True)),
        tuple(notes),
        hvp_atol,
    )


def _torch_jvp(
    torch: Any,
    call: Callable[..., Any],
    fresh: Callable[..., Any],
    float_outs: Callable[[Any], list[Any]],
    tans: list[Any],
    notes: list[str],
) -> list[np.ndarray] | None:
    """Forward mode with ``torch.func.jvp``; the double-backward trick where it is missing."""
    leaves, floats = fresh(False)
    try:
        _, jv = torch.func.jvp(
            lambda *f: tuple(float_outs(call(leaves, f))), tuple(floats), tuple(tans)
        )
        return [_tensor_to_numpy(x) for x in jv]
    except Exception as e:
        first = _torch_ad_failure(e)
    leaves, floats = fresh(True)
    try:
        outs = float_outs(call(leaves, floats))
        us = [torch.zeros_like(o, requires_grad=True) for o in outs]
        live = [(o, u) for o, u in zip(outs, us, strict=True) if o.requires_grad]
        if not live:
            return [np.zeros(tuple(o.shape), _tensor_to_numpy(o).dtype) for o in outs]
        g = torch.autograd.grad(
            [o for o, _ in live], floats, [u for _, u in live], allow_unused=True, create_graph=True
        )
        terms = [
            (gi * t).sum()
            for gi, t in zip(g, tans, strict=True)
            if gi is not None and gi.requires_grad
        ]
        if not terms:
            return [np.zeros(tuple(o.shape), _tensor_to_numpy(o).dtype) for o in outs]
        jv = torch.autograd.grad(sum(terms), us, allow_unused=True)
        notes.append(f"torch JVP by double backward (torch.func.jvp failed: {first})")
        return [
            np.zeros(tuple(o.shape), _tensor_to_numpy(o).dtype)
            if x is None
            else _tensor_to_numpy(x)
            for o, x in zip(outs, jv, strict=True)
        ]
    except Exception as e:
        second = _torch_ad_failure(e)
        notes.append(
            f"JVP skipped: PyTorch computes no forward derivative here ({first}; {second})"
        )
        return None


def _torch_ad_failure(e: BaseException) -> str:
    """``"Type: first line"`` of an autograd failure; re-raises anything else.

    A missing derivative is a ``RuntimeError``/``NotImplementedError`` from torch, possibly
    raised inside the user's twin while a ``torch.func`` transform runs it (then it arrives
    wrapped as the user's function failing).
    """
    inner = e.original if isinstance(e, UserFunctionError) and e.original is not None else e
    if not isinstance(inner, RuntimeError | NotImplementedError):
        raise e
    lines = str(inner).strip().splitlines()
    return f"{type(inner).__name__}: {lines[0][:120] if lines else ''}"


def _torch_hvp(
    torch: Any,
    grad: Callable[..., list[Any]],
    g: list[Any],
    floats: list[Any],
    tans: list[Any],
    prep: Prepared,
    call: Callable[..., Any],
    float_outs: Callable[[Any], list[Any]],
    notes: list[str],
) -> tuple[list[np.ndarray | None] | None, float]:
    """Torch's Hessian-vector product of a scalar output along ``tans``, and an error bound.

    Double backward first; where torch has no derivative of a backward op
    (``aten::hardsigmoid_backward``, ``_cdist_backward``, ...), forward-over-reverse with
    ``torch.func``; failing that, central differences of torch's own gradient, whose error
    estimate is returned (and added to the HVP rows' ``atol``); failing that, None (skipped,
    with a note). Never raises for a missing derivative.
    """
    try:
        terms = [
            (gi * v).sum()
            for gi, v in zip(g, tans, strict=True)
            if gi is not None and gi.requires_grad
        ]
        if not terms:  # the gradient does not depend on the inputs: the HVP is 0
            return [None] * len(floats), 0.0
        h = grad([sum(terms)], floats, [torch.ones(())], False)
        return [None if x is None else _tensor_to_numpy(x) for x in h], 0.0
    except Exception as e:
        first = _torch_ad_failure(e)
    base = [_numpy_to_tensor(a, None) for a in prep.leaves]
    try:
        argnums = tuple(range(len(floats)))
        gfn = torch.func.grad(lambda *f: float_outs(call(base, f))[0], argnums=argnums)
        primals = tuple(x.detach() for x in floats)
        _, h = torch.func.jvp(gfn, primals, tuple(tans))
        notes.append(
            "torch HVP by forward-over-reverse (torch.func.jvp of torch.func.grad; "
            f"double backward failed: {first})"
        )
        return [_tensor_to_numpy(x) for x in h], 0.0
    except Exception as e:
        second = _torch_ad_failure(e)
    try:
        h, err = _fd_hvp(torch, prep, call, float_outs)
    except Exception as e:
        third = _torch_ad_failure(e)
        notes.append(
            f"HVP skipped: PyTorch computes no second derivative here ({first}; {second}; "
            f"finite differences of its gradient failed: {third})"
        )
        return None, 0.0
    notes.append(
        "torch HVP by central differences of torch's gradient (no second derivative in "
        f"torch: {first}; {second}); its error estimate {err:.3g} is added to the hvp rows' atol"
    )
    return h, err


def _fd_hvp(
    torch: Any,
    prep: Prepared,
    call: Callable[..., Any],
    float_outs: Callable[[Any], list[Any]],
) -> tuple[list[np.ndarray | None], float]:
    """Central differences of torch's gradient along the tangents, with an error estimate.

    ``D(h) = (g(x + h v) - g(x - h v)) / 2h`` at ``h = eps^(1/3) max(1, |x|) / |v|``; the
    bound is ``max|D(h) - D(2h)|`` (three times the O(h^2) truncation of ``D(h)``) plus the
    rounding of the gradient (``4 eps |g| / h``) and of the displaced point
    (``2 eps^(2/3) |D|``), all in the call's precision.
    """
    xs = [prep.leaves[i] for i in prep.float_idx]
    vs = [np.asarray(t, np.float64) for t in prep.tangents]
    eps = float(jnp.finfo(prep.dtype).eps)
    xmax = max((float(np.max(np.abs(x))) for x in xs if x.size), default=0.0)
    vmax = max((float(np.max(np.abs(v))) for v in vs if v.size), default=0.0)
    if vmax == 0 or not np.isfinite(xmax):
        return [np.zeros(x.shape, x.dtype) for x in xs], 0.0

    def gradient(points: list[np.ndarray]) -> list[np.ndarray]:
        leaves = [_numpy_to_tensor(a, None) for a in prep.leaves]
        fl = [_numpy_to_tensor(p, None).requires_grad_(True) for p in points]
        out = float_outs(call(leaves, fl))[0]
        if not out.requires_grad:
            return [np.zeros(p.shape) for p in points]
        gs = torch.autograd.grad(out, fl, allow_unused=True)
        return [
            np.zeros(p.shape) if x is None else _tensor_to_numpy(x).astype(np.float64)
            for p, x in zip(points, gs, strict=True)
        ]

    def central(h: float) -> tuple[list[np.ndarray], float]:
        plus = gradient([(x + h * v).astype(x.dtype) for x, v in zip(xs, vs, strict=True)])
        minus = gradient([(x - h * v).astype(x.dtype) for x, v in zip(xs, vs, strict=True)])
        gmax = max((float(np.max(np.abs(a))) for a in plus + minus if a.size), default=0.0)
        return [(p - m) / (2 * h) for p, m in zip(plus, minus, strict=True)], gmax

    h = eps ** (1 / 3) * max(1.0, xmax) / vmax
    d1, g1 = central(h)
    d2, g2 = central(2 * h)
    amax = lambda arrs: max((float(np.max(np.abs(a))) for a in arrs if a.size), default=0.0)
    err = (
        amax([a - b for a, b in zip(d1, d2, strict=True)])
        + 4 * eps * max(g1, g2) / h
        + 2 * eps ** (2 / 3) * amax(d1)
    )
    return [d.astype(x.dtype) for d, x in zip(d1, xs, strict=True)], err
