"""The catalog runner: every reference case, in each dtype, against PyTorch or its golden file.

Each case gets its own deterministic inputs (``make_args`` with a NumPy generator seeded from
the case name, so float32 and float64 see the same draws) and one :func:`compare`. Outcomes:

* ``passed``: every row agrees;
* ``expected_divergence``: some row disagrees, and the case names a registered divergence;
* ``failed``: some row disagrees and nothing explains it (the worst row is kept);
* ``error``: a twin (or the golden lookup) raised; the exception is kept, the run goes on.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

from funcdiff._report import table
from funcdiff._validation import (
    as_prng_key,
    check_choice,
    check_optional_callable,
    check_seed,
    user_function,
)
from funcdiff.parity import _golden
from funcdiff.parity import _measure as M
from funcdiff.parity._compare import ParityResult, ParityRow, _run
from funcdiff.parity._golden import GoldenError, GoldenFile
from funcdiff.parity._torch import require_torch, torch_available

__all__ = [
    "DTYPES",
    "CaseOutcome",
    "CatalogReport",
    "regenerate_golden",
    "run_catalog",
    "select_cases",
]

DTYPES = ("float32", "float64")
Status = Literal["passed", "expected_divergence", "failed", "error"]
Reference = Literal["auto", "torch", "golden"]


class CaseOutcome(NamedTuple):
    """One case in one dtype.

    Attributes:
      name: the case name (``"group/op"``).
      dtype: ``"float32"`` or ``"float64"``.
      status: ``passed``, ``expected_divergence``, ``failed`` or ``error``.
      result: the :class:`ParityResult` (None for ``error``).
      divergence: the registry entry the case names, if any.
      error: ``"ExceptionType: message"`` for ``error``.

    Examples:
      >>> from funcdiff import parity
      >>> report = parity.run_catalog(pattern="elementwise/tanh", dtypes=("float64",))
      >>> outcome = report.outcomes[0]
      >>> outcome.name, outcome.dtype, outcome.status, outcome.worst
      ('elementwise/tanh', 'float64', 'passed', None)
    """

    name: str
    dtype: str
    status: Status
    result: ParityResult | None = None
    divergence: str | None = None
    error: str | None = None

    @property
    def worst(self) -> ParityRow | None:
        """The failing row furthest beyond tolerance (None when passed or error)."""
        return None if self.result is None else self.result.worst

    def to_dict(self) -> dict[str, Any]:
        w = self.worst
        return {
            "name": self.name,
            "dtype": self.dtype,
            "status": self.status,
            "divergence": self.divergence,
            "error": self.error,
            "worst": None if w is None else w.to_dict(),
            "notes": [] if self.result is None else list(self.result.notes),
            # how close the case came to its tolerance (1.0 = at it): the measurement behind
            # the default tolerances in docs/parity.md
            "max_excess": None if self.result is None else self.result.max_excess,
        }


@dataclasses.dataclass(frozen=True)
class CatalogReport:
    """All outcomes of :func:`run_catalog`.

    Attributes:
      outcomes: one :class:`CaseOutcome` per case and dtype, in catalog order.
      reference: ``"torch X"`` (live) or ``"golden file (torch X)"``.
      dtypes: the dtypes that were run.

    Examples:
      >>> from funcdiff import parity
      >>> report = parity.run_catalog(pattern="elementwise/tanh", dtypes=("float64",))
      >>> report.ok, report.count("passed"), report.problems
      (True, 1, ())
      >>> print(report.summary_table())  # doctest: +NORMALIZE_WHITESPACE +ELLIPSIS
      parity catalog OK against torch ...
      dtype    cases  passed  expected divergences  failed  errors
      -------  -----  ------  --------------------  ------  ------
      float64  1      1       0                     0       0
      all      1      1       0                     0       0
    """

    outcomes: tuple[CaseOutcome, ...]
    reference: str
    dtypes: tuple[str, ...] = DTYPES

    @property
    def ok(self) -> bool:
        """True when every case passed or diverged as registered."""
        return all(o.status in ("passed", "expected_divergence") for o in self.outcomes)

    def count(self, status: Status, dtype: str | None = None) -> int:
        return sum(o.status == status and dtype in (None, o.dtype) for o in self.outcomes)

    @property
    def problems(self) -> tuple[CaseOutcome, ...]:
        """Failed and errored outcomes."""
        return tuple(o for o in self.outcomes if o.status in ("failed", "error"))

    def summary_table(self) -> str:
        rows = []
        for d in (*self.dtypes, None):
            n = sum(d in (None, o.dtype) for o in self.outcomes)
            rows.append(
                (
                    d or "all",
                    n,
                    self.count("passed", d),
                    self.count("expected_divergence", d),
                    self.count("failed", d),
                    self.count("error", d),
                )
            )
        status = "OK" if self.ok else "FAILED"
        return table(
            ("dtype", "cases", "passed", "expected divergences", "failed", "errors"),
            rows,
            title=f"parity catalog {status} against {self.reference}",
        )

    def problems_table(self) -> str:
        rows: list[tuple[Any, ...]] = []
        for o in self.problems:
            w = o.worst
            if w is None:
                rows.append((o.name, o.dtype, o.status, "-", "-", None, None, None, o.error or ""))
            else:
                rows.append(
                    (
                        o.name,
                        o.dtype,
                        o.status,
                        w.quantity,
                        w.path,
                        w.max_abs_error,
                        w.jax_value,
                        w.torch_value,
                        w.note,
                    )
                )
        return table(
            (
                "case",
                "dtype",
                "status",
                "quantity",
                "path",
                "max abs err",
                "jax",
                "torch",
                "note / error",
            ),
            rows,
            title="failures (worst row each)",
        )

    def __str__(self) -> str:
        text = self.summary_table()
        return text + ("\n\n" + self.problems_table() if self.problems else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "reference": self.reference,
            "dtypes": list(self.dtypes),
            "counts": {
                s: self.count(s) for s in ("passed", "expected_divergence", "failed", "error")
            },
            "cases": len(self.outcomes),
            "outcomes": [o.to_dict() for o in self.outcomes],
        }


def case_seed(name: str) -> int:
    """The NumPy seed of a case's inputs: stable across runs, platforms and dtypes."""
    return zlib.crc32(name.encode())


