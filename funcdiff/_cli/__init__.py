"""The ``funcdiff`` command line: a thin argparse shell over the public API.

Each subcommand lives in its own module with ``register(subparsers)`` and ``run(args) -> int``.
Nothing in the library imports this package.

Error policy: a mistake or a failure prints exactly one line on stderr,
``funcdiff COMMAND: error: MESSAGE``, never a traceback (and no warning of the failed run); a
failed check still prints its report (table or ``--json``) on stdout first. The exit code says
whose it was:

* 0: success (``check``: the gradient is right; ``parity``: every case agrees or diverges as
  registered; ``regress``: the fit converged).
* 1: the function or the check failed: ``check`` found a wrong gradient, or the user's
  function (or ``--grad``) raised, is not jit-compatible or returned something that is not a
  scalar array at the point (``funcdiff.UserFunctionError``); ``parity`` has a failing or
  raising case or no golden file; ``regress`` diverged; the ``--device`` asked for is not on
  this machine; or an unexpected error (a funcdiff bug, an exhausted resource; set
  ``FUNCDIFF_TRACEBACK=1`` to see its traceback).
* 2: the command line is wrong: an unknown subcommand, flag or choice, a malformed value
  (``--at`` that is not JSON numbers, empty, boolean, not finite or too large for the dtype;
  a seed outside 64 bits; a negative tolerance; ``--n``/``--epochs`` beyond 2**31 - 1,
  ``--num-directions`` beyond 100000, ``--bootstrap`` beyond 10**6), a module that cannot
  be imported or a name that is not a function, a function ``check`` cannot check (not
  scalar-valued), a file that cannot be read or holds unusable data (``regress --csv``:
  missing column, non-number, NaN/inf, a value beyond float32 without ``--x64``), an
  unwritable ``--out``, a ``--case`` that matches nothing. argparse's own errors exit 2
  through ``SystemExit``; everything else is returned by :func:`main`.
* 130: interrupted (Ctrl-C).

Compilation cache: every command but ``bench`` (which times compilation) runs with JAX's
persistent compilation cache in ``$XDG_CACHE_HOME/funcdiff/jax`` (``~/.cache/funcdiff/jax``),
unless ``--no-cache`` is given, ``FUNCDIFF_NO_CACHE=1`` is set, or the user configured a cache
for JAX (``JAX_COMPILATION_CACHE_DIR``); see :func:`funcdiff._config.enable_persistent_cache`.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence

from funcdiff._cli import bench, check, demo, parity, port, regress
from funcdiff._cli._common import EXIT_FAILED, EXIT_INTERRUPTED, CLIError, Parser, fail

__all__ = ["main"]

_COMMANDS = (demo, check, parity, port, regress, bench)
_UNCACHED = ("bench",)  # the benchmark times compilation: a cache would hide it
TRACEBACK_ENV = "FUNCDIFF_TRACEBACK"


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
    for name, command in sub.choices.items():
        if name not in _UNCACHED:
            command.add_argument(
                "--no-cache",
                action="store_true",
                help="do not use funcdiff's persistent compilation cache (also: "
                "FUNCDIFF_NO_CACHE=1)",
            )
    return parser


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real stdout (captured in tests)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI; returns the exit code (0 ok, 1 the function or check failed, 2 the
    command line is wrong; see the module docstring). argparse's errors raise
    ``SystemExit(2)`` after their one line."""
    from funcdiff._validation import UserFunctionError, first_line

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command not in _UNCACHED and not args.no_cache:
        from funcdiff._config import enable_persistent_cache

        enable_persistent_cache()
    with warnings.catch_warnings(record=True) as caught:
        try:
            code = int(args.func(args))
        except CLIError as e:
            code = fail(args.command, str(e), e.code)
        except UserFunctionError as e:
            code = fail(args.command, str(e), EXIT_FAILED)
        except KeyboardInterrupt:
            code = fail(args.command, "interrupted", EXIT_INTERRUPTED)
        except BrokenPipeError:  # `funcdiff ... | head`: the reader left; nothing to say
            _silence_stdout()
            code = EXIT_FAILED
        except Exception as e:
            if os.environ.get(TRACEBACK_ENV):
                raise
            code = fail(
                args.command,
                f"unexpected {type(e).__name__}: {first_line(e)} "
                f"(set {TRACEBACK_ENV}=1 to see the traceback)",
                EXIT_FAILED,
            )
    if code == 0:  # a failed run says one line; a good one shows its warnings
        for w in caught:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno, w.file, w.line)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
