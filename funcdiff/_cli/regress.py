"""``funcdiff regress``: fit a linear model to a CSV file (or the tutorial's data) with optax.

A thin shell over :mod:`funcdiff.regression`: read and check the data, ``fit`` (in chunks with
a progress bar when asked), ``ols`` beside it, optionally ``bootstrap``, then a table, JSON or
a plot. User mistakes (a missing column, an unreadable file, a value that is not a number, NaN
or inf, or beyond float32 without ``--x64``) are one line on stderr and exit 2; a diverged fit
prints its status and exits 1.
"""

from __future__ import annotations

import argparse
import csv
import functools
import sys
from pathlib import Path
from typing import Any

import numpy as np

from funcdiff._cli._common import (
    EXIT_FAILED,
    INT32_MAX,
    SEED_MAX,
    SEED_MIN,
    CLIError,
    bounded_int,
    emit_json,
    fail,
    positive_float,
    positive_int,
    seed_int,
)

_OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
_PROGRESS_WORK = 20_000_000  # epochs * rows above which --progress auto shows a bar


def register(sub: Any) -> None:
    p = sub.add_parser(
        "regress",
        help="fit y = b0 + x·b with an optax optimizer (CSV or generated data)",
        description=(
            "Fit a linear model by an optax optimizer in one jitted lax.scan, beside the "
            "closed-form least squares. Data from --csv, or the tutorial's y = 2 + x + noise "
            "with --n points."
        ),
    )
    data = p.add_argument_group("data")
    data.add_argument("--csv", metavar="FILE", help="CSV file with a header row")
    data.add_argument("--x", metavar="COL[,COL...]", help="input column(s) of the CSV")
    data.add_argument("--y", metavar="COL", help="target column of the CSV")
    data.add_argument(
        "--n",
        type=bounded_int(INT32_MAX, "rows are indexed with int32"),
        default=None,
        help="generate the tutorial's data with N points (default 100)",
    )
    data.add_argument("--seed", type=seed_int, default=0, help="PRNG seed (default 0)")
    opt = p.add_argument_group("training")
    opt.add_argument(
        "--optimizer",
        choices=_OPTIMIZERS,
        default="sgd",
        help="optax optimizer (default sgd; momentum is sgd with momentum 0.9)",
    )
    opt.add_argument("--lr", type=positive_float, default=0.1, help="learning rate (default 0.1)")
    opt.add_argument(
        "--epochs",
        type=bounded_int(INT32_MAX, "the epoch loop counts in int32"),
        default=500,
        help="epochs (default 500)",
    )
    opt.add_argument(
        "--batch-size", type=positive_int, default=None, help="minibatch size (default: full batch)"
    )
    opt.add_argument(
        "--log-every",
        type=positive_int,
        default=100,
        help="log the loss and gradient every K epochs (default 100)",
    )
    opt.add_argument(
        "--method",
        choices=("autodiff", "gram"),
        default="autodiff",
        help="gradient by jax.grad (default) or by sufficient statistics",
    )
    opt.add_argument(
        "--bootstrap",
        type=bounded_int(1_000_000, "each resample is a fit held in memory"),
        default=None,
        metavar="N",
        help="also fit N bootstrap resamples and report intervals",
    )
    opt.add_argument(
        "--level", type=float, default=0.95, help="bootstrap interval level (default 0.95)"
    )
    opt.add_argument("--x64", action="store_true", help="run in float64")
    opt.add_argument(
        "--device",
        choices=("cpu", "gpu", "tpu"),
        default=None,
        help="device platform (default: JAX's default device)",
    )
    out = p.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print one JSON object")
    out.add_argument(
        "--plot",
        metavar="OUT.png",
        default=None,
        help="save data, fitted line and loss curve (needs matplotlib)",
    )
    out.add_argument(
        "--progress",
        choices=("auto", "on", "off"),
        default="auto",
        help="progress bar (auto: on a terminal, for long runs)",
    )
    p.set_defaults(func=run)  # fmt: skip


def _key(seed: int, offset: int = 0) -> Any:
    """``jax.random.key(seed + offset)``, the sum wrapped into the 64-bit seed range."""
    import jax

    span = SEED_MAX - SEED_MIN + 1
    return jax.random.key((seed + offset - SEED_MIN) % span + SEED_MIN)


