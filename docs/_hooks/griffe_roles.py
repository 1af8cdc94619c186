"""Griffe extension: Sphinx roles and maths in docstrings become Markdown for mkdocstrings.

The docstrings are written for both ``help()`` and the site, so they use ``:func:`fit```,
``:class:`~funcdiff.FitResult``` and friends. Here a role naming a public name (one in the
``__all__`` of a module the reference documents) becomes a cross-reference to its entry; any
other role (a private helper, an attribute, a torch function) becomes plain inline code.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

import griffe

MODULES = ("funcdiff", "funcdiff.regression", "funcdiff.parity", "funcdiff.seed")
# ``.. math::`` blocks and ``:math:`` roles become arithmatex ($$ ... $$ and $ ... $).
_MATH_BLOCK = re.compile(
    r"^([ \t]*)\.\. math::[ \t]*\n(?:[ \t]*\n)?((?:\1[ \t]+\S.*\n|[ \t]*\n)+)", re.M
)
_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|mod|data|exc|obj|const):`~?\.?([^`<>]+)`")


def _public() -> tuple[set[str], dict[str, str]]:
    full: set[str] = set()
    by_name: dict[str, list[str]] = {}
    for modname in MODULES:
        mod = importlib.import_module(modname)
        for name in getattr(mod, "__all__", ()):
            if name.isupper() or name.startswith("_"):  # constants have no entry of their own
                continue
            ident = f"{modname}.{name}"
            full.add(ident)
            by_name.setdefault(name, []).append(ident)
    return full, {k: v[0] for k, v in by_name.items() if len(v) == 1}


class SphinxRoles(griffe.Extension):
    """Rewrites ``:role:`target``` in every docstring (see the module docstring)."""

    def __init__(self) -> None:
        self._full: set[str] | None = None
        self._by_name: dict[str, str] = {}

    def _target(self, text: str) -> str | None:
        if self._full is None:
            self._full, self._by_name = _public()
        text = text.strip()
        if text in self._full:
            return text
        last = text.rsplit(".", 1)[-1]
        if ("." not in text or text.startswith("funcdiff")) and last in self._by_name:
            return self._by_name[last]
        return None

    def _sub(self, m: re.Match[str]) -> str:
        text = m.group(1).strip()
        target = self._target(text)
        shown = text.rsplit(".", 1)[-1] if m.group(0).count("~") else text
        return f"[`{shown}`][{target}]" if target else f"`{shown}`"

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and ":" in obj.docstring.value:
            text = _MATH_BLOCK.sub(_display_math, obj.docstring.value)
            text = _MATH_ROLE.sub(lambda m: f"${m.group(1)}$", text)
            obj.docstring.value = _ROLE.sub(self._sub, text)


def _display_math(m: re.Match[str]) -> str:
    body = "\n".join(line.strip() for line in m.group(2).strip("\n").split("\n"))
    return f"\n$$\n{body}\n$$\n\n"  # blank lines around: an arithmatex block
