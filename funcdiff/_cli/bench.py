"""`funcdiff bench`: placeholder until its issue lands; the owner replaces this module."""

from __future__ import annotations

import argparse
from typing import Any

from funcdiff._cli._common import CLIError


def register(sub: Any) -> None:
    p = sub.add_parser("bench", help="(in progress)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise CLIError("`funcdiff bench` is not implemented yet", code=2)
