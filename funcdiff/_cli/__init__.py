"""The ``funcdiff`` command line: a thin argparse shell over the public API.

Each subcommand lives in its own module with ``register(subparsers)`` and ``run(args) -> int``.
Nothing in the library imports this package.

Exit codes: 0 success, 1 a failed check (or a missing device), 2 a usage error. User mistakes
print one line on stderr, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from funcdiff._cli import bench, check, demo, parity, port, regress
from funcdiff._cli._common import CLIError, Parser, fail

__all__ = ["main"]

_COMMANDS = (demo, check, parity, port, regress, bench)


def build_parser() -> Parser:
    parser = Parser(
        prog="funcdiff",
        description="Functional automatic differentiation with JAX.",
    )
    from funcdiff import __version__

    parser.add_argument("--version", action="version", version=f"funcdiff {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{demo,check,parity,port,regress,bench}")
    sub.required = True
    for module in _COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI; returns the exit code (0 ok, 1 failed check, 2 usage error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except CLIError as e:
        return fail(args.command, str(e), e.code)
    except KeyboardInterrupt:
        return fail(args.command, "interrupted", 130)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
