"""Files of pool selection (:mod:`difftrade.recommender.pool`): reading a score column from CSV/TSV, Parquet
or ``.npy``, and writing a selection atomically as ``.npy`` or ``.csv``.
"""

from __future__ import annotations

import csv
import numbers
import os
from pathlib import Path

import numpy as np

from difftrade.recommender.pool import Selection, check_scores, level_label


# ---- files ------------------------------------------------------------------------------------
def load_scores(path: str | Path, column: str | int | None = None) -> np.ndarray:
    """Read a score column: CSV/TSV (header row; ``column`` = name or 0-based position, ``None``
    for a one-column file), Parquet (needs ``pandas`` and ``pyarrow``) or ``.npy`` (a 1-D
    array; no column). Returns ``[P]`` float64; ``ValueError`` naming the row and value of a non-numeric cell."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"scores file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _nonempty(check_scores(_read_npy(path), f"{path.name}"), path)
    if suffix in (".parquet", ".pq"):
        try:
            import pandas as pd
            import pyarrow  # noqa: F401
        except ImportError as err:
            raise ImportError(
                f"reading Parquet ({path.name}) needs pandas and pyarrow ({err}); "
                "install them (pip install pandas pyarrow) or save the scores as CSV"
            ) from err
        try:
            frame = pd.read_parquet(path)
        except Exception as err:  # noqa: BLE001 - pyarrow raises its own error types on a damaged file
            raise ValueError(
                f"scores file {str(path)!r} is not a readable Parquet file ({type(err).__name__}: "
                f"{' '.join(str(err).split())[:200]})"
            ) from None
        name = _column_name(list(map(str, frame.columns)), column, path)
        values = frame[frame.columns[list(map(str, frame.columns)).index(name)]].to_numpy()
        return _nonempty(check_scores(values, f"{path.name}:{name}"), path)
    if suffix not in (".csv", ".tsv", ".txt"):
        raise ValueError(
            f"scores file {path.name!r} has suffix {suffix!r}; allowed: .csv, .tsv, .txt, .parquet, .npy"
        )
    try:
        return _read_delimited(path, "\t" if suffix == ".tsv" else ",", column)
    except UnicodeDecodeError as err:
        raise ValueError(
            f"scores file {str(path)!r} is not text ({err.reason} at byte {err.start}); "
            "allowed: a UTF-8 CSV/TSV with a header row"
        ) from None


def _read_npy(path: Path) -> np.ndarray:
    """The array of a ``.npy`` file; ``ValueError`` naming the file when it is not one (or holds objects)."""
    try:
        return np.load(path, allow_pickle=False)
    except Exception as err:  # noqa: BLE001 - numpy raises Value, EOF, OS or Unpickling errors
        raise ValueError(
            f"scores file {str(path)!r} is not a readable .npy array of numbers "
            f"({type(err).__name__}: {' '.join(str(err).split())[:160]})"
        ) from None


def _read_delimited(path: Path, delimiter: str, column: str | int | None) -> np.ndarray:
    """The score column of a CSV/TSV with a header row, ``[P]`` float64 (see :func:`load_scores`)."""
    with open(path, newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            raise ValueError(
                f"scores file {path.name!r} is empty; allowed: a header row and one row per example"
            )
        name = _column_name([h.strip() for h in header], column, path)
        col = [h.strip() for h in header].index(name)
        values = []
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            cell = row[col].strip() if col < len(row) else ""
            try:
                v = float(cell)
            except ValueError:
                raise ValueError(
                    f"{path.name} line {line}, column {name!r}: {cell!r} is not a number; allowed: finite numbers"
                ) from None
            if not np.isfinite(v):
                raise ValueError(
                    f"{path.name} line {line}, column {name!r}: {cell!r}; allowed: finite numbers"
                )
            values.append(v)
    return _nonempty(
        check_scores(np.asarray(values, dtype=np.float64), f"{path.name}:{name}"), path
    )


def _nonempty(scores: np.ndarray, path: Path) -> np.ndarray:
    """``scores [P]`` unchanged; ``ValueError`` naming the file when ``P == 0`` (a header-only CSV, an empty array)."""
    if scores.size == 0:
        raise ValueError(
            f"scores file {str(path)!r} holds no scores (a header row alone, or an empty array); "
            "allowed: one score per pool example"
        )
    return scores


def _column_name(header: list[str], column: str | int | None, path: Path) -> str:
    if column is None:
        if len(header) == 1:
            return header[0]
        raise ValueError(f"column=None but {path.name} has columns {header}; allowed: one of them")
    if isinstance(column, numbers.Integral) and not isinstance(column, bool):
        if not 0 <= column < len(header):
            raise ValueError(f"column={column}; allowed: 0 <= column < {len(header)} ({header})")
        return header[column]
    if column not in header and str(column).isdigit():  # "2" from a command line: a position
        return _column_name(header, int(column), path)
    if column not in header:
        raise ValueError(f"column={column!r} is not in {path.name}; allowed: {header}")
    return str(column)


def save_selection(path: str | Path, selection: Selection) -> Path:
    """Write a selection atomically (temporary file in the same folder, then rename):
    ``.npy`` = the indices; ``.csv`` = columns ``index,level,score``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".npy"):
        raise ValueError(f"output {path.name!r} has suffix {suffix!r}; allowed: .csv, .npy")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{suffix}")
    try:
        if suffix == ".npy":
            np.save(tmp, selection.indices)
        else:
            with open(tmp, "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["index", "level", "score"])
                for i, lv, sc in zip(selection.indices, selection.levels, selection.scores):
                    w.writerow([int(i), level_label(lv), repr(float(sc))])
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
