"""The documentation site: a strict mkdocs build, the generated pages, and the runnable blocks.

How a code block in ``docs/*.md`` opts in to being run (also on the site's "Writing these docs"
page): the line ``<!-- docs-test: run -->`` directly above a top-level ```` ```python ```` fence.
The runnable blocks of a page run in order in one namespace, like a notebook. When the first
```` ```text ```` fence after a runnable block (before the next ```` ```python ````) is titled
``"Output"`` or ``"JAX ..."``, the block's stdout must equal that fence's text. Blocks without
the marker are not run here (fragments, GPU-only or long examples); parity.md's and
divergences.md's blocks are run by tests/test_parity_compare.py and test_parity_divergences.py.
"""

from __future__ import annotations

import contextlib
import html
import importlib.util
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MARKER = "<!-- docs-test: run -->"
OPTIONAL = ("torch", "flax", "equinox")
HAS_MKDOCS = all(
    importlib.util.find_spec(m) is not None for m in ("mkdocs", "material", "mkdocstrings_handlers")
)
NEEDS_MKDOCS = pytest.mark.skipif(
    not HAS_MKDOCS,
    reason="mkdocs-material / mkdocstrings-python not installed: pip install -e '.[docs]'",
)

_FENCE_OPEN = re.compile(r"^```(?P<lang>\w*)(?P<info>[^\n]*)$")
_TITLE = re.compile(r'title="([^"]*)"')


# ---- the runner ----------------------------------------------------------------------------


def runnable_blocks(text: str) -> list[tuple[int, str, str | None]]:
    """(line number, code, expected stdout or None) for each block marked runnable."""
    lines = text.split("\n")
    fences: list[tuple[int, str, str, str]] = []  # (line, lang, title, body)
    i = 0
    while i < len(lines):
        m = _FENCE_OPEN.match(lines[i])
        if m and lines[i] != "```":
            j = i + 1
            while j < len(lines) and lines[j] != "```":
                j += 1
            title = _TITLE.search(m.group("info"))
            fences.append(
                (i, m.group("lang"), title.group(1) if title else "", "\n".join(lines[i + 1 : j]))
            )
            i = j + 1
        else:
            i += 1
    out = []
    for k, (line, lang, _, body) in enumerate(fences):
        if lang != "python" or line == 0 or lines[line - 1].strip() != MARKER:
            continue
        expected = None
        for _, lang2, title2, body2 in fences[k + 1 :]:
            if lang2 == "python":
                break
            if lang2 == "text" and (title2 == "Output" or title2.startswith("JAX")):
                expected = body2
                break
        out.append((line + 1, body, expected))
    return out


def run_page(path: Path) -> int:
    """Runs the page's runnable blocks; returns how many ran. AssertionError on a wrong output."""
    namespace: dict = {"__name__": "__docs__"}
    blocks = runnable_blocks(path.read_text(encoding="utf-8"))
    for line, code, expected in blocks:
        buf = io.StringIO()
        try:
            with contextlib.redirect_stdout(buf):
                exec(compile(code, f"{path}:{line}", "exec"), namespace)
        except ModuleNotFoundError as e:
            if e.name in OPTIONAL:  # an extra that is not installed: say which
                pytest.skip(f"{path.name}:{line} needs {e.name}: pip install 'funcdiff[{e.name}]'")
            raise
        if expected is not None:
            got = "\n".join(s.rstrip() for s in buf.getvalue().rstrip("\n").split("\n"))
            want = "\n".join(s.rstrip() for s in expected.rstrip("\n").split("\n"))
            if got != want:
                raise AssertionError(
                    f"{path.name}:{line}: the block printed\n{got}\nbut the page shows\n{want}"
                )
    return len(blocks)


RUNNABLE_PAGES = sorted(
    p.relative_to(DOCS).as_posix() for p in DOCS.glob("*.md") if runnable_blocks(p.read_text())
)


@pytest.mark.parametrize("page", RUNNABLE_PAGES)
def test_runnable_blocks_run_and_print_what_the_page_shows(page):
    assert run_page(DOCS / page) >= 1


def test_the_tutorial_is_runnable_and_checked():
    blocks = runnable_blocks((DOCS / "tutorial.md").read_text())
    assert len(blocks) >= 5
    assert all(expected is not None for _, _, expected in blocks)


def test_runner_fails_on_a_stale_output(tmp_path):
    page = tmp_path / "p.md"
    page.write_text(f'{MARKER}\n```python\nprint(1 + 1)\n```\n\n```text title="Output"\n3\n```\n')
    with pytest.raises(AssertionError, match="the block printed\n2\nbut the page shows\n3"):
        run_page(page)
    page.write_text(f"{MARKER}\n```python\nraise RuntimeError('boom')\n```\n")
    with pytest.raises(RuntimeError, match="boom"):
        run_page(page)


def test_unmarked_blocks_and_other_languages_are_not_run():
    text = f"```python\nraise SystemExit\n```\n{MARKER}\n```bash\nrm -rf /\n```\n"
    assert runnable_blocks(text) == []


# ---- the strict build ----------------------------------------------------------------------


