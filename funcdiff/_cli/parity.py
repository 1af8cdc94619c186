"""``funcdiff parity``: the reference catalog against PyTorch (live, or its golden file).

Exit codes: 0 when every case agrees or diverges as registered, 1 when a case fails or raises,
2 for a usage error (unknown dtype, a pattern that matches nothing, ``--regenerate`` without
PyTorch).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from funcdiff._cli._common import EXIT_FAILED, CLIError, emit_json, fail


def register(sub: Any) -> None:
    p = sub.add_parser(
        "parity",
        help="run the JAX-vs-PyTorch reference catalog (values, gradients, JVPs, HVPs)",
        description=(
            "Run every catalog case in float32 and float64 against PyTorch (or, without it, "
            "against the golden reference file) and summarise the outcomes."
        ),
    )
    p.add_argument(
        "--dtype",
        choices=("float32", "float64", "all"),
        default="all",
        help="which dtype(s) to run (default: all)",
    )
    p.add_argument(
        "--case",
        metavar="PATTERN",
        default=None,
        help="only cases whose name matches this glob (e.g. 'linalg/*') or substring",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument(
        "--regenerate",
        action="store_true",
        help="run against live PyTorch and rewrite the golden reference file",
    )
    p.add_argument(
        "--reference",
        choices=("auto", "torch", "golden"),
        default="auto",
        help="compare against live PyTorch, the golden file, or whichever is "
        "available (default: auto = live when PyTorch is installed)",
    )
    p.set_defaults(func=run)


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[Any, int, int], None] | None]:
    """A rich progress bar on stderr (only on a terminal and not with --json)."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("parity"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("", total=None)

        def hook(outcome: Any, done: int, total: int) -> None:
            bar.update(
                task,
                completed=done,
                total=total,
                description=f"{outcome.name} {outcome.dtype}: {outcome.status}",
            )

        yield hook


def run(args: argparse.Namespace) -> int:
    from funcdiff.parity import GoldenError, regenerate_golden, run_catalog, torch_available

    dtypes = ("float32", "float64") if args.dtype == "all" else (args.dtype,)
    show_bar = not args.json and sys.stderr.isatty()
    if args.regenerate and not torch_available():
        raise CLIError("--regenerate needs PyTorch: pip install 'funcdiff[torch]'")
    try:
        with _progress(show_bar) as hook:
            if args.regenerate:
                path, report = regenerate_golden(dtypes=dtypes, pattern=args.case, progress=hook)
            else:
                report = run_catalog(
                    dtypes=dtypes, pattern=args.case, reference=args.reference, progress=hook
                )
    except ImportError as e:
        raise CLIError(str(e)) from None
    except GoldenError as e:
        raise CLIError(str(e), code=EXIT_FAILED) from None
    except ValueError as e:
        raise CLIError(str(e)) from None
    if args.json:
        data = report.to_dict()
        if args.regenerate:
            data["golden"] = str(path)
        emit_json(data)
    else:
        print(report)
        if args.regenerate:
            print(f"\nwrote {len(report.outcomes)} golden entries to {path}")
    if report.ok:
        return 0
    failed, raised = report.count("failed"), report.count("error")
    total = len(report.outcomes)
    return fail(
        "parity",
        f"{failed} of {total} case runs disagree with PyTorch and {raised} raised (see the report)",
        EXIT_FAILED,
    )
