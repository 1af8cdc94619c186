"""The Examples sections of the public names' docstrings run, and print what they show.

Every object in the ``__all__`` of ``funcdiff``, ``funcdiff.regression``, ``funcdiff.parity``
and ``funcdiff.seed`` (and those modules' own docstrings) is collected with
:class:`doctest.DocTestFinder` and run with :class:`doctest.DocTestRunner` in the namespace of
the module that defines it, as ``python -m doctest`` would. NORMALIZE_WHITESPACE and ELLIPSIS
are on, as a docstring may mark a varying part with ``...``.
"""

from __future__ import annotations

import doctest
import importlib.util
import inspect
import io

import jax
import pytest

PUBLIC_MODULES = ("funcdiff", "funcdiff.regression", "funcdiff.parity", "funcdiff.seed")
FLAGS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS

# Objects whose examples are not run here, with the reason (empty: every example runs).
SKIP: dict[str, str] = {}


def _needs(test: doctest.DocTest) -> str | None:
    """The optional framework a doctest imports that is not installed, or None."""
    for extra in ("torch", "flax", "equinox"):
        if any(extra in ex.source for ex in test.examples) and not importlib.util.find_spec(extra):
            return extra
    return None


def _collect() -> dict[str, doctest.DocTest]:
    finder = doctest.DocTestFinder(recurse=False)
    tests: dict[str, doctest.DocTest] = {}
    for modname in PUBLIC_MODULES:
        mod = importlib.import_module(modname)
        for test in finder.find(mod, modname):
            if test.examples:
                tests[modname] = test
        for name in mod.__all__:
            obj = getattr(mod, name)
            if inspect.ismodule(obj) or not (inspect.isclass(obj) or callable(obj)):
                continue
            home = inspect.getmodule(obj)
            key = f"{modname}.{name}"
            # recurse=False: a class's own docstring, not its methods'
            for test in finder.find(obj, key, module=home, globs=vars(home).copy()):
                if test.examples and test.docstring is not None:
                    tests.setdefault(key, test)
    return tests


TESTS = _collect()


def _run(test: doctest.DocTest) -> tuple[int, str]:
    out = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    runner.run(test, out=out.write, clear_globs=True)
    return runner.failures, out.getvalue()


@pytest.mark.parametrize("name", sorted(TESTS))
def test_docstring_examples_run(name):
    if name in SKIP:
        pytest.skip(SKIP[name])
    test = TESTS[name]
    extra = _needs(test)
    if extra:
        pytest.skip(f"{name}'s example needs {extra}: pip install 'funcdiff[{extra}]'")
    x64 = jax.config.jax_enable_x64
    failures, report = _run(test)
    assert jax.config.jax_enable_x64 == x64
    for extra in ("torch", "flax", "equinox"):  # an example reaching torch without naming it
        if failures and f"funcdiff[{extra}]" in report and not importlib.util.find_spec(extra):
            pytest.skip(f"{name}'s example needs {extra}: pip install 'funcdiff[{extra}]'")
    assert failures == 0, f"{name}: docstring example failed\n{report}"


def test_the_examples_are_collected():
    # the modules' own docstrings and one name of each kind, so a broken finder cannot pass
    for name in (
        "funcdiff.seed",
        "funcdiff.check_grad",
        "funcdiff.parity.abs_like_torch",
        "funcdiff.seed.f",
        "funcdiff.scoped",
    ):
        assert name in TESTS, name
    assert len(TESTS) >= 75


def test_every_examples_section_has_doctest_lines():
    # an "Examples:" section written as prose or a code block would not be run here
    import re

    for modname in PUBLIC_MODULES:
        mod = importlib.import_module(modname)
        for name in mod.__all__:
            obj = getattr(mod, name)
            doc = "" if inspect.ismodule(obj) else inspect.getdoc(obj) or ""
            if re.search(r"^Examples?:", doc, re.M):
                assert f"{modname}.{name}" in TESTS, f"{modname}.{name}: Examples without >>>"


def test_a_wrong_output_fails():
    def planted():
        """Doc.

        Examples:
          >>> 1 + 1
          3
        """

    test = doctest.DocTestFinder().find(planted, "planted", globs={})[0]
    failures, report = _run(test)
    assert failures == 1 and "Expected:\n    3\nGot:\n    2" in report