def _build(site: Path, config: Path = ROOT / "mkdocs.yml") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_MKDOCS_2_WARNING": "1"}
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config)]
    return subprocess.run(
        [*cmd, "-d", str(site)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    if not HAS_MKDOCS:
        pytest.skip("mkdocs-material / mkdocstrings-python not installed: pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("site")
    proc = _build(out)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def _page(site: Path, name: str) -> str:
    return (site / name / "index.html").read_text(encoding="utf-8")


@NEEDS_MKDOCS
def test_strict_build_has_every_page(site):
    for page in ("tutorial", "gradcheck", "regression", "parity", "divergences", "optimizers"):
        assert (site / page / "index.html").is_file()
    for page in ("porting", "training_parity", "benchmarks"):
        assert (site / page / "index.html").is_file()
    assert (site / "index.html").is_file() and (site / "search" / "search_index.json").is_file()
    # the benchmarks plot and the examples the guides link to are part of the site
    assert (site / "repo" / "benchmarks" / "results" / "cpu" / "speedup.png").is_file()
    assert (site / "repo" / "examples" / "port_resnet" / "index.html").is_file()


@NEEDS_MKDOCS
def test_every_public_name_has_a_reference_entry(site):
    import funcdiff
    import funcdiff.parity
    import funcdiff.regression
    import funcdiff.seed

    pages = {
        funcdiff: "reference/funcdiff",
        funcdiff.regression: "reference/regression",
        funcdiff.parity: "reference/parity",
        funcdiff.seed: "reference/seed",
    }
    missing = []
    for mod, page in pages.items():
        text = _page(site, page)
        for name in mod.__all__:
            if name.startswith("_") or isinstance(getattr(mod, name), type(funcdiff)):
                continue  # a submodule has its own page
            if f'id="{mod.__name__}.{name}"' not in text:
                missing.append(f"{mod.__name__}.{name}")
    assert not missing, f"no reference entry for {missing}"


# Public names whose docstring has no Examples section yet (measured when the site was added).
# The list may only shrink: a new public name needs an example, and one added here is removed.
WITHOUT_EXAMPLES: frozenset[str] = frozenset()


def _public_callables() -> dict[str, object]:
    import inspect

    import funcdiff
    import funcdiff.parity
    import funcdiff.regression
    import funcdiff.seed

    out = {}
    for mod in (funcdiff, funcdiff.regression, funcdiff.parity, funcdiff.seed):
        for name in mod.__all__:
            obj = getattr(mod, name)
            if not inspect.ismodule(obj) and (inspect.isclass(obj) or callable(obj)):
                out[f"{mod.__name__}.{name}"] = obj
    return out


def test_public_names_have_examples_except_the_known_gaps():
    import inspect

    public = _public_callables()
    without = {
        name
        for name, obj in public.items()
        if not re.search(r"^Examples?:", inspect.getdoc(obj) or "", re.M)
    }
    new = sorted(without - WITHOUT_EXAMPLES)
    assert not new, f"public names without an Examples section in their docstring: {new}"
    fixed = sorted((WITHOUT_EXAMPLES - without) & public.keys())
    assert not fixed, f"these have examples now; remove them from WITHOUT_EXAMPLES: {fixed}"


@NEEDS_MKDOCS
def test_guides_link_to_the_reference(site):
    text = _page(site, "gradcheck")
    assert 'href="../reference/funcdiff/#funcdiff.check_grad"' in text
    text = _page(site, "parity")
    assert 'href="../reference/parity/#funcdiff.parity.compare"' in text


@NEEDS_MKDOCS
def test_generated_tables_match_the_code(site):
    from funcdiff.parity import catalog, divergences

    text = html.unescape(_page(site, "reference/divergences"))
    names = re.findall(r'<h2 id="([^"]+)">', text)
    assert names == [d.name for d in divergences()]
    text = html.unescape(_page(site, "reference/catalog"))
    rows = re.findall(r"<tr>\s*<td><code>([^<]+)</code></td>", text)
    assert rows == [c.name for c in catalog()]
    # the guide's checked-in copy is replaced by the live table too
    guide = html.unescape(_page(site, "divergences"))
    assert all(f"<td>{d.name}</td>" in guide for d in divergences())


@NEEDS_MKDOCS
def test_cli_page_is_the_help_text(site):
    from funcdiff._cli import build_parser

    text = html.unescape(_page(site, "reference/cli"))
    parser = build_parser()
    assert "usage: funcdiff" in text
    for cmd in ("demo", "check", "parity", "port", "regress", "bench"):
        assert f"usage: funcdiff {cmd}" in text, cmd
    assert parser.description in text


@NEEDS_MKDOCS
def test_strict_build_fails_on_a_broken_link(tmp_path):
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    docs = tmp_path / "docs"
    docs.mkdir()
    for p in DOCS.rglob("*"):
        if p.is_file() and "_hooks" not in p.parts:
            (docs / p.relative_to(DOCS)).parent.mkdir(parents=True, exist_ok=True)
            (docs / p.relative_to(DOCS)).write_bytes(p.read_bytes())
    (docs / "index.md").write_text((DOCS / "index.md").read_text() + "\n[gone](no-such-page.md)\n")
    config = config.replace("docs_dir: docs", f"docs_dir: {docs}")
    config = config.replace("docs/_hooks/", f"{DOCS}/_hooks/").replace(
        "paths: [.]", f"paths: [{ROOT}]"
    )
    (tmp_path / "mkdocs.yml").write_text(config)
    proc = _build(tmp_path / "site", tmp_path / "mkdocs.yml")
    assert proc.returncode != 0
    assert "no-such-page.md" in proc.stdout + proc.stderr
