"""Shared CLI plumbing: one-line errors, exit codes, JSON output."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from funcdiff._validation import SEED_MAX, SEED_MIN

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "INT32_MAX",
    "SEED_MAX",
    "SEED_MIN",
    "CLIError",
    "Parser",
    "bounded_int",
    "emit_json",
    "fail",
    "nonnegative_float",
    "positive_float",
    "positive_int",
    "seed_int",
]

EXIT_FAILED = 1  # the function or the check failed (or the run could not be done here)
EXIT_USAGE = 2  # the command line is wrong
EXIT_INTERRUPTED = 130  # Ctrl-C


class CLIError(Exception):
    """An error the CLI reports as one line with exit ``code`` (2 usage, 1 failure)."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def fail(command: str | None, message: str, code: int) -> int:
    """Prints ``funcdiff COMMAND: error: MESSAGE`` as one line on stderr; returns ``code``."""
    prefix = f"funcdiff {command}" if command else "funcdiff"
    one_line = " ".join(str(message).split())
    print(f"{prefix}: error: {one_line}", file=sys.stderr)
    return code


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _finite_float(text: str, *, allow_zero: bool) -> float:
    """``text`` as a finite float > 0 (>= 0 when ``allow_zero``), or an ArgumentTypeError."""
    bound = ">= 0" if allow_zero else "> 0"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number {bound}, got {text!r}") from None
    if not ((value >= 0 if allow_zero else value > 0) and value != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number {bound}, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite float > 0."""
    return _finite_float(text, allow_zero=False)


INT32_MAX = 2**31 - 1  # lax.scan lengths and array sizes JAX indexes with int32


def bounded_int(maximum: int, why: str) -> Callable[[str], int]:
    """argparse type: an integer in [1, ``maximum``] (``why`` explains the bound)."""

    def parse(text: str) -> int:
        value = positive_int(text)
        if value > maximum:
            raise argparse.ArgumentTypeError(f"expected at most {maximum} ({why}), got {value}")
        return value

    parse.__name__ = "bounded_int"
    return parse


def nonnegative_float(text: str) -> float:
    """argparse type: a finite float >= 0."""
    return _finite_float(text, allow_zero=True)


def seed_int(text: str) -> int:
    """argparse type: a PRNG seed, an integer that fits in 64 bits (signed)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if not SEED_MIN <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(
            f"expected a seed in [-2**63, 2**63 - 1] (64 bits), got {text}"
        )
    return value


def emit_json(obj: Any) -> None:
    """Prints exactly one JSON object on stdout."""
    print(json.dumps(obj, indent=2, allow_nan=True))