def case_args(case: Any, dtype: str) -> tuple[Any, ...]:
    args = case.make_args(np.random.default_rng(case_seed(case.name)), np.dtype(dtype))
    return tuple(args) if isinstance(args, tuple | list) else (args,)


def select_cases(cases: Sequence[Any], pattern: str | None) -> tuple[Any, ...]:
    """Cases whose name matches ``pattern``: a glob (``linalg/*``) or else a substring."""
    if not pattern:
        return tuple(cases)
    glob = any(ch in pattern for ch in "*?[")
    return tuple(
        c for c in cases if fnmatch.fnmatchcase(c.name, pattern) or (not glob and pattern in c.name)
    )


def _load_catalog() -> tuple[Any, ...]:
    try:
        from funcdiff.parity._catalog import catalog  # type: ignore[import-not-found,unused-ignore]
    except ModuleNotFoundError as e:
        if e.name != "funcdiff.parity._catalog":
            raise
        raise ImportError(
            "the reference catalog (funcdiff.parity._catalog) is not installed"
        ) from None
    return tuple(catalog())


def _check_dtypes(dtypes: Sequence[str]) -> tuple[str, ...]:
    if isinstance(dtypes, str):
        dtypes = (dtypes,)
    try:
        out = tuple(str(d) if isinstance(d, str) else d for d in dtypes)
    except TypeError:
        raise TypeError(
            f"Expected `dtypes` to be a sequence of names from {DTYPES}, got "
            f"{type(dtypes).__name__}."
        ) from None
    bad = [d for d in out if not isinstance(d, str) or d not in DTYPES]
    if bad or not out:
        raise ValueError(f"Expected `dtypes` from {DTYPES}, got {list(out)}.")
    return out


_CASE_FIELDS = ("jax_fn", "torch_fn", "make_args")


def _check_cases(cases: Any) -> tuple[Any, ...]:
    """``cases`` as a tuple of objects with the ``Case`` fields, or a TypeError naming one."""
    if isinstance(cases, str | bytes) or not isinstance(cases, Sequence | tuple | list):
        raise TypeError(
            f"Expected `cases` to be a sequence of funcdiff.parity.Case (or None for the "
            f"catalog), got {type(cases).__name__}."
        )
    for i, c in enumerate(cases):
        if not isinstance(getattr(c, "name", None), str) or not all(
            callable(getattr(c, f, None)) for f in _CASE_FIELDS
        ):
            raise TypeError(
                f"Expected `cases[{i}]` to be a funcdiff.parity.Case (a name and callable "
                f"jax_fn, torch_fn, make_args), got {type(c).__name__}."
            )
    return tuple(cases)


