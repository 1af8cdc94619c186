"""``funcdiff demo``: the tutorial, every section, the JAX way."""

from __future__ import annotations

import argparse
from typing import Any

from funcdiff._cli._common import (
    EXIT_FAILED,
    INT32_MAX,
    CLIError,
    bounded_int,
    emit_json,
    fail,
    positive_float,
    seed_int,
)

_ROWS = bounded_int(INT32_MAX, "rows are indexed with int32")
_EPOCHS = bounded_int(INT32_MAX, "the epoch loop counts in int32")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="reproduce the autodiff tutorial with jax.grad, jit and optax",
        description="Reproduce every number of the PyTorch autodiff tutorial with JAX.",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument(
        "--seed", type=seed_int, default=0, help="PRNG seed for data and init (default 0)"
    )
    p.add_argument("--n", type=_ROWS, default=100, help="regression points (default 100)")
    p.add_argument("--epochs", type=_EPOCHS, default=500, help="SGD epochs (default 500)")
    p.add_argument("--lr", type=positive_float, default=0.1, help="SGD learning rate (default 0.1)")
    p.add_argument(
        "--device",
        choices=("cpu", "gpu", "tpu"),
        default=None,
        help="device platform (default: JAX's default device)",
    )
    p.add_argument("--x64", action="store_true", help="run in float64")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from funcdiff import DeviceNotFoundError
    from funcdiff._demo import run_demo

    try:
        result = run_demo(
            seed_value=args.seed,
            n=args.n,
            epochs=args.epochs,
            lr=args.lr,
            device=args.device,
            x64=args.x64,
        )
    except DeviceNotFoundError as e:
        raise CLIError(str(e), code=EXIT_FAILED) from None
    except (TypeError, ValueError) as e:
        raise CLIError(str(e)) from None
    if args.json:
        emit_json(result.to_dict())
    else:
        print(result)
    if result.ok:
        return 0
    return fail("demo", "the tutorial's numbers did not come out (see the report)", EXIT_FAILED)
