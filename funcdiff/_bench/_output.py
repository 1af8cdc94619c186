"""What a benchmark run writes: ``results.json`` (the schema), ``results.md`` (tables) and
PNG plots (time against size, log-log; speed-up against the tutorial's PyTorch)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import Any

from funcdiff._bench._context import Record, Skip
from funcdiff._bench.cases import fd_accuracy

__all__ = ["BASELINES", "fmt_time", "speedup", "write_json", "write_markdown", "write_plots"]

BASELINES = {
    "seed-grad": "torch-eager",
    "regression": "torch-eager",
    "bootstrap": "torch-eager",
    "gradcheck": "torch-gradcheck",
    "port": "torch-eager",
}
"""The tutorial's PyTorch way for each case: speed-ups are measured against it."""

CASE_ORDER = ("seed-grad", "regression", "gradcheck", "bootstrap", "parity", "port")


def fmt_time(seconds: float | None) -> str:
    """``1.2 µs``, ``3.4 ms``, ``5.6 s``."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


def speedup(rec: Record, records: Sequence[Record]) -> float | None:
    """The baseline's time over ``rec``'s, same case, size and dtype (None without one)."""
    base = BASELINES.get(rec.case)
    for other in records:
        if (other.case, other.impl, other.size, other.dtype) == (
            rec.case,
            base,
            rec.size,
            rec.dtype,
        ):
            return other.unit_s / rec.unit_s if rec.unit_s > 0 else None
    return None


def write_json(
    path: str,
    machine: dict[str, Any],
    records: Sequence[Record],
    skipped: Sequence[Skip],
    run: dict[str, Any],
) -> None:
    payload = {
        "machine": machine,
        "run": run,
        "results": [r.to_dict() for r in records],
        "skipped": [s.to_dict() for s in skipped],
    }
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(payload, fh, indent=2)
        fh.write("\n")


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _cases(records: Sequence[Record], skipped: Sequence[Skip]) -> list[str]:
    seen = {r.case for r in records} | {s.case for s in skipped}
    return [c for c in CASE_ORDER if c in seen] + sorted(seen - set(CASE_ORDER))


def _find(records: Sequence[Record], case: str, impl: str, size: int) -> Record | None:
    return next(
        (r for r in records if (r.case, r.impl, r.size, r.mode) == (case, impl, size, None)), None
    )


def headline(records: Sequence[Record]) -> list[list[str]]:
    """One row per funcdiff variant and case, at the largest size that has the baseline.

    Columns: case, size, funcdiff variant, its time, the tutorial's PyTorch time, speed-up,
    torch.compile's time, the speed-up over it, the time in memory passes (the floor), the
    command.
    """
    rows = []
    for case in CASE_ORDER:
        base_impl = BASELINES.get(case)
        ours = [r for r in records if r.case == case and r.impl == "funcdiff"]
        if not ours:
            continue
        for label in dict.fromkeys(r.label for r in ours):
            mine = [r for r in ours if r.label == label]
            with_base = [r for r in mine if base_impl and _find(records, case, base_impl, r.size)]
            rec = max(with_base or mine, key=lambda r: r.size)
            base = _find(records, case, base_impl, rec.size) if base_impl else None
            comp = _find(records, case, "torch-compile", rec.size)
            floor = _find(records, case, "numpy-pass", rec.size)
            unit = " /epoch" if rec.per_epoch_s is not None else ""
            rows.append(
                [
                    case,
                    f"{rec.size:,}" + (f" {rec.dtype}" if case == "parity" else ""),
                    label,
                    fmt_time(rec.unit_s) + unit,
                    f"{fmt_time(base.unit_s)}{unit} ({base.impl})" if base else "—",
                    f"**{base.unit_s / rec.unit_s:.3g}×**" if base else "—",
                    f"{fmt_time(comp.unit_s)}{unit}" if comp else "—",
                    f"{comp.unit_s / rec.unit_s:.3g}×" if comp else "—",
                    f"{rec.unit_s / floor.unit_s:.3g} passes" if floor else "—",
                    f"`funcdiff bench --case {case}`",
                ]
            )
    return rows


HEADLINE_HEADERS = (
    "case",
    "size",
    "funcdiff",
    "time",
    "tutorial's PyTorch",
    "speed-up",
    "torch.compile",
    "speed-up over torch.compile",
    "time / one memory pass",
    "reproduce",
)


def markdown(
    machine: dict[str, Any], records: Sequence[Record], skipped: Sequence[Skip], run: dict[str, Any]
) -> str:
    """The tables of ``results.md``: one per case, plus the machine and the skipped rows."""
    out = ["# funcdiff benchmark results", ""]
    out.append(
        f"`{run.get('command', 'funcdiff bench')}` — level `{run.get('level')}`, "
        f"{run.get('wall_s', 0):.0f} s wall, {machine.get('date_utc')}."
    )
    out.append("")
    m = machine
    out.append(
        f"Machine: {m.get('cpu')}, {m.get('cores')} cores ({m.get('usable_cores')} usable), "
        f"{m.get('memory')}; JAX device `{m.get('device')}`, torch device "
        f"`{m.get('torch_device')}` ({m.get('torch_threads')} threads). Python {m.get('python')}, "
        f"jax {m.get('jax')}, jaxlib {m.get('jaxlib')}, optax {m.get('optax')}, "
        f"torch {m.get('torch')}, numpy {m.get('numpy')}."
    )
    out.append("")
    out.append(
        "Times are the median over repeats (min–max beside it) of one call; `first call − "
        "median` is compilation for jit/`torch.compile`, first-call overhead otherwise. "
        "Speed-up is the tutorial's PyTorch (`torch-eager`; `torch-gradcheck` for gradcheck) "
        "over the row, at the same size."
    )
    head = headline(records)
    if head:
        out += ["", "## Headline", "", _md_table(HEADLINE_HEADERS, head)]
    for case in _cases(records, skipped):
        rows = []
        per_epoch = any(r.per_epoch_s is not None for r in records if r.case == case)
        for r in (r for r in records if r.case == case):
            sp = speedup(r, records)
            row = [
                r.label,
                f"{r.size:,}",
                r.dtype or "",
                fmt_time(r.median_s),
                f"{fmt_time(r.min_s)} – {fmt_time(r.max_s)}",
                fmt_time(r.compile_s),
                str(r.repeats),
            ]
            if per_epoch:
                row.insert(4, f"{r.epochs} × {fmt_time(r.per_epoch_s)}")
            note = r.note or ""
            if r.aot_compile_s is not None:
                aot = f"AOT lower+compile {fmt_time(r.aot_compile_s)}"
                note = f"{aot}; {note}" if note else aot
            row += [f"{sp:.3g}×" if sp is not None else "", note]
            rows.append(row)
        headers = [
            "impl",
            "size",
            "dtype",
            "median",
            "min – max",
            "first call − median",
            "repeats",
            "speed-up",
            "note",
        ]
        if per_epoch:
            headers.insert(4, "epochs × per epoch")
        out += ["", f"## {case}", ""]
        if rows:
            out.append(_md_table(headers, rows))
        for s in (s for s in skipped if s.case == case):
            out.append(f"\n- skipped `{s.impl}`: {s.note}")
        if case == fd_accuracy.NAME and run.get("fd_accuracy"):
            out += [
                "",
                "Accuracy over the suite (float64): max elementwise relative error against "
                "`jax.grad`, function evaluations per gradient in brackets; `(!)` where "
                "funcdiff's error estimate did not bound the true error.",
                "",
                fd_accuracy.accuracy_markdown(run["fd_accuracy"]),
            ]
    return "\n".join(out) + "\n"


def write_markdown(
    path: str,
    machine: dict[str, Any],
    records: Sequence[Record],
    skipped: Sequence[Skip],
    run: dict[str, Any],
) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(markdown(machine, records, skipped, run))


def write_plots(
    directory: str,
    machine: dict[str, Any],
    records: Sequence[Record],
    accuracy: list[dict[str, Any]] | None = None,
) -> list[str]:
    """Writes ``time_vs_size.png`` and ``speedup.png`` (and ``fd_accuracy.png`` given the
    ``accuracy`` rows of case fd-accuracy); returns the paths written.

    Raises:
      ImportError: matplotlib is not installed.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # no pyplot global state
    from matplotlib.figure import Figure

    platform = machine.get("device_platform")
    kind = machine.get("cpu") if platform == "cpu" else machine.get("device_kind")
    device = f"{platform}: {kind}"
    colors = {
        "funcdiff": "tab:blue",
        "jax-jit": "tab:green",
        "funcdiff[gram]": "navy",
        "funcdiff[full]": "tab:blue",
        "funcdiff[directional]": "navy",
        "jax-nojit": "tab:cyan",
        "jax-check-grads": "tab:cyan",
        "torch-eager": "tab:red",
        "torch-gradcheck": "tab:red",
        "torch-compile": "tab:purple",
        "torch-gradcheck-fast": "tab:purple",
        "torch-func": "tab:orange",
        "numpy-pass": "tab:gray",
    }

    def color(label: str) -> str:
        return colors.get(label.split(" ")[0], "black")

    cases = [c for c in _cases(records, []) if any(r.case == c for r in records)]
    written = []

    fig = Figure(figsize=(5 * len(cases), 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    for i, case in enumerate(cases):
        ax = fig.add_subplot(1, len(cases), i + 1)
        rows = [r for r in records if r.case == case]
        labels = list(
            dict.fromkeys(f"{r.label} {r.dtype}" if case == "parity" else r.label for r in rows)
        )
        for label in labels:
            pts = sorted(
                (r.size, r.unit_s)
                for r in rows
                if (f"{r.label} {r.dtype}" if case == "parity" else r.label) == label
            )
            ax.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                marker="o",
                label=label,
                color=color(label),
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        unit = "per epoch" if any(r.per_epoch_s is not None for r in rows) else "per call"
        ax.set_title(case)
        ax.set_xlabel(
            {
                "seed-grad": "input dimension",
                "regression": "n (points)",
                "gradcheck": "d (inputs)",
                "bootstrap": "resamples",
                "parity": "catalog entries",
                "port": "batch size",
            }.get(case, "size")
        )
        ax.set_ylabel(f"seconds {unit} (median)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"funcdiff bench — time against size ({device})")
    path = os.path.join(directory, "time_vs_size.png")
    fig.savefig(path, dpi=110)
    written.append(path)

    with_base = [c for c in cases if c in BASELINES]
    if with_base:
        fig = Figure(figsize=(5 * len(with_base), 4.2), layout="constrained")
        FigureCanvasAgg(fig)
        for i, case in enumerate(with_base):
            ax = fig.add_subplot(1, len(with_base), i + 1)
            rows = [r for r in records if r.case == case and r.impl != BASELINES[case]]
            sizes = sorted({r.size for r in rows})
            labels = list(dict.fromkeys(r.label for r in rows))
            width = 0.8 / max(1, len(labels))
            for j, label in enumerate(labels):
                xs, ys = [], []
                for k, size in enumerate(sizes):
                    rec = next((r for r in rows if r.label == label and r.size == size), None)
                    sp = speedup(rec, records) if rec is not None else None
                    if sp is not None:
                        xs.append(k + (j - (len(labels) - 1) / 2) * width)
                        ys.append(sp)
                # Bars grow from 1x (no change) up for faster, down for slower.
                ax.bar(
                    xs, [y - 1 for y in ys], bottom=1, width=width, label=label, color=color(label)
                )
            ax.axhline(1.0, color="black", linewidth=0.8)
            ax.set_yscale("log")
            ax.set_xticks(range(len(sizes)), [f"{s:,}" for s in sizes])
            ax.set_title(f"{case}: speed-up over {BASELINES[case]}")
            ax.set_ylabel("× faster (log)")
            ax.grid(True, axis="y", which="both", alpha=0.3)
            ax.legend(fontsize=7)
        fig.suptitle(f"funcdiff bench — speed-up over the tutorial's PyTorch ({device})")
        path = os.path.join(directory, "speedup.png")
        fig.savefig(path, dpi=110)
        written.append(path)
    if accuracy:
        fig = Figure(figsize=(14, 4.6), layout="constrained")
        FigureCanvasAgg(fig)
        fd_accuracy.plot_accuracy(fig, accuracy, list(records))
        fig.suptitle(f"fd-accuracy: finite differences against numdifftools and scipy ({device})")
        path = os.path.join(directory, "fd_accuracy.png")
        fig.savefig(path, dpi=110)
        written.append(path)
    return written


def rerender(directory: str, *, plots: bool = True) -> list[str]:
    """Rewrites ``results.md`` (and the plots) of ``directory`` from its ``results.json``.

    ``python -m funcdiff._bench.render DIR`` calls this after a change to the table or plots.
    """
    with open(os.path.join(directory, "results.json"), encoding="utf-8") as fh:
        payload = json.load(fh)
    records = [Record(**r) for r in payload["results"]]
    skipped = [Skip(**s) for s in payload.get("skipped", [])]
    path = os.path.join(directory, "results.md")
    write_markdown(path, payload["machine"], records, skipped, payload.get("run", {}))
    written = [path]
    if plots:
        accuracy = payload.get("run", {}).get("fd_accuracy") or None
        written += write_plots(directory, payload["machine"], records, accuracy)
    return written