def _check_pattern(pattern: Any) -> str | None:
    if pattern is not None and not isinstance(pattern, str):
        raise TypeError(
            f"Expected `pattern` to be a glob or substring (str) or None, got "
            f"{type(pattern).__name__}."
        )
    return pattern


def _check_key(key: Any) -> Any:
    """None, an int seed in the signed 64-bit range (as everywhere in funcdiff; ``compare``
    seeds NumPy with it, a negative one as its two's complement) or a PRNG key."""
    if key is None:
        return None
    if isinstance(key, int | np.integer) and not isinstance(key, bool):
        return check_seed("key", key)
    return as_prng_key("key", key)


def _check_path(name: str, path: Any) -> Path | None:
    if path is None:
        return None
    if not isinstance(path, str | Path):
        raise TypeError(
            f"Expected `{name}` to be a str or pathlib.Path, got {type(path).__name__}."
        )
    if Path(path).is_dir():
        raise GoldenError(f"Expected `{name}` to be a golden file, got the directory {path}.")
    return Path(path)


def _report_progress(progress: Any, outcome: CaseOutcome, done: int, total: int) -> None:
    if progress is not None:
        with user_function("progress"):
            progress(outcome, done, total)


def _outcome(case: Any, dtype: str, result: ParityResult) -> CaseOutcome:
    div = getattr(case, "divergence", None)
    if result.ok:
        return CaseOutcome(case.name, dtype, "passed", result, div)
    return CaseOutcome(case.name, dtype, "expected_divergence" if div else "failed", result, div)


def run_catalog(
    cases: Sequence[Any] | None = None,
    *,
    dtypes: Sequence[str] = DTYPES,
    pattern: str | None = None,
    reference: Reference = "auto",
    golden_path: str | Path | None = None,
    key: Any = None,
    progress: Callable[[CaseOutcome, int, int], None] | None = None,
) -> CatalogReport:
    """Runs every case in every dtype through :func:`compare` and classifies the outcomes.

    Args:
      cases: objects with the ``Case`` fields (default: ``funcdiff.parity.catalog()``).
      dtypes: any of ``"float32"``, ``"float64"``.
      pattern: keep only cases matching this glob or substring.
      reference: ``"torch"`` (live), ``"golden"`` (the stored file) or ``"auto"`` (live when
        PyTorch is installed, the golden file otherwise).
      golden_path: the golden file (default ``funcdiff/parity/data/golden.json``).
      key: PRNG key (or int) for cotangents and tangents; golden files are made with the
        default, so keep it None with them.
      progress: called as ``progress(outcome, done, total)`` after each case.

    Returns:
      A :class:`CatalogReport`; ``ok`` unless a case failed or raised.

    Raises:
      TypeError: ``cases`` is not a sequence of cases (the message names the first bad one),
        ``pattern`` not a string, ``progress`` not callable, bad ``key`` or ``golden_path``.
      ValueError: unknown dtype or reference, or no case matches ``pattern``.
      GoldenError: ``reference="golden"`` and the file is missing, a directory or unreadable.
      UserFunctionError: ``progress`` raised.

    Examples:
      >>> from funcdiff import parity
      >>> report = parity.run_catalog(pattern="elementwise/abs*", dtypes=("float32",))
      >>> report.ok
      True
      >>> for o in report.outcomes:
      ...     print(o.name, o.status, o.divergence)
      elementwise/abs passed None
      elementwise/abs_at_zero expected_divergence abs-at-zero
    """
    dts = _check_dtypes(dtypes)
    reference = check_choice("reference", reference, ("auto", "torch", "golden"))  # type: ignore[assignment]
    pattern = _check_pattern(pattern)
    key = _check_key(key)
    golden_path = _check_path("golden_path", golden_path)
    check_optional_callable("progress", progress)
    chosen = select_cases(_load_catalog() if cases is None else _check_cases(cases), pattern)
    if not chosen:
        raise ValueError(f"No catalog case matches `pattern` {pattern!r}.")
    live = reference == "torch" or (reference == "auto" and torch_available())
    golden = None if live else GoldenFile.load(golden_path or _golden.GOLDEN_PATH)
    torch = require_torch() if live else None
    ref = f"torch {torch.__version__}" if torch else f"golden file (torch {golden.torch_version})"  # type: ignore[union-attr]
    total, outcomes = len(chosen) * len(dts), []
    for dtype in dts:
        for case in chosen:
            outcome = _run_case(case, dtype, torch, golden, key, ref)
            outcomes.append(outcome)
            _report_progress(progress, outcome, len(outcomes), total)
    return CatalogReport(tuple(outcomes), ref, dts)


