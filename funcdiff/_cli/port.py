"""``funcdiff port``: a torch module against its JAX port, layer by layer (``compare_model``).

    funcdiff port TORCH_FACTORY JAX_FACTORY --input SHAPE[,DTYPE] [--input ...]
                  [--train] [--isolate] [--x64] [--rtol R] [--atol A] [--seed N] [--json]

Factories are ``module:function`` (or ``path/to/file.py:function``), imported with the
current directory on ``sys.path``:

- ``TORCH_FACTORY()`` returns the ``torch.nn.Module``.
- ``JAX_FACTORY`` is called with the torch module when it takes one positional argument and
  must then return the loaded JAX model (NNX, Equinox or a function); called without arguments
  it returns an unloaded NNX/Equinox model, which the command loads with
  ``load_torch_weights(model, torch_module)`` (strict).

Each ``--input`` is one random input: ``4,3,32,32`` (float32 normal, float64 with ``--x64``),
``4,3,32,32,float64``, or ``2,7,int64`` (integers in [0, 2)); seeded by ``--seed``.

``--rtol``/``--atol`` replace the per-dtype default tolerances of every row
(``|jax - torch| <= atol + rtol |torch|``); a deep float32 port such as
``examples/port_resnet.py`` needs about ``--rtol 1e-3 --atol 1e-3``. A negative, NaN or
infinite tolerance is a usage error (exit 2 naming the flag).

Exit codes (the policy of ``funcdiff._cli``): 0 the models agree; 1 they disagree, or a
factory raised; 2 the command line is wrong (a factory that cannot be imported, a malformed
``--input``, a negative or NaN ``--rtol``/``--atol``, inputs the models reject); one line
on stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
from typing import Any

import numpy as np

from funcdiff._cli._common import EXIT_FAILED, CLIError, emit_json, nonnegative_float

_DTYPES = ("float16", "float32", "float64", "int32", "int64", "bool")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "port",
        help="compare a torch module with its JAX port layer by layer (compare_model)",
        description=(
            "Build a torch module and its JAX port from two factories (module:function), run "
            "both on random inputs and print the aligned tree with the first divergence and "
            "the convention findings. The JAX factory takes the torch module and returns a "
            "loaded model, or takes nothing and returns a model that is loaded with "
            "load_torch_weights."
        ),
    )
    p.add_argument("torch_factory", metavar="TORCH_FACTORY", help="module:function -> nn.Module")
    p.add_argument(
        "jax_factory",
        metavar="JAX_FACTORY",
        help="module:function -> JAX model (given the torch module: loaded; no args: loaded "
        "here with load_torch_weights)",
    )
    p.add_argument(
        "--input",
        action="append",
        required=True,
        metavar="SHAPE[,DTYPE]",
        help="one input, e.g. 4,3,32,32 or 4,3,32,32,float64 or 2,7,int64 (repeat for more)",
    )
    p.add_argument("--train", action="store_true", help="training-mode forward and statistics")
    p.add_argument(
        "--isolate", action="store_true", help="also run each JAX layer on torch's input"
    )
    p.add_argument("--x64", action="store_true", help="float64 for inputs without a dtype")
    p.add_argument(
        "--rtol",
        type=nonnegative_float,
        default=None,
        help="relative tolerance of every row (default per dtype; e.g. 1e-3 for a deep float32 "
        "port)",
    )
    p.add_argument(
        "--atol",
        type=nonnegative_float,
        default=None,
        help="absolute tolerance of every row (default per dtype)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the inputs and cotangent (0)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the tree")
    p.set_defaults(func=run)


def parse_input(text: str, *, x64: bool) -> tuple[tuple[int, ...], str]:
    """``"4,3,float64"`` -> ``((4, 3), "float64")``."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    dtype = "float64" if x64 else "float32"
    if parts and not parts[-1].lstrip("-").isdigit():
        dtype = parts.pop()
        if dtype not in _DTYPES:
            raise CLIError(
                f"--input {text!r}: unknown dtype {dtype!r}; expected one of {', '.join(_DTYPES)}"
            )
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise CLIError(f"--input {text!r}: expected SHAPE[,DTYPE] like 4,3,32,32,float32") from None
    if not shape or any(s < 1 for s in shape):
        raise CLIError(f"--input {text!r}: expected a shape of positive sizes like 4,3")
    return shape, dtype


