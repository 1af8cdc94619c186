"""Property-based fuzz of the public API: bad input is refused clearly, never reported as ok.

For every public entry point, hypothesis replaces one argument (sometimes two) of a valid call
with a value from a pool of wrong types, shapes, empty arrays, NaN/inf, huge and negative
numbers, non-callables, non-jittable or failing functions and mismatched pytrees. The policy
each call must keep (README, "Errors"):

* raise ``TypeError`` or ``ValueError`` (``UserFunctionError`` and ``DivergenceError`` are
  ValueErrors) or a documented funcdiff error (``DeviceNotFoundError``, ``GoldenError``),
  whose message names one of the call's arguments in backticks; or
* return a result, and then never ``ok=True`` when NaN was put in, and never a NaN array.

Any other exception type (IndexError, KeyError, AttributeError, OverflowError, JAX's tracer
errors, ...) fails the test, and ``pytest-timeout`` turns a hang into a failure. The pools are
fixed and small and the user functions are module-level, so compiled programs are reused
across examples; ``derandomize=True`` makes every run check the same examples.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import funcdiff
from funcdiff import regression
from funcdiff.parity import GoldenError

pytestmark = pytest.mark.timeout(120)

FUZZ = settings(
    max_examples=int(__import__("os").environ.get("FUZZ_EXAMPLES", 40)),
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

X = jnp.array([0.5, 0.75])


# ------------------------------------------------------------------ user functions (fixed)


def f_ok(x):
    return jnp.sum(jnp.sin(x) * x)


def f_branchy(x):
    if jnp.sum(x) > 0:  # not jit-compatible
        return jnp.sum(x)
    return -jnp.sum(x)


def f_raises(x):
    return {}["missing"]


def f_str(x):
    return "loss"


def f_none(x):
    return None


def f_vector(x):
    return jnp.sin(x)


def f_int(x):
    return jnp.sum(x).astype(jnp.int32)


def f_nan(x):
    return jnp.sum(x) * jnp.nan


def f_numpy(x):
    return np.sum(np.asarray(x))  # TracerArrayConversionError under jit


NAN_FUNS = {"f_nan"}
FUNS: dict[str, Any] = {
    name: obj for name, obj in globals().items() if name.startswith("f_") and callable(obj)
} | {"int 3": 3, "str": "f", "None": None}

# ------------------------------------------------------------------ value pools

NAN = object()  # marks pool entries that carry NaN (an ok=True verdict on them is a bug)

ARRAYS: list[tuple[str, Any]] = [
    ("empty", jnp.zeros(0)),
    ("empty 2-d", jnp.zeros((0, 3))),
    ("nan", jnp.array([jnp.nan, 1.0])),
    ("inf", jnp.array([jnp.inf, 1.0])),
    ("huge", jnp.array([3e38, 1.0])),
    ("negative huge", jnp.array([-3e38, 1.0])),
    ("int", jnp.array([1, 2])),
    ("bool", jnp.array([True, False])),
    ("complex", jnp.array([1 + 1j, 2.0])),
    ("string array", np.array(["a", "b"])),
    ("object array", np.array([object(), 1], dtype=object)),
    ("matrix", jnp.ones((2, 2))),
    ("scalar", jnp.float32(0.5)),
    ("long", jnp.linspace(0.1, 1.0, 5)),
    ("dict", {"a": X}),
    ("mismatched tuple", (X, "s")),
    ("empty dict", {}),
    ("prng key", jax.random.key(0)),
]
SCALARS: list[tuple[str, Any]] = [
    ("None", None),
    ("True", True),
    ("'no'", "no"),
    ("0", 0),
    ("-1", -1),
    ("2**70", 2**70),
    ("-2**70", -(2**70)),
    ("nan", math.nan),
    ("inf", math.inf),
    ("-inf", -math.inf),
    ("1e300", 1e300),
    ("1e-300", 1e-300),
    ("array2", np.array([1.0, 2.0])),
    ("array str", np.array(["central"])),
    ("list", [1]),
    ("object", object()),
    ("str central", "central"),
    ("10**12", 10**12),
]
POOL = ARRAYS + SCALARS + [(f"fun {k}", v) for k, v in FUNS.items()]
NAN_LABELS = {"nan", "fun f_nan"}
# inputs whose outputs may honestly be NaN/inf when a function merely computes (predict, mse,
# from_torch): NaN in, NaN out is not a silent failure there
NONFINITE_LABELS = NAN_LABELS | {"inf", "huge", "negative huge", "1e300", "-inf"}


def pool(*, extra: list[tuple[str, Any]] = ()) -> st.SearchStrategy[tuple[str, Any]]:
    return st.sampled_from(POOL + list(extra))


ALLOWED = (TypeError, ValueError, funcdiff.DeviceNotFoundError, GoldenError)


def obey(call: Any, names: tuple[str, ...], *, nan_in: bool, passthrough: bool = False) -> Any:
    """Runs ``call()`` and asserts the policy; returns its result (or None when it raised)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = call()
    except ALLOWED as e:
        msg = str(e)
        assert any(f"`{n}" in msg for n in names), (
            f"{type(e).__name__} does not name any of {names}: {msg}"
        )
        if isinstance(e, funcdiff.UserFunctionError):
            assert e.argument in names, e.argument
        return None
    ok = getattr(out, "ok", None)
    if ok is True:
        assert not nan_in, f"ok=True with NaN in the input: {out}"
    elif ok is None and not passthrough:  # a raw array result (fd_*): never NaN
        for leaf in jax.tree_util.tree_leaves(out):
            arr = np.asarray(leaf)
            if arr.dtype.kind == "f":
                assert np.all(np.isfinite(arr)), f"a NaN/inf result returned silently: {out}"
    return out


