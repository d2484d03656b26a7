"""Partly or wholly unlabelled contributor data: the .npz convention.

A task whose spec has an `unlabelled` section reads contributor files in the labelled format
(fedchain.learning.data) with two additions:

    y == -1 (UNLABELLED) marks a sample without a label; every other label is in [0, num_classes)
    an optional array `x_unlabelled` (float32, shape (M, *input_shape)) holds further unlabelled inputs;
      they are appended after x with label -1
    `y` may be all -1 (wholly unlabelled data); `x`/`y` may be left out when `x_unlabelled` is given

    np.savez("mine.npz", x=x_few, y=y_few, x_unlabelled=x_rest)       # or: save_partly_labelled(...)
    np.savez("mine.npz", x=x_all, y=np.where(has_label, y_all, -1))

The validator's held-out data must stay fully labelled.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fedchain.learning.data import DataError, _check_declared_size, open_npz, validate_arrays

if TYPE_CHECKING:
    from fedchain.core.spec import TaskSpec

UNLABELLED = -1


def validate_partly_labelled(
    x: np.ndarray, y: np.ndarray, input_shape: tuple[int, ...] | None = None, num_classes: int | None = None,
    source: str = "data",
) -> tuple[np.ndarray, np.ndarray]:
    """Check (x, y) where y may hold UNLABELLED (-1); return (x float32, y int64). Raises DataError."""
    if y.dtype != object and np.issubdtype(y.dtype, np.integer) and y.ndim == 1:
        y64 = y.astype(np.int64)
        below = y64[y64 < UNLABELLED]
        if below.size:
            raise DataError(f"{source}: labels must be in [0, {num_classes or 'num_classes'}) or -1 for an "
                            f"unlabelled sample, found {below.size} below -1 (e.g. {int(below[0])})")
        stand_in = np.where(y64 == UNLABELLED, 0, y64)  # the labelled checks, with unlabelled samples as class 0
        x, _ = validate_arrays(x, stand_in, input_shape, num_classes, source=source)
        return x, y64
    return validate_arrays(x, y, input_shape, num_classes, source=source)


def load_partly_labelled(path: str | Path, spec: TaskSpec | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read a contributor file in the convention above; (x float32 (N, ...), y int64 (N,) with -1 = unlabelled)."""
    p = Path(path)
    arrays = _read_arrays(p)
    shape = tuple(spec.input_shape) if spec is not None else None
    classes = spec.num_classes if spec is not None else None
    parts_x, parts_y = [], []
    if "x" in arrays:
        x, y = validate_partly_labelled(arrays["x"], arrays["y"], shape, classes, source=str(p))
        parts_x.append(x)
        parts_y.append(y)
    if "x_unlabelled" in arrays:
        xu = arrays["x_unlabelled"]
        if xu.ndim == 0:
            raise DataError(f"{p}: x_unlabelled must have shape (M, *input_shape), got a scalar")
        xu, _ = validate_partly_labelled(xu, np.full(xu.shape[0], UNLABELLED, np.int64), shape, classes,
                                         source=f"{p} (x_unlabelled)")
        parts_x.append(xu)
        parts_y.append(np.full(xu.shape[0], UNLABELLED, np.int64))
    return np.concatenate(parts_x), np.concatenate(parts_y)


def _read_arrays(p: Path) -> dict[str, np.ndarray]:
    """x, y and x_unlabelled as the archive holds them (headers checked before anything is read)."""
    try:
        with open_npz(p) as archive:
            names = set(archive.files)
            if ("x" in names) != ("y" in names):
                raise DataError(f"{p}: x and y go together (found only {'x' if 'x' in names else 'y'}); use y = -1 "
                                "for unlabelled samples, or put unlabelled inputs in x_unlabelled alone")
            if "x_unlabelled" not in names and not {"x", "y"} <= names:
                raise DataError(f"{p}: needs arrays x and y (y = -1 marks an unlabelled sample), or x_unlabelled; "
                                f"found {archive.files or 'none'}")
            for name in ("x", "y", "x_unlabelled"):
                if name in names:
                    _check_declared_size(archive, name, p)
            return {name: archive[name] for name in ("x", "y", "x_unlabelled") if name in names}
    except DataError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object arrays" in str(exc).lower():
            raise DataError(f"{p}: contains object (pickled) arrays, which are refused; store numeric arrays") from exc
        raise DataError(f"{p}: not a valid .npz file: {exc}") from exc
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{p}: cannot read as an .npz archive: {exc}") from exc


def save_partly_labelled(path: str | Path, x: np.ndarray, y: np.ndarray) -> Path:
    """Write (x, y with -1 for unlabelled samples) in the convention above (compressed); returns the path."""
    x, y = validate_partly_labelled(np.asarray(x), np.asarray(y), source="save_partly_labelled")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "wb") as f:
        np.savez_compressed(f, x=x, y=y)
    return p


def hide_labels(y: np.ndarray, labelled_fraction: float, seed: int) -> np.ndarray:
    """A copy of y keeping round(labelled_fraction * N) labels (at least one), chosen at random for a seed; the
    others become UNLABELLED."""
    if not 0.0 < labelled_fraction <= 1.0:
        raise DataError(f"labelled fraction must be in (0, 1], got {labelled_fraction}")
    y = np.asarray(y, dtype=np.int64)
    keep = max(1, int(round(labelled_fraction * len(y))))
    out = np.full_like(y, UNLABELLED)
    chosen = np.random.default_rng(seed).permutation(len(y))[:keep]
    out[chosen] = y[chosen]
    return out