def _exec_file(path: str) -> Any:
    """Executes ``path`` as a module registered in ``sys.modules`` under a unique name.

    The registration is what ``importlib.util`` documents for importing a source file: dataclasses
    (and so ``equinox.Module``) look their module up in ``sys.modules`` to resolve string
    annotations (``from __future__ import annotations``), and fail on a module that is not there.
    The name is the file's stem plus a hash of its absolute path, so two files called
    ``models.py`` (or a file shadowing an installed package) do not collide.
    """
    full = os.path.abspath(path)
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(full))[0])
    name = f"_funcdiff_port_{stem}_{hashlib.sha1(full.encode()).hexdigest()[:10]}"
    spec = importlib.util.spec_from_file_location(name, full)
    if spec is None or spec.loader is None:
        raise CLIError(f"{path}: not a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def load_factory(spec: str, what: str, *, loaded: dict[str, Any] | None = None) -> Any:
    """Imports ``module:function`` (or ``file.py:function``) and returns the function.

    ``loaded`` caches the files executed in one command, so both factories taken from one file
    share its module (and its classes).
    """
    mod_name, sep, fn_name = spec.rpartition(":")
    if not sep or not mod_name or not fn_name:
        raise CLIError(f"{what} {spec!r}: expected module:function (e.g. mymodels:build_resnet)")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        if mod_name.endswith(".py"):
            if not os.path.isfile(mod_name):
                raise CLIError(f"{what} {spec!r}: no file {mod_name}")
            key = os.path.abspath(mod_name)
            if loaded is not None and key in loaded:
                module = loaded[key]
            else:
                module = _exec_file(mod_name)
                if loaded is not None:
                    loaded[key] = module
        else:
            module = importlib.import_module(mod_name)
    except CLIError:
        raise
    except Exception as e:
        raise CLIError(
            f"{what} {spec!r}: cannot import {mod_name}: {type(e).__name__}: {e}"
        ) from None
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise CLIError(f"{what} {spec!r}: {mod_name} has no function {fn_name!r}")
    return fn


def _takes_one_arg(fn: Any) -> bool:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(positional) == 1


def _inputs(specs: list[str], *, x64: bool, seed: int) -> list[np.ndarray]:
    from funcdiff.parity._measure import _seed_rng  # compare_model's own int-seed rule

    rng = _seed_rng(seed)  # a negative seed as its 64-bit two's complement, like `key`
    out = []
    for text in specs:
        shape, dtype = parse_input(text, x64=x64)
        if dtype.startswith("float"):
            out.append(rng.standard_normal(shape).astype(dtype))
        elif dtype == "bool":
            out.append(rng.integers(0, 2, shape).astype(bool))
        else:
            out.append(rng.integers(0, 2, shape).astype(dtype))
    return out


def run(args: argparse.Namespace) -> int:
    from funcdiff.parity import compare_model, load_torch_weights, require_torch

    try:
        torch = require_torch()
    except ImportError as e:
        raise CLIError(str(e)) from None
    xs = _inputs(args.input, x64=args.x64, seed=args.seed)
    loaded: dict[str, Any] = {}
    make_torch = load_factory(args.torch_factory, "TORCH_FACTORY", loaded=loaded)
    make_jax = load_factory(args.jax_factory, "JAX_FACTORY", loaded=loaded)
    try:
        torch_module = make_torch()
    except Exception as e:
        raise CLIError(f"TORCH_FACTORY raised {type(e).__name__}: {e}", EXIT_FAILED) from None
    if not isinstance(torch_module, torch.nn.Module):
        raise CLIError(
            f"TORCH_FACTORY returned {type(torch_module).__name__}, expected a torch.nn.Module"
        )
    given_torch = _takes_one_arg(make_jax)
    try:
        jax_model = make_jax(torch_module) if given_torch else make_jax()
    except Exception as e:
        raise CLIError(f"JAX_FACTORY raised {type(e).__name__}: {e}", EXIT_FAILED) from None
    try:
        if not given_torch:
            jax_model = load_torch_weights(jax_model, torch_module).model
        result = compare_model(
            jax_model,
            torch_module,
            *xs,
            train=args.train,
            isolate=args.isolate,
            rtol=args.rtol,
            atol=args.atol,
            key=args.seed,
        )
    except (TypeError, ValueError, ImportError) as e:
        raise CLIError(str(e)) from None
    if args.json:
        emit_json(result.to_dict())
    else:
        print(result)
    return 0 if result.ok else EXIT_FAILED
