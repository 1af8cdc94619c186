"""mkdocs hooks: generated pages and tables, repository files the guides link to, auto-links.

Everything here runs at build time, so the site never shows a copy that went stale:

- ``<!-- generated:registry -->`` and the ``<!-- registry:begin -->`` ... ``<!-- registry:end -->``
  block of ``docs/divergences.md`` become ``funcdiff.parity._divergences.registry_markdown()``;
- ``<!-- generated:catalog -->`` becomes a table of ``funcdiff.parity.catalog()``;
- ``<!-- generated:cli -->`` becomes the ``--help`` text of ``funcdiff`` and every subcommand;
- a relative link from a guide to a repository file outside ``docs/`` (``../examples/x.py``,
  ``../benchmarks/README.md``, a plot) is followed: the file is added to the site under
  ``repo/`` (a ``.py`` file as a page showing its source) and the link points there;
- in the guides, an inline code span naming a public function or class (`` `fd_grad` ``,
  `` `parity.compare(...)` ``, `` `funcdiff.regression.fit` ``) links, the first time it
  appears on the page, to its entry in the API reference.
"""

from __future__ import annotations

import argparse
import importlib
import os
import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
REPO_PREFIX = "repo/"
# The modules whose public names have a reference entry, and the page holding them.
REFERENCE_MODULES = ("funcdiff", "funcdiff.regression", "funcdiff.parity", "funcdiff.seed")
# Pages whose inline code is auto-linked to the reference (the reference itself is not).
NOT_AUTOLINKED = ("reference/",)

_LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)(\))")
_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
_CODE = re.compile(r"(?<![\[`])`(?P<name>[A-Za-z_][\w.]*)(?P<call>\([^`]*\))?`(?![\]`])")


# ---- generated tables ----------------------------------------------------------------------


def registry_table() -> str:
    from funcdiff.parity._divergences import registry_markdown

    return registry_markdown()


def catalog_table() -> str:
    from funcdiff.parity import catalog

    cases = catalog()
    groups: dict[str, list] = {}
    for c in cases:
        groups.setdefault(c.group, []).append(c)
    lines = [
        f"{len(cases)} cases in {len(groups)} groups, generated from `funcdiff.parity.catalog()` "
        "when this site was built.",
    ]
    for group, members in groups.items():
        lines += [
            f"\n## {group}\n",
            "| case | JAX function | PyTorch function | divergence | rtol / atol | tags |",
            "|---|---|---|---|---|---|",
        ]
        for c in members:
            d = c.divergence
            div = "-" if d is None else f"[{d}](divergences.md#{d})"
            tol = "default"
            if c.rtol is not None or c.atol is not None:
                tol = " / ".join("default" if t is None else f"{t:g}" for t in (c.rtol, c.atol))
            cells = (
                f"`{c.name}`",
                f"`{_fn_name(c.jax_fn)}`",
                f"`{_fn_name(c.torch_fn)}`",
                div,
                tol,
                ", ".join(c.tags) or "-",
            )
            lines.append("| " + " | ".join(str(x).replace("|", "\\|") for x in cells) + " |")
    return "\n".join(lines)


def registry_page_table() -> str:
    """One section per registry entry: a heading to link to, its facts, its source."""
    from funcdiff import parity
    from funcdiff.parity import divergences
    from funcdiff.parity._divergences import _fmt_values, _match_name

    entries = divergences()
    lines = [f"{len(entries)} entries, generated from `funcdiff.parity.divergences()`."]
    for d in entries:
        variant = "-" if d.match_torch is None else f"`{_match_name(d)}`"
        fn = getattr(d.match_torch, "__name__", "")
        if d.match_torch is not None and fn in parity.__all__:
            variant = f"[{variant}][funcdiff.parity.{fn}]"
        cases = ", ".join(f"[`{c}`](catalog.md)" for c in d.cases) or "-"
        lines += [
            f"\n## {d.name}\n",
            "| op | where | quantity | JAX | PyTorch | match-torch variant |",
            "|---|---|---|---|---|---|",
            "| "
            + " | ".join(
                x.replace("|", "\\|")
                for x in (
                    f"`{d.op}`",
                    d.point,
                    d.quantity,
                    _fmt_values(d.jax_value),
                    _fmt_values(d.torch_value),
                    variant,
                )
            )
            + " |",
            f"\n**Source:** {d.source}" + (f"\n\n{d.note}" if d.note else ""),
            f"\n**Catalog cases:** {cases}",
        ]
    return "\n".join(lines)


def _fn_name(fn: object) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    mod = getattr(fn, "__module__", "") or ""
    if "<lambda>" in name or "<locals>" in name:
        return "lambda"
    return f"{mod.split('.')[0]}.{name}" if mod and not mod.startswith("funcdiff") else name


def cli_help() -> str:
    from funcdiff._cli import build_parser

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        parser = build_parser()
        parts = ["## `funcdiff`\n", "```text", parser.format_help().rstrip(), "```"]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    parts += [f"\n## `funcdiff {name}`\n", "```text", sub.format_help().rstrip()]
                    parts.append("```")
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old
    return "\n".join(parts)


GENERATED = {
    "<!-- generated:registry -->": registry_page_table,
    "<!-- generated:catalog -->": catalog_table,
    "<!-- generated:cli -->": cli_help,
}


# ---- repository files linked from the guides -----------------------------------------------


def _outside_links(text: str, repo_path: str) -> list[tuple[str, str]]:
    """(link as written, repository path it points to) for relative links leaving docs/."""
    found = []
    for m in _LINK.finditer(_FENCE.sub("", text)):
        target = m.group(2).split("#", 1)[0]
        if not target or "://" in target or target.startswith(("/", "mailto:")):
            continue
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(repo_path), target))
        if not resolved.startswith("docs/") and (ROOT / resolved).is_file():
            found.append((m.group(2), resolved))
    return found