def _run_case(
    case: Any,
    dtype: str,
    torch: Any,
    golden: GoldenFile | None,
    key: Any,
    ref: str,
    record: GoldenFile | None = None,
) -> CaseOutcome:
    div = getattr(case, "divergence", None)
    try:
        args = case_args(case, dtype)

        def torch_side(prep: M.Prepared, cots: Any, scalar: bool) -> M.Measurement:
            if golden is not None:
                return golden.measurement(case.name, dtype, prep)
            try:
                with M.torch_precision(torch, float64=prep.x64):
                    m = M.measure_torch(case.torch_fn, prep, cots, scalar)
            except Exception as e:
                if record is not None:
                    record.record_error(case.name, dtype, f"{type(e).__name__}: {e}"[:300])
                raise
            if record is not None:
                record.record(case.name, dtype, prep, m)
            return m

        rows, notes, run_dtype = _run(
            case.jax_fn,
            torch_side,
            args,
            rtol=getattr(case, "rtol", None),
            atol=getattr(case, "atol", None),
            key=key,
        )
    except Exception as e:  # a twin that raises is an outcome, not a crash
        msg = " ".join(str(e).split())
        return CaseOutcome(case.name, dtype, "error", None, div, f"{type(e).__name__}: {msg[:300]}")
    return _outcome(case, dtype, ParityResult(tuple(rows), tuple(notes), run_dtype, ref))


def regenerate_golden(
    cases: Sequence[Any] | None = None,
    *,
    dtypes: Sequence[str] = DTYPES,
    pattern: str | None = None,
    path: str | Path | None = None,
    progress: Callable[[CaseOutcome, int, int], None] | None = None,
) -> tuple[Path, CatalogReport]:
    """Runs the catalog against live PyTorch and writes its measurements to the golden file.

    Entries of cases not selected (by ``pattern``/``dtypes``) are kept from the existing file.

    Returns:
      The path written and the report of the live run.

    Raises:
      ImportError: PyTorch is not installed.
      TypeError, ValueError, GoldenError, UserFunctionError: as :func:`run_catalog` (a
        directory as ``path`` is a GoldenError).

    Examples:
      >>> import pathlib, tempfile
      >>> from funcdiff import parity
      >>> out = pathlib.Path(tempfile.mkdtemp()) / "golden.json"
      >>> path, report = parity.regenerate_golden(
      ...     pattern="elementwise/tanh", dtypes=("float32",), path=out)
      >>> path == out, report.ok
      (True, True)
      >>> parity.run_catalog(pattern="elementwise/tanh", dtypes=("float32",),
      ...                    reference="golden", golden_path=out).ok
      True
    """
    torch = require_torch()
    dts = _check_dtypes(dtypes)
    pattern = _check_pattern(pattern)
    path = _check_path("path", path)
    check_optional_callable("progress", progress)
    chosen = select_cases(_load_catalog() if cases is None else _check_cases(cases), pattern)
    if not chosen:
        raise ValueError(f"No catalog case matches `pattern` {pattern!r}.")
    path = Path(path or _golden.GOLDEN_PATH)
    try:
        old = GoldenFile.load(path).entries
    except LookupError:
        old = {}
    gf = GoldenFile(old, torch_version=torch.__version__, path=path)
    ref = f"torch {torch.__version__}"
    total, outcomes = len(chosen) * len(dts), []
    for dtype in dts:
        for case in chosen:
            outcomes.append(_run_case(case, dtype, torch, None, None, ref, record=gf))
            _report_progress(progress, outcomes[-1], len(outcomes), total)
    return gf.save(), CatalogReport(tuple(outcomes), ref, dts)
