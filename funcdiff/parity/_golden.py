"""Golden references: PyTorch's values and derivatives for the catalog, stored in a JSON file.

``funcdiff parity --regenerate`` runs every case against live PyTorch and records what the
PyTorch side measured (outputs, gradient/VJP, JVP, HVP) for each case and dtype, with the torch
version. Without PyTorch, the runner replays those records: the JAX side is computed live on
the same inputs (a hash of them is stored, so a changed input generator is reported as a stale
entry, never compared against the wrong numbers).
"""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from funcdiff.parity._measure import Measurement, Prepared

__all__ = ["FORMAT", "GOLDEN_PATH", "GoldenError", "GoldenFile", "inputs_digest"]

GOLDEN_PATH = Path(__file__).resolve().parent / "data" / "golden.json"
"""Where the checked-in golden references live (``funcdiff/parity/data/golden.json``)."""
FORMAT = 1


class GoldenError(LookupError):
    """A golden entry is missing, stale or unreadable; the fix is ``--regenerate``.

    Examples:
      >>> from funcdiff.parity import GoldenError, run_catalog
      >>> try:
      ...     run_catalog(pattern="log1p", reference="golden", golden_path="no-such-golden.json")
      ... except GoldenError as e:
      ...     print(e)
      No golden reference file at no-such-golden.json; install PyTorch and run `funcdiff ...`.
      >>> issubclass(GoldenError, LookupError)
      True
    """


def inputs_digest(prep: Prepared) -> str:
    """SHA-256 of the argument leaves (dtype, shape, bytes) and the tangents."""
    h = hashlib.sha256()
    for a in (*prep.leaves, *prep.tangents):
        h.update(f"{a.dtype.name}{a.shape}".encode())
        h.update(np.array(a, order="C").tobytes())
    return h.hexdigest()[:16]


def _enc_array(a: np.ndarray) -> dict[str, Any]:
    return {"dtype": a.dtype.name, "shape": list(a.shape), "data": a.ravel().tolist()}


def _dec_array(d: dict[str, Any]) -> np.ndarray:
    return np.asarray(d["data"], dtype=np.float64).astype(d["dtype"]).reshape(d["shape"])


def _enc_leaves(leaves: list[tuple[str, np.ndarray]] | None) -> Any:
    return None if leaves is None else [[p, _enc_array(a)] for p, a in leaves]


def _dec_leaves(data: Any) -> list[tuple[str, np.ndarray]] | None:
    return None if data is None else [(p, _dec_array(a)) for p, a in data]


def _as_tuples(x: Any) -> Any:
    return tuple(_as_tuples(v) for v in x) if isinstance(x, list) else x


def encode(m: Measurement, digest: str) -> dict[str, Any]:
    return {
        "inputs": digest,
        "structure": m.structure,
        "outputs": _enc_leaves(m.outputs),
        "grads": _enc_leaves(m.grads),
        "jvp": _enc_leaves(m.jvp),
        "hvp": _enc_leaves(m.hvp),
        "notes": list(m.notes),
    }


def decode(entry: dict[str, Any]) -> Measurement:
    outputs = _dec_leaves(entry["outputs"])
    assert outputs is not None
    return Measurement(
        _as_tuples(entry["structure"]),
        outputs,
        _dec_leaves(entry["grads"]),
        _dec_leaves(entry["jvp"]),
        _dec_leaves(entry["hvp"]),
        tuple(entry.get("notes", ())),
    )


class GoldenFile:
    """The golden data: ``entries[f"{case}@{dtype}"]`` plus the torch version that made them."""

    def __init__(
        self,
        entries: dict[str, Any] | None = None,
        *,
        torch_version: str = "",
        path: Path = GOLDEN_PATH,
    ) -> None:
        self.entries: dict[str, Any] = dict(entries or {})
        self.torch_version = torch_version
        self.path = Path(path)

    @classmethod
    def load(cls, path: str | Path = GOLDEN_PATH) -> GoldenFile:
        """Reads a golden file.

        Raises:
          TypeError: ``path`` is not a str or Path.
          GoldenError: the file is missing, a directory, unreadable, or not a golden file of
            this format.
        """
        if not isinstance(path, str | Path):
            raise TypeError(
                f"Expected the golden path to be a str or pathlib.Path, got {type(path).__name__}."
            )
        p = Path(path)
        if p.is_dir():
            raise GoldenError(f"Expected a golden file, got the directory {p}.")
        if not p.exists():
            raise GoldenError(
                f"No golden reference file at {p}; install PyTorch and run "
                "`funcdiff parity --regenerate`."
            )
        try:
            data = json.loads(p.read_text())
            if not isinstance(data, dict):
                raise ValueError(f"a JSON {type(data).__name__}, expected an object")
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}, expected {FORMAT}")
            if not isinstance(data.get("entries"), dict):
                raise ValueError("no `entries` object")
        except (OSError, ValueError) as e:
            raise GoldenError(f"Unreadable golden file {p}: {e}") from None
        return cls(data["entries"], torch_version=str(data.get("torch_version", "?")), path=p)

    def measurement(self, case: str, dtype: str, prep: Prepared) -> Measurement:
        """The stored PyTorch measurement for ``case`` at ``dtype``.

        Raises:
          GoldenError: no entry, or the entry was made from different inputs.
        """
        entry = self.entries.get(f"{case}@{dtype}")
        if entry is not None and not (
            isinstance(entry, dict) and ({"inputs", "error"} & set(entry))
        ):
            raise GoldenError(f"malformed golden entry for {case} in {dtype}: {entry!r:.80}")
        if entry is None:
            raise GoldenError(
                f"no golden entry for {case} in {dtype}; run `funcdiff parity --regenerate`"
            )
        if "error" in entry:
            raise GoldenError(f"PyTorch raised when the golden file was made: {entry['error']}")
        if entry["inputs"] != inputs_digest(prep):
            raise GoldenError(
                f"golden entry for {case} in {dtype} is stale (its inputs changed); "
                "run `funcdiff parity --regenerate`"
            )
        try:
            return decode(entry)
        except (KeyError, TypeError, ValueError) as e:
            raise GoldenError(
                f"malformed golden entry for {case} in {dtype} ({type(e).__name__}: {e}); run "
                "`funcdiff parity --regenerate`"
            ) from None

    def record(self, case: str, dtype: str, prep: Prepared, m: Measurement) -> None:
        self.entries[f"{case}@{dtype}"] = encode(m, inputs_digest(prep))

    def record_error(self, case: str, dtype: str, error: str) -> None:
        self.entries[f"{case}@{dtype}"] = {"error": error}

    def save(self, path: str | Path | None = None) -> Path:
        p = Path(path) if path is not None else self.path
        p.parent.mkdir(parents=True, exist_ok=True)
        import jax

        data = {
            "format": FORMAT,
            "torch_version": self.torch_version,
            "jax_version": jax.__version__,
            "generated": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "entries": dict(sorted(self.entries.items())),
        }
        p.write_text(json.dumps(data, separators=(",", ":"), allow_nan=True) + "\n")
        return p