def _site_path(repo_path: str) -> str:
    """Where a repository file lives in the site (relative to docs/)."""
    if repo_path.startswith("docs/"):
        return repo_path[len("docs/") :]
    if repo_path.endswith(".py"):
        return REPO_PREFIX + repo_path[: -len(".py")] + ".md"
    return REPO_PREFIX + repo_path


def _repo_path(site_path: str) -> str:
    if site_path.startswith(REPO_PREFIX):
        rest = site_path[len(REPO_PREFIX) :]
        as_py = rest[: -len(".md")] + ".py"
        if not (ROOT / rest).is_file() and (ROOT / as_py).is_file():
            return as_py
        return rest
    return "docs/" + site_path


def on_files(files: Files, config) -> Files:
    """Add every repository file the guides link to (transitively) as a site file."""
    todo = [f"docs/{f.src_uri}" for f in files if f.src_uri.endswith(".md")]
    seen = set(todo)
    while todo:
        path = todo.pop()
        if not path.endswith(".md"):
            continue
        for _, target in _outside_links((ROOT / path).read_text(encoding="utf-8"), path):
            if target in seen:
                continue
            seen.add(target)
            todo.append(target)
            src = ROOT / target
            uri = _site_path(target)
            if target.endswith(".py"):
                body = src.read_text(encoding="utf-8")
                content = f"# `{target}`\n\n```python\n{body.rstrip()}\n```\n"
                files.append(File.generated(config, uri, content=content))
            elif target.endswith(".md"):
                files.append(File.generated(config, uri, content=src.read_text(encoding="utf-8")))
            else:
                files.append(File.generated(config, uri, abs_src_path=str(src)))
    return files


def _rewrite_links(markdown: str, site_uri: str) -> str:
    repo_path = _repo_path(site_uri)
    mapping = dict(_outside_links(markdown, repo_path))

    def fix(m: re.Match[str]) -> str:
        written = m.group(2)
        if written not in mapping:
            return m.group(0)
        target, _, anchor = written.partition("#")
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(repo_path), target))
        new = posixpath.relpath(_site_path(resolved), posixpath.dirname(site_uri) or ".")
        return m.group(1) + new + ("#" + anchor if anchor else "") + m.group(3)

    # Links in repo pages that point back into docs/ (../docs/porting.md) resolve too.
    def fix_docs(m: re.Match[str]) -> str:
        written = m.group(2)
        target, _, anchor = written.partition("#")
        if not target or "://" in target:
            return m.group(0)
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(repo_path), target))
        if not resolved.startswith("docs/") or not site_uri.startswith(REPO_PREFIX):
            return m.group(0)
        new = posixpath.relpath(_site_path(resolved), posixpath.dirname(site_uri) or ".")
        return m.group(1) + new + ("#" + anchor if anchor else "") + m.group(3)

    return _on_prose(markdown, lambda s: _LINK.sub(fix_docs, _LINK.sub(fix, s)))


# ---- cross-references to the API reference -------------------------------------------------


def _public_names() -> dict[str, str]:
    """Every spelling of a public name a guide may write, mapped to its reference identifier."""
    names: dict[str, str] = {}
    for modname in REFERENCE_MODULES:
        mod = importlib.import_module(modname)
        short = modname.rsplit(".", 1)[-1]
        for name in getattr(mod, "__all__", ()):
            if name.startswith("_") or name.isupper():
                continue
            ident = f"{modname}.{name}"
            for spelling in (name, f"{short}.{name}", ident):
                names.setdefault(spelling, ident)
    return names


_NAMES: dict[str, str] = {}


def _on_prose(markdown: str, fn) -> str:
    """Apply ``fn`` to the text outside fenced code blocks."""
    out, last = [], 0
    for m in _FENCE.finditer(markdown):
        out.append(fn(markdown[last : m.start()]))
        out.append(m.group(0))
        last = m.end()
    out.append(fn(markdown[last:]))
    return "".join(out)


def _autolink(markdown: str) -> str:
    if not _NAMES:
        _NAMES.update(_public_names())
    linked: set[str] = set()

    def link(m: re.Match[str]) -> str:
        name = m.group("name")
        ident = _NAMES.get(name)
        # `f` and `g` are the seed's functions, but a bare one-letter name is usually maths
        if ident is None or ident in linked or ("." not in name and len(name) < 3):
            return m.group(0)
        linked.add(ident)
        return f"[{m.group(0)}][{ident}]"

    def prose(text: str) -> str:
        lines = []
        for line in text.split("\n"):
            # headings and table separator rows stay as written
            lines.append(line if line.lstrip().startswith("#") else _CODE.sub(link, line))
        return "\n".join(lines)

    return _on_prose(markdown, prose)


# ---- the hook ------------------------------------------------------------------------------

_REGISTRY_BLOCK = re.compile(
    r"(^<!-- registry:begin -->\n).*?(\n<!-- registry:end -->$)", re.S | re.M
)


def on_page_markdown(markdown: str, page, config, files) -> str:
    for marker, make in GENERATED.items():  # a marker counts only on a line of its own
        pattern = re.compile("^" + re.escape(marker) + "[ \t]*$", re.M)
        if pattern.search(markdown):
            table = make()
            markdown = pattern.sub(lambda _, table=table: table, markdown)
    markdown = _REGISTRY_BLOCK.sub(lambda m: m.group(1) + registry_table() + m.group(2), markdown)
    uri = page.file.src_uri
    markdown = _rewrite_links(markdown, uri)
    if not uri.startswith(NOT_AUTOLINKED) and not uri.startswith(REPO_PREFIX):
        markdown = _autolink(markdown)
    return markdown