def _apply(base: dict[str, Any], picks: list[tuple[str, tuple[str, Any]]]) -> tuple[dict, bool]:
    kwargs = dict(base)
    nan_in = False
    for arg, (label, value) in picks:
        kwargs[arg] = value
        nan_in |= label in NAN_LABELS
    return kwargs, nan_in


def picks(args: tuple[str, ...]) -> st.SearchStrategy[list[tuple[str, tuple[str, Any]]]]:
    """One or two (argument, pool value) replacements."""
    one = st.tuples(st.sampled_from(args), pool())
    return st.lists(one, min_size=1, max_size=2, unique_by=lambda p: p[0])


# ------------------------------------------------------------------ funcdiff core

FD = {
    "fd_grad": (funcdiff.fd_grad, ("fun", "x", "scheme", "step", "return_error")),
    "fd_jacobian": (funcdiff.fd_jacobian, ("fun", "x", "scheme", "step", "return_error")),
    "fd_jvp": (funcdiff.fd_jvp, ("fun", "x", "v", "scheme", "step", "return_error")),
    "fd_hvp": (funcdiff.fd_hvp, ("fun", "x", "v", "scheme", "step", "return_error")),
}


@pytest.mark.parametrize("name", sorted(FD))
@FUZZ
@given(data=st.data())
def test_fd_functions_obey_the_policy(name, data):
    fn, args = FD[name]
    base = {"fun": f_ok, "x": X, "scheme": "central", "step": None, "return_error": False}
    if "v" in args:
        base["v"] = X
    kwargs, nan_in = _apply(base, data.draw(picks(args)))
    names = (*args, "fun(x)")
    obey(lambda: fn(kwargs.pop("fun"), kwargs.pop("x"), **kwargs), names, nan_in=nan_in)


CHECKS = {
    "check_grad": (
        funcdiff.check_grad,
        ("fun", "x", "grad", "mode", "num_directions", "key", "rtol", "atol"),
        {"grad": None, "mode": "full", "num_directions": 2, "key": None},
    ),
    "check_grad directional": (
        funcdiff.check_grad,
        ("fun", "x", "grad", "num_directions", "key", "rtol", "atol"),
        {"grad": None, "mode": "directional", "num_directions": 2, "key": None},
    ),
    "taylor_test": (
        funcdiff.taylor_test,
        ("fun", "x", "grad", "v", "key", "num_steps", "min_order"),
        {"grad": None, "v": None, "key": None},
    ),
    "check_consistency": (
        funcdiff.check_consistency,
        ("fun", "x", "rtol", "grad"),
        {"rtol": None, "grad": None},
    ),
}


@pytest.mark.parametrize("name", sorted(CHECKS))
@FUZZ
@given(data=st.data())
def test_checks_obey_the_policy_and_never_pass_nan(name, data):
    fn, args, base = CHECKS[name]
    kwargs, nan_in = _apply({"fun": f_ok, "x": X, **base}, data.draw(picks(args)))
    obey(lambda: fn(kwargs.pop("fun"), kwargs.pop("x"), **kwargs), (*args, "fun(x)"),
         nan_in=nan_in)  # fmt: skip


@FUZZ
@given(data=st.data())
def test_scoped_obeys_the_policy(data):
    picked = data.draw(picks(("x64", "matmul_precision", "device")))
    kwargs, _ = _apply({}, picked)

    def enter() -> None:
        with funcdiff.scoped(**kwargs):
            pass

    before = funcdiff.x64_enabled()
    obey(enter, ("x64", "matmul_precision", "device"), nan_in=False)
    assert funcdiff.x64_enabled() == before


# ------------------------------------------------------------------ regression

OPT = optax.sgd(0.1)
XR, YR = jnp.arange(4.0), 2.0 * jnp.arange(4.0) + 1.0


def loss_ok(pred, y):
    return jnp.mean((pred - y) ** 2)


def loss_branchy(pred, y):
    if jnp.sum(pred) > 0:
        return jnp.mean(pred)
    return 0.0


