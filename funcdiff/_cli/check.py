"""``funcdiff check MODULE:FUNCTION --at JSON``: check a user's gradient from the shell.

Exit codes: 0 the gradient is right; 1 it is wrong, or the function (or ``--grad``) fails at
the point: it raises, is not jit-compatible, or returns something that is not an array;
2 the command line is wrong: a bad spec, a module that cannot be imported, ``--at`` that is not
JSON numbers (empty, booleans, NaN/inf, too large for the dtype), a seed outside 64 bits, a
negative tolerance, a function that is not scalar-valued. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from funcdiff._cli._common import (
    EXIT_FAILED,
    EXIT_USAGE,
    CLIError,
    bounded_int,
    emit_json,
    fail,
    nonnegative_float,
    seed_int,
)

MAX_DIRECTIONS = 100_000


def register(sub: Any) -> None:
    p = sub.add_parser(
        "check",
        help="check a function's gradient against finite differences",
        description=(
            "Import MODULE:FUNCTION (a scalar JAX function), evaluate its autodiff gradient at "
            "the point given by --at, and compare it with finite differences. Exit 0 when it "
            "is right, 1 when it is wrong, 2 for a usage error."
        ),
    )
    p.add_argument("target", metavar="MODULE:FUNCTION", help="e.g. funcdiff.seed:composite")
    p.add_argument(
        "--at",
        required=True,
        metavar="JSON",
        help="the point: a JSON number, (nested) list, or object of them (a pytree); "
        "'@FILE' reads the JSON from FILE",
    )
    p.add_argument("--mode", choices=("full", "directional"), default="full")
    p.add_argument(
        "--grad",
        metavar="MODULE:FUNCTION",
        default=None,
        help="a gradient to check instead of jax.grad (e.g. funcdiff.seed:manual_grad)",
    )
    p.add_argument(
        "--num-directions",
        type=bounded_int(MAX_DIRECTIONS, "each direction is one JVP and one VJP"),
        default=8,
        metavar="N",
        help=f"directional mode: random directions (default 8, at most {MAX_DIRECTIONS})",
    )
    p.add_argument("--seed", type=seed_int, default=0, help="PRNG seed for the directions")
    p.add_argument("--rtol", type=nonnegative_float, default=None)
    p.add_argument("--atol", type=nonnegative_float, default=None)
    p.add_argument("--x64", action="store_true", help="run in float64")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def load_callable(spec: str, what: str = "MODULE:FUNCTION") -> Callable[..., Any]:
    """Imports ``module.path:attr.path`` (the current directory is importable)."""
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise CLIError(f"expected {what} such as funcdiff.seed:composite, got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as e:
        raise CLIError(f"cannot import module {module_name!r}: {type(e).__name__}: {e}") from None
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            raise CLIError(f"module {module_name!r} has no attribute {attr_path!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise CLIError(f"{spec!r} is not callable (got {type(obj).__name__})")
    return obj


def _check_numbers(v: Any, where: str) -> None:
    """Every leaf of a JSON list is a number (not a bool, null or string)."""
    if isinstance(v, list):
        for x in v:
            _check_numbers(x, where)
    elif isinstance(v, bool) or v is None or isinstance(v, str | dict):
        raise CLIError(f"--at{where}: expected numbers, got {json.dumps(v)}")


def parse_point(text: str, dtype: Any) -> Any:
    """JSON -> a pytree of float arrays (numbers become ``dtype``; objects become dicts).

    Refused (a usage error): invalid JSON, anything but numbers, an empty point or leaf,
    ragged lists, NaN/inf (``NaN``, ``Infinity``, ``1e400``) and values beyond ``dtype``'s
    range (``1e39`` in float32: pass ``--x64``).
    """
    if text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as fh:
                text = fh.read()
        except (OSError, UnicodeDecodeError) as e:
            why = getattr(e, "strerror", None) or type(e).__name__
            raise CLIError(f"cannot read --at file {text[1:]!r}: {why}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise CLIError(f"--at is not valid JSON ({e.msg} at column {e.colno}): {text!r}") from None
    except RecursionError:
        raise CLIError("--at is nested too deeply") from None
    limit = float(np.finfo(dtype).max)

    def convert(v: Any, where: str) -> Any:
        if isinstance(v, dict):
            if not v:
                raise CLIError(f"--at{where}: expected at least one number, got {{}}")
            return {k: convert(x, f"{where}[{k!r}]") for k, x in v.items()}
        if isinstance(v, list) and any(isinstance(x, dict) for x in v):
            return [convert(x, f"{where}[{i}]") for i, x in enumerate(v)]
        _check_numbers(v, where)
        try:
            arr = np.asarray(v, dtype=np.float64)
        except OverflowError:
            raise CLIError(
                f"--at{where}: expected finite numbers, got an integer beyond float64"
            ) from None
        except (ValueError, TypeError):
            raise CLIError(
                f"--at{where}: expected a number or a rectangular list of numbers"
            ) from None
        if arr.size == 0:
            raise CLIError(f"--at{where}: expected at least one number, got {json.dumps(v)}")
        if not np.all(np.isfinite(arr)):
            raise CLIError(
                f"--at{where}: expected finite numbers, got NaN or inf (a literal NaN/Infinity, "
                "or a number beyond float64 such as 1e400)"
            )
        big = float(np.max(np.abs(arr)))
        if big > limit:
            raise CLIError(
                f"--at{where}: {big:g} does not fit in {np.dtype(dtype).name} (largest "
                f"{limit:.4g}); pass --x64"
            )
        return arr.astype(dtype)

    return convert(value, "")


def _user(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` whose failures are reported as the user's function failing (exit 1)."""
    from funcdiff._validation import call_user

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        return call_user(name, fn, *args, **kwargs)

    return call


def run(args: argparse.Namespace) -> int:
    import jax
    import jax.numpy as jnp

    from funcdiff import check_grad, scoped
    from funcdiff._validation import UserFunctionError

    fun = load_callable(args.target)
    grad = None if args.grad is None else load_callable(args.grad, "--grad MODULE:FUNCTION")
    with scoped(x64=bool(args.x64)):
        point = parse_point(args.at, np.float64 if args.x64 else np.float32)
        x = jax.tree_util.tree_map(jnp.asarray, point)
        try:
            result = check_grad(
                _user(args.target, fun),
                x,
                grad=None if grad is None else _user(args.grad, grad),
                mode=args.mode,
                num_directions=args.num_directions,
                key=args.seed,
                rtol=args.rtol,
                atol=args.atol,
            )
        except UserFunctionError as e:  # the user's function failed at the point
            raise CLIError(str(e), code=EXIT_FAILED) from None
        except (TypeError, ValueError) as e:  # funcdiff refused the point or the function
            raise CLIError(str(e), code=EXIT_USAGE) from None
    if args.json:
        emit_json({"function": args.target, **result.to_dict()})
    else:
        print(result)
    if result.ok:
        return 0
    why = " ".join(result.message.split()) or "autodiff and finite differences disagree"
    return fail("check", f"the gradient of {args.target} is wrong: {why}", EXIT_FAILED)
