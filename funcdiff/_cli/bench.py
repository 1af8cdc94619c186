"""``funcdiff bench``: jitted JAX against PyTorch eager, torch.compile and a memory pass."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Any

from funcdiff._cli._common import EXIT_FAILED, CLIError

# The names of funcdiff._bench.cases.CASES, spelled out so `--help` does not import the harness
# (tests/test_bench.py keeps the two equal).
_CASES = (
    "seed-grad",
    "regression",
    "gradcheck",
    "fd-accuracy",
    "bootstrap",
    "parity",
    "port",
    "startup",
)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark jitted JAX against PyTorch (results.json, results.md, plots)",
        description=(
            "Time the tutorial's computations the JAX way against PyTorch eager, torch.compile, "
            "torch.func and a numpy memory pass, on this machine. Writes DIR/results.json, "
            "DIR/results.md and PNG plots."
        ),
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="small sizes, few repeats (about 2-3 minutes on 2 cores)",
    )
    p.add_argument(
        "--case",
        action="append",
        metavar="NAME",
        default=None,
        help=f"run only this case (repeatable): {', '.join(_CASES)}",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="output directory (default: bench-out/<device platform>)",
    )
    p.add_argument(
        "--device",
        choices=("cpu", "gpu", "tpu"),
        default=None,
        help="device platform (default: JAX's default device)",
    )
    p.add_argument(
        "--no-torch",
        action="store_true",
        help="skip the PyTorch baselines (as if torch were not installed)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from funcdiff import DeviceNotFoundError
    from funcdiff._bench import check_cases, run_bench, split_cpu_into_cores
    from funcdiff._bench._runner import prepare_out

    try:  # the command line first: nothing runs (and JAX does not start) when it is wrong
        check_cases(args.case)
        if args.out is not None:
            prepare_out(args.out)
    except (ValueError, OSError) as e:
        raise CLIError(str(e)) from None
    if args.device in (None, "cpu"):
        split_cpu_into_cores()  # before JAX starts: the regression case's mesh row needs it
    out = args.out
    if out is None:
        from funcdiff._config import resolve_device

        try:
            platform = resolve_device(args.device).platform
        except DeviceNotFoundError as e:
            raise CLIError(str(e), code=EXIT_FAILED) from None
        out = os.path.join("bench-out", platform)
    command = "funcdiff " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else None
    try:
        report = run_bench(
            out=out,
            quick=args.quick,
            cases=args.case,
            device=args.device,
            progress=not args.no_progress,
            use_torch=not args.no_torch,
            command=command,
        )
    except DeviceNotFoundError as e:
        raise CLIError(str(e), code=EXIT_FAILED) from None
    except (ValueError, OSError) as e:
        raise CLIError(str(e)) from None
    print(report)
    return 0