def read_csv(
    path: str, x_cols: list[str], y_col: str, *, limit: float = float("inf")
) -> tuple[np.ndarray, np.ndarray]:
    """Reads the named columns as float64; every mistake is a one-line CLIError.

    Refused: a missing column, a cell that is not a number, NaN or inf, and a value whose
    magnitude is above ``limit`` (float32's largest without ``--x64``).
    """
    try:
        with Path(path).open(newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise CLIError(f"--csv {path}: the file is empty (expected a header row)")
            header = [h.strip() for h in header]
            missing = [c for c in [*x_cols, y_col] if c not in header]
            if missing:
                raise CLIError(
                    f"--csv {path}: no column {', '.join(map(repr, missing))}; "
                    f"columns are {', '.join(header)}"
                )
            idx = [header.index(c) for c in [*x_cols, y_col]]
            rows = []
            for line_no, row in enumerate(reader, start=2):
                if not row or all(not cell.strip() for cell in row):
                    continue
                try:
                    values = [float(row[i]) for i in idx]
                except (ValueError, IndexError):
                    raise CLIError(
                        f"--csv {path}, line {line_no}: expected numbers in columns "
                        f"{', '.join([*x_cols, y_col])}, got {row!r}"
                    ) from None
                for col, v in zip([*x_cols, y_col], values, strict=True):
                    if not np.isfinite(v):
                        raise CLIError(
                            f"--csv {path}, line {line_no}: expected a finite number in column "
                            f"{col!r}, got {v}; drop or impute that row"
                        )
                    if abs(v) > limit:
                        raise CLIError(
                            f"--csv {path}, line {line_no}: {v:g} in column {col!r} does not "
                            f"fit in float32 (largest {limit:.4g}); pass --x64 or rescale it"
                        )
                rows.append(values)
    except OSError as e:
        raise CLIError(f"--csv {path}: cannot read the file ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise CLIError(f"--csv {path}: not a text CSV file") from None
    except csv.Error as e:
        raise CLIError(f"--csv {path}: malformed CSV ({e})") from None
    if not rows:
        raise CLIError(f"--csv {path}: no data rows after the header")
    arr = np.asarray(rows, dtype=np.float64)
    x = arr[:, 0] if len(x_cols) == 1 else arr[:, :-1]
    return x, arr[:, -1]


@functools.lru_cache(maxsize=16)
def _optimizer(name: str, lr: float) -> Any:
    """One optimizer object per (name, lr), so repeated runs in a process reuse the compiled fit."""
    import optax

    return {
        "sgd": lambda: optax.sgd(lr),
        "momentum": lambda: optax.sgd(lr, momentum=0.9),
        "adam": lambda: optax.adam(lr),
        "adamw": lambda: optax.adamw(lr),
    }[name]()


def _floats(v: Any) -> float | list[float]:
    a = np.asarray(v, dtype=np.float64)
    return float(a) if a.ndim == 0 else [float(t) for t in a.ravel()]


def _load(args: argparse.Namespace) -> tuple[Any, Any, list[str]]:
    x: Any
    y: Any
    if args.csv is not None:
        if args.n is not None:
            raise CLIError("--csv and --n are exclusive: read a file or generate data")
        if not args.x or not args.y:
            raise CLIError("--csv needs --x COL[,COL...] and --y COL")
        x_cols = [c.strip() for c in args.x.split(",") if c.strip()]
        if not x_cols:
            raise CLIError(f"--x: expected column names separated by commas, got {args.x!r}")
        limit = float("inf") if args.x64 else float(np.finfo(np.float32).max)
        x, y = read_csv(args.csv, x_cols, args.y.strip(), limit=limit)
        return x, y, x_cols
    if args.x or args.y:
        raise CLIError("--x and --y name columns of --csv FILE; pass --csv too")

    from funcdiff import seed

    x, y = seed.regression_data(_key(args.seed), args.n or 100)
    return x, y, ["x"]


def _progress_wanted(args: argparse.Namespace, n: int) -> bool:
    if args.progress == "on":
        return True
    if args.progress == "off" or args.json:
        return False
    return sys.stderr.isatty() and args.epochs * n >= _PROGRESS_WORK


def _fit(args: argparse.Namespace, x: Any, y: Any, optimizer: Any) -> Any:
    from funcdiff.regression import fit
    from funcdiff.regression._fit import fit_in_chunks

    kwargs: dict[str, Any] = {
        "optimizer": optimizer,
        "epochs": args.epochs,
        "log_every": args.log_every,
        "method": args.method,
    }
    if args.batch_size is not None:
        kwargs.update(batch_size=args.batch_size, key=_key(args.seed, 1))
    if not _progress_wanted(args, len(y)):
        return fit(x, y, throw=False, **kwargs)
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("fit"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} epochs  loss {task.fields[loss]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("fit", total=args.epochs, loss="-")
        return fit_in_chunks(
            x, y, throw=False, chunk_epochs=max(1, args.epochs // 50),
            on_chunk=lambda done, loss: bar.update(task, completed=done, loss=f"{loss:.6g}"),
            **kwargs,
        )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from funcdiff import DeviceNotFoundError, scoped

    if not (0 < args.level < 1):
        raise CLIError(f"--level: expected a number in (0, 1), got {args.level}")
    if args.batch_size is not None and args.method == "gram":
        raise CLIError("--method gram is full batch: drop --batch-size or use --method autodiff")
    if args.plot is not None:
        try:
            import matplotlib
        except ImportError:
            raise CLIError(
                "--plot needs matplotlib: pip install 'funcdiff[plot]' (or pip install matplotlib)"
            ) from None
        matplotlib.use("Agg")
    try:
        with scoped(x64=args.x64, device=args.device):
            return _run(args)
    except DeviceNotFoundError as e:
        raise CLIError(str(e), code=EXIT_FAILED) from None
    except (TypeError, ValueError) as e:
        raise CLIError(str(e)) from None


def _run(args: argparse.Namespace) -> int:
    import jax

    from funcdiff._report import table
    from funcdiff.regression import bootstrap, confidence_interval, ols, standard_error

    x, y, x_cols = _load(args)
    n = len(y)
    if args.batch_size is not None and args.batch_size > n:
        raise CLIError(f"--batch-size: expected at most the {n} rows, got {args.batch_size}")
    x, y = jax.numpy.asarray(x), jax.numpy.asarray(y)
    optimizer = _optimizer(args.optimizer, args.lr)
    result = _fit(args, x, y, optimizer)
    sol = ols(x, y)
    boot = None
    if args.bootstrap is not None:
        kw: dict[str, Any] = {"optimizer": optimizer, "epochs": args.epochs, "throw": False}
        kw.update(log_every=args.log_every, method=args.method, batch_size=args.batch_size)
        boot = bootstrap(_key(args.seed, 2), x, y, args.bootstrap, **kw)
    names = ["intercept", *(f"coef[{c}]" for c in x_cols)]

    def flat(params: dict[str, Any]) -> list[float]:
        return [float(params["intercept"]), *np.ravel(np.asarray(params["coef"])).tolist()]

    fitted, closed = flat(result.params), flat(sol)
    se = ci = None
    if boot is not None and int(np.sum(np.asarray(boot.status_code) == 0)) >= 2:
        se = flat(standard_error(boot))
        intervals = confidence_interval(boot, level=args.level)
        lo = flat({k: v[0] for k, v in intervals.items()})
        hi = flat({k: v[1] for k, v in intervals.items()})
        ci = list(zip(lo, hi, strict=True))
    if args.plot is not None:
        _plot(args.plot, np.asarray(x), np.asarray(y), result, x_cols)
    if args.json:
        emit_json(_json(args, n, x_cols, result, fitted, closed, boot, se, ci))
    else:
        print(_text(args, n, result, names, fitted, closed, boot, se, ci, table))
    if result.ok:
        return 0
    return fail("regress", f"the fit {result.message}", EXIT_FAILED)


def _json(
    args: argparse.Namespace, n: int, x_cols: list[str], result: Any, fitted: list[float],
    closed: list[float], boot: Any, se: Any, ci: Any,
) -> dict[str, Any]:  # fmt: skip
    import jax

    epochs, losses = np.asarray(result.log.epoch), np.asarray(result.log.loss)
    log = [
        {"epoch": int(e), "loss": float(lo),
         "grad": {"intercept": _floats(result.log.grad["intercept"][i]),
                  "coef": _floats(result.log.grad["coef"][i])}}
        for i, (e, lo) in enumerate(zip(epochs, losses, strict=True))
    ]  # fmt: skip
    out: dict[str, Any] = {
        "data": {"source": args.csv or "generated", "n": n, "x": x_cols, "y": args.y or "y"},
        "optimizer": args.optimizer, "lr": args.lr, "epochs": args.epochs,
        "batch_size": args.batch_size, "method": args.method,
        "params": {"intercept": fitted[0], "coef": fitted[1] if len(fitted) == 2 else fitted[1:]},
        "ols": {"intercept": closed[0], "coef": closed[1] if len(closed) == 2 else closed[1:]},
        "final_loss": float(result.final_loss),
        "status": "ok" if result.ok else "diverged",
        "diverged_at": int(result.diverged_at) if not result.ok else None,
        "log": log,
        "dtype": str(np.asarray(result.final_loss).dtype),
        "device": jax.devices()[0].platform,
    }  # fmt: skip
    if boot is not None:
        out["bootstrap"] = {
            "n_resamples": args.bootstrap, "level": args.level,
            "diverged": int(np.sum(np.asarray(boot.status_code) != 0)),
            "standard_error": se, "confidence_interval": [list(c) for c in ci] if ci else None,
        }  # fmt: skip
    return out


def _text(
    args: argparse.Namespace, n: int, result: Any, names: list[str], fitted: list[float],
    closed: list[float], boot: Any, se: Any, ci: Any, table: Any,
) -> str:  # fmt: skip
    source = args.csv or "generated y = 2 + x + noise"
    head = f"funcdiff regress: {source}, n={n}, optax {args.optimizer}(lr={args.lr:g}), " + (
        f"{args.epochs} epochs, " + ("full batch" if args.batch_size is None
                                     else f"batch {args.batch_size}")
    )  # fmt: skip
    rows = []
    for i, name in enumerate(names):
        row = [name, fitted[i], closed[i]]
        if boot is not None:
            row += [se[i] if se else None, f"[{ci[i][0]:.6g}, {ci[i][1]:.6g}]" if ci else "-"]
        rows.append(row)
    headers = ["parameter", "fit", "least squares"]
    if boot is not None:
        headers += ["bootstrap SE", f"{100 * args.level:g}% interval"]
    parts = [str(result), table(headers, rows, title=head, digits=6)]
    if boot is not None:
        parts.append(f"bootstrap: {boot.message}")
    return "\n\n".join(parts)


def _plot(path: str, x: np.ndarray, y: np.ndarray, result: Any, x_cols: list[str]) -> None:
    import matplotlib.pyplot as plt

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 4))
    b0 = float(result.params["intercept"])
    coef = np.asarray(result.params["coef"], dtype=np.float64)
    if x.ndim == 1:
        ax0.scatter(x, y, s=8, alpha=0.6, label="data")
        grid = np.linspace(x.min(), x.max(), 100)
        ax0.plot(
            grid, b0 + float(coef) * grid, color="C1", label=f"y = {b0:.4g} + {float(coef):.4g}·x"
        )
        ax0.set_xlabel(x_cols[0])
    else:
        pred = b0 + x @ coef
        ax0.scatter(pred, y, s=8, alpha=0.6, label="data")
        lims = [min(pred.min(), y.min()), max(pred.max(), y.max())]
        ax0.plot(lims, lims, color="C1", label="y = prediction")
        ax0.set_xlabel("prediction")
    ax0.set_ylabel("y")
    ax0.legend()
    losses = np.asarray(result.losses, dtype=np.float64)
    ax1.plot(np.arange(len(losses)), losses)
    if np.all(losses[np.isfinite(losses)] > 0):
        ax1.set_yscale("log")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.set_title("loss at each epoch's start")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as e:
        raise CLIError(f"--plot {path}: cannot write the file ({e.strerror or e})") from None
    finally:
        plt.close(fig)
