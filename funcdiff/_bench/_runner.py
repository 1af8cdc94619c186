"""``run_bench``: runs the cases with a progress bar and writes results, table and plots."""

from __future__ import annotations

import dataclasses
import gc
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from funcdiff._bench import _output
from funcdiff._bench._context import LEVELS, Context, Record, Skip
from funcdiff._bench._machine import machine_info
from funcdiff._bench.cases import CASES, fd_accuracy
from funcdiff._config import resolve_device, scoped
from funcdiff._report import table

__all__ = ["LEVEL_ENV", "BenchReport", "run_bench"]

LEVEL_ENV = "FUNCDIFF_BENCH_LEVEL"
"""Environment knob: ``tiny`` runs every case on tiny sizes (the tests use it)."""


@dataclasses.dataclass(frozen=True)
class BenchReport:
    """The outcome of :func:`run_bench`: rows, skipped implementations and files written."""

    machine: dict[str, Any]
    records: tuple[Record, ...]
    skipped: tuple[Skip, ...]
    files: tuple[str, ...]
    notes: tuple[str, ...]
    wall_s: float

    def __str__(self) -> str:
        rows = []
        for r in self.records:
            sp = _output.speedup(r, self.records)
            rows.append(
                [
                    r.case,
                    r.label,
                    r.size,
                    _output.fmt_time(r.median_s),
                    f"{_output.fmt_time(r.min_s)}-{_output.fmt_time(r.max_s)}",
                    _output.fmt_time(r.per_epoch_s) if r.per_epoch_s is not None else "",
                    _output.fmt_time(r.compile_s),
                    f"{sp:.3g}x" if sp is not None else "",
                ]
            )
        text = table(
            ["case", "impl", "size", "median", "min-max", "per epoch", "first-median", "vs torch"],
            rows,
            title=f"funcdiff bench on {self.machine.get('device')} ({self.wall_s:.0f} s)",
        )
        lines = [text]
        lines += [f"skipped {s.case} {s.impl}: {s.note}" for s in self.skipped]
        lines += list(self.notes)
        lines += [f"wrote {f}" for f in self.files]
        return "\n".join(lines)


def check_cases(cases: Sequence[str] | None) -> list[str]:
    """The cases to run, in the suite's order.

    Raises:
      ValueError: a name is not a known case; the message lists the known ones.
    """
    if not cases:
        return list(CASES)
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise ValueError(f"Unknown benchmark case {unknown[0]!r}; known cases: {', '.join(CASES)}.")
    return [c for c in CASES if c in cases]


def prepare_out(out: str | os.PathLike[str]) -> str:
    """Creates ``out`` and proves it is writable.

    Raises:
      OSError: ``out`` cannot be created or written; the message names it.
    """
    path = os.fspath(out)
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, ".funcdiff-bench-write-test")
        with open(probe, "w", encoding="utf-8") as fh:
            fh.write("ok")
        os.remove(probe)
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise OSError(
            f"Cannot write benchmark results to `{path}`: {reason}. "
            "Pass a writable directory with --out."
        ) from None
    return path


def run_bench(
    *,
    out: str | os.PathLike[str],
    quick: bool = False,
    cases: Sequence[str] | None = None,
    device: str | None = None,
    level: str | None = None,
    progress: bool = True,
    use_torch: bool = True,
    plots: bool = True,
    command: str | None = None,
) -> BenchReport:
    """Runs the benchmark suite and writes ``results.json``, ``results.md`` and PNG plots.

    Args:
      out: directory for the results (created if needed).
      quick: small sizes and few repeats (minutes on two cores).
      cases: names from ``CASES``; None runs them all.
      device: ``"cpu"``, ``"gpu"`` or ``"tpu"``; None for JAX's default device.
      level: ``"full"``, ``"quick"`` or ``"tiny"``; overrides ``quick``. The environment
        variable ``FUNCDIFF_BENCH_LEVEL`` overrides both (the tests set ``tiny``).
      progress: show a progress bar on stderr.
      use_torch: False skips every PyTorch baseline (as if torch were not installed).
      plots: False skips the PNG plots.
      command: the command line to record in the results.

    Returns:
      A :class:`BenchReport`.

    Raises:
      ValueError: an unknown case or level.
      OSError: ``out`` is not writable.
      DeviceNotFoundError: no device of that platform.
    """
    names = check_cases(cases)
    level = os.environ.get(LEVEL_ENV) or level or ("quick" if quick else "full")
    if level not in LEVELS:
        raise ValueError(f"Expected `level` to be one of {', '.join(LEVELS)}, got {level!r}.")
    settings = LEVELS[level]
    dev = resolve_device(device)
    path = prepare_out(out)
    start = time.perf_counter()

    total = sum(CASES[n].count(settings) for n in names)
    bar = _Bar(total, enabled=progress)
    ctx = Context(settings, dev, use_torch=use_torch, on_step=bar.advance)
    notes: list[str] = []
    with bar:
        for name in names:
            bar.describe(name)
            before = len(ctx.records)
            try:
                with scoped(device=dev):
                    CASES[name].run(ctx)
            except Exception as e:  # one broken case must not lose the others' results
                msg = " ".join(f"{type(e).__name__}: {e}".split())[:300]
                ctx.skip(name, "*", f"case failed after {len(ctx.records) - before} rows: {msg}")
            gc.collect()

    wall = time.perf_counter() - start
    torch = ctx.torch
    machine = machine_info(dev, torch.get_num_threads() if torch else None, ctx.torch_device)
    run: dict[str, Any] = {
        "level": level,
        "cases": names,
        "command": command or "funcdiff bench" + (" --quick" if level == "quick" else ""),
        "wall_s": round(wall, 1),
    }
    if fd_accuracy.NAME in names and fd_accuracy.ACCURACY:  # a table and a plot of its own
        run["fd_accuracy"] = list(fd_accuracy.ACCURACY)
    files = [os.path.join(path, "results.json"), os.path.join(path, "results.md")]
    _output.write_json(files[0], machine, ctx.records, ctx.skipped, run)
    _output.write_markdown(files[1], machine, ctx.records, ctx.skipped, run)
    if plots:
        try:
            files += _output.write_plots(path, machine, ctx.records, run.get("fd_accuracy") or None)
        except ImportError:
            notes.append(
                "plots skipped: matplotlib is not installed (pip install 'funcdiff[plot]')"
            )
    else:
        notes.append("plots skipped")
    return BenchReport(
        machine, tuple(ctx.records), tuple(ctx.skipped), tuple(files), tuple(notes), wall
    )


class _Bar:
    """A rich progress bar on stderr (a no-op when disabled)."""

    def __init__(self, total: int, *, enabled: bool) -> None:
        self._progress: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[what]}"),
                console=Console(file=sys.stderr),
            )
            self._task = self._progress.add_task("bench", total=total, what="")

    def __enter__(self) -> _Bar:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def describe(self, name: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=name)

    def advance(self, what: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=1, what=what)
