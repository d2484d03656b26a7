"""fedchain.unlabelled.data: the .npz convention for partly or wholly unlabelled contributor data."""

from __future__ import annotations

import numpy as np
import pytest

from fedchain.core.spec import UnlabelledConfig, mnist_spec
from fedchain.learning.data import DataError, save_npz
from fedchain.learning.kinds import kind_of
from fedchain.unlabelled.data import UNLABELLED, hide_labels, load_partly_labelled, save_partly_labelled

SPEC = mnist_spec().model_copy(update={"unlabelled": UnlabelledConfig()})


def _x(n: int) -> np.ndarray:
    return np.random.default_rng(n).random((n, 1, 28, 28), dtype=np.float32)


def test_minus_one_marks_unlabelled_samples(tmp_path):
    y = np.array([3, -1, 7, -1])
    path = save_partly_labelled(tmp_path / "d.npz", _x(4), y)
    x, got = load_partly_labelled(path, SPEC)
    assert x.shape == (4, 1, 28, 28) and got.dtype == np.int64 and got.tolist() == [3, -1, 7, -1]


def test_x_unlabelled_is_appended_with_label_minus_one(tmp_path):
    np.savez(tmp_path / "d.npz", x=_x(2), y=np.array([1, 2]), x_unlabelled=_x(3))
    x, y = load_partly_labelled(tmp_path / "d.npz", SPEC)
    assert x.shape[0] == 5 and y.tolist() == [1, 2, UNLABELLED, UNLABELLED, UNLABELLED]


def test_wholly_unlabelled_data_is_accepted(tmp_path):
    np.savez(tmp_path / "a.npz", x_unlabelled=_x(3))
    np.savez(tmp_path / "b.npz", x=_x(3), y=np.full(3, -1))
    assert (load_partly_labelled(tmp_path / "a.npz", SPEC)[1] == -1).all()
    assert (load_partly_labelled(tmp_path / "b.npz", SPEC)[1] == -1).all()


@pytest.mark.parametrize(("arrays", "message"), [
    ({"x": _x(2), "y": np.array([0, -2])}, "or -1 for an unlabelled sample"),
    ({"x": _x(2), "y": np.array([0, 10])}, "labels must be in [0, 10)"),
    ({"x": _x(2)}, "x and y go together"),
    ({"z": _x(2)}, "needs arrays x and y"),
    ({"x_unlabelled": _x(2).astype(np.float64)}, "expected float32"),
    ({"x_unlabelled": np.zeros((2, 1, 27, 28), np.float32)}, "expected (N, 1, 28, 28)"),
    ({"x_unlabelled": _x(2) * 300}, "image values must lie in [0, 1]"),
])
def test_bad_files_say_what_to_fix(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match=None) as info:
        load_partly_labelled(tmp_path / "d.npz", SPEC)
    assert message in str(info.value)


def test_missing_file_and_pickles_are_refused(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_partly_labelled(tmp_path / "none.npz", SPEC)
    np.savez(tmp_path / "p.npz", x=np.array([object()], dtype=object), y=np.array([0]))
    with pytest.raises(DataError, match="pickled"):
        load_partly_labelled(tmp_path / "p.npz", SPEC)


def test_the_task_kind_reads_minus_one_only_for_a_task_with_unlabelled_data(tmp_path):
    path = save_partly_labelled(tmp_path / "d.npz", _x(2), np.array([1, -1]))
    assert kind_of(SPEC).load_data(path, SPEC).y.tolist() == [1, -1]
    with pytest.raises(DataError, match=r"labels must be in \[0, 10\)"):
        kind_of(mnist_spec()).load_data(path, mnist_spec())
    labelled = save_npz(tmp_path / "l.npz", _x(2), np.array([1, 2]))
    assert kind_of(SPEC).load_data(labelled, SPEC).y.tolist() == [1, 2]  # fully labelled data is fine too


def test_hide_labels_keeps_the_fraction_deterministically():
    y = np.arange(100) % 10
    kept = hide_labels(y, 0.05, seed=3)
    assert (kept >= 0).sum() == 5 and (kept[kept >= 0] == y[kept >= 0]).all()
    assert (hide_labels(y, 0.05, seed=3) == kept).all()
    assert (hide_labels(y[:10], 0.01, seed=0) >= 0).sum() == 1  # at least one label
    with pytest.raises(DataError, match=r"in \(0, 1\]"):
        hide_labels(y, 0.0, seed=0)