REG_EXTRA = [("loss branchy", loss_branchy), ("loss raises", lambda p, y: p["a"])]


@FUZZ
@given(data=st.data())
def test_fit_obeys_the_policy(data):
    args = ("x", "y", "optimizer", "epochs", "params", "loss", "batch_size", "key",
            "log_every", "throw", "method")  # fmt: skip
    base = {"x": XR, "y": YR, "optimizer": OPT, "epochs": 3, "log_every": 1}
    one = st.tuples(st.sampled_from(args), pool(extra=REG_EXTRA))
    picked = data.draw(st.lists(one, min_size=1, max_size=2, unique_by=lambda p: p[0]))
    kwargs, nan_in = _apply(base, picked)
    obey(lambda: regression.fit(kwargs.pop("x"), kwargs.pop("y"), **kwargs), args,
         nan_in=nan_in)  # fmt: skip


@FUZZ
@given(data=st.data())
def test_predict_mse_ols_obey_the_policy(data):
    which = data.draw(st.sampled_from(["predict", "mse", "ols"]))
    if which == "predict":
        args: tuple[str, ...] = ("params", "x")
        base: dict[str, Any] = {"params": {"coef": 2.0, "intercept": 1.0}, "x": XR}
        call = regression.predict
    elif which == "mse":
        args, base, call = ("pred", "y"), {"pred": XR, "y": YR}, regression.mse
    else:
        args, base, call = ("x", "y"), {"x": XR, "y": YR}, regression.ols
    picked = data.draw(picks(args))
    kwargs, nan_in = _apply(base, picked)
    computes = which != "ols" and any(label in NONFINITE_LABELS for _, (label, _) in picked)
    obey(lambda: call(*kwargs.values()), (*args, "params['coef']", "params['intercept']"),
         nan_in=nan_in, passthrough=computes)  # fmt: skip


# ------------------------------------------------------------------ parity (torch optional)


@FUZZ
@given(data=st.data())
def test_conversions_and_catalog_lookups_obey_the_policy(data):
    pytest.importorskip("torch")
    from funcdiff import parity

    which = data.draw(st.sampled_from(["to_torch", "from_torch", "get_case", "run_catalog"]))
    label, value = data.draw(pool())
    nan_in = label in NAN_LABELS
    copies = label in NONFINITE_LABELS  # a conversion copies NaN faithfully
    if which == "to_torch":
        arg = data.draw(st.sampled_from(["tree", "device"]))
        kw = {"tree": np.ones(2), "device": None} | {arg: value}
        obey(lambda: parity.to_torch(kw["tree"], device=kw["device"]), ("tree", "device"),
             nan_in=nan_in, passthrough=copies)  # fmt: skip
    elif which == "from_torch":
        obey(lambda: parity.from_torch(value), ("tree",), nan_in=nan_in, passthrough=copies)
    elif which == "get_case":
        try:
            obey(lambda: parity.get_case(value), ("name",), nan_in=nan_in)
        except KeyError as e:  # documented: an unknown name is a lookup miss
            assert "No catalog case named" in str(e)
    else:
        args = ("cases", "dtypes", "pattern", "reference", "golden_path", "key", "progress")
        arg = data.draw(st.sampled_from(args))
        assume(not (arg == "pattern" and value is None))  # None: the whole catalog, valid
        kw = {"dtypes": ("float64",), "pattern": "tutorial/f"} | {arg: value}
        obey(lambda: parity.run_catalog(**kw), args, nan_in=nan_in)


@settings(FUZZ, max_examples=min(FUZZ.max_examples, 20))
@given(data=st.data())
def test_bootstrap_obeys_the_policy(data):
    args = ("key", "x", "y", "n_resamples", "epochs", "throw")
    base = {"key": jax.random.key(0), "x": XR, "y": YR, "n_resamples": 2, "epochs": 3}
    kwargs, nan_in = _apply(base, data.draw(picks(args)))
    obey(lambda: regression.bootstrap(**kwargs), args, nan_in=nan_in)


def _sgd(params):
    import torch

    return torch.optim.SGD(params, lr=0.1)


def _torch_sq(p):
    return (p**2).sum()


def _jax_sq(p):
    return jnp.sum(p**2)


@settings(FUZZ, max_examples=min(FUZZ.max_examples, 30))
@given(data=st.data())
def test_compare_optimizers_obeys_the_policy(data):
    pytest.importorskip("torch")
    from funcdiff.parity import compare_optimizers

    args = ("make_torch_optimizer", "jax_loss", "torch_loss", "params", "steps", "scheduler",
            "tolerance")  # fmt: skip
    base = {"make_torch_optimizer": _sgd, "jax_loss": _jax_sq, "torch_loss": _torch_sq,
            "params": np.ones(2), "steps": 2}  # fmt: skip
    kwargs, nan_in = _apply(base, data.draw(picks(args)))
    obey(lambda: compare_optimizers(**kwargs), args, nan_in=nan_in)
