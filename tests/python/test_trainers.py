"""fedchain.learning.trainers and fedchain.learning.evaluation: local training, evaluation and the scoring loss oracle."""

import numpy as np
import pytest
import torch

from fedchain.core.spec import TrainingConfig, mnist_spec
from fedchain.learning.data import mnist_subset
from fedchain.learning.evaluation import LossEvaluator, TrainingError, evaluate, pick_device
from fedchain.learning.models import ParamLayout, apply_delta, build_architecture, build_model, initial_state
from fedchain.learning.trainers import set_seed, train_local

CPU = torch.device("cpu")
SPEC = mnist_spec()
CFG = TrainingConfig(local_epochs=5, momentum=0.9)


@pytest.fixture(scope="module")
def tiny():
    x, y = mnist_subset()
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(y))
    return x[idx[:200]], y[idx[:200]], x[idx[200:700]], y[idx[200:700]]


@pytest.fixture(scope="module")
def trained(tiny):
    x, y, _, _ = tiny
    model, base = build_model(SPEC), initial_state(SPEC, seed=0)
    return base, train_local(model, base, x, y, CFG, seed=1, device=CPU, progress=False)


def test_training_reduces_loss_on_its_data(tiny, trained):
    x, y, _, _ = tiny
    base, result = trained
    model = build_model(SPEC)
    layout = ParamLayout.from_state_dict(base)
    before = evaluate(model, base, x, y, device=CPU).loss
    after = evaluate(model, apply_delta(base, layout.flatten(result.delta), layout), x, y, device=CPU).loss
    assert after < 0.7 * before


def test_result_fields(tiny, trained):
    base, result = trained
    layout = ParamLayout.from_state_dict(base)
    assert result.num_samples == 200 and result.seconds > 0 and np.isfinite(result.train_loss)
    assert list(result.delta) == layout.names
    assert all(t.dtype == torch.float32 and t.device.type == "cpu" for t in result.delta.values())


def test_training_is_deterministic_for_a_seed(tiny, trained):
    x, y, _, _ = tiny
    base, first = trained
    again = train_local(build_model(SPEC), base, x, y, CFG, seed=1, device=CPU, progress=False)
    other = train_local(build_model(SPEC), base, x, y, CFG, seed=2, device=CPU, progress=False)
    assert all(torch.equal(first.delta[k], again.delta[k]) for k in first.delta)
    assert not torch.equal(first.delta["head.3.weight"], other.delta["head.3.weight"])


def test_fedprox_keeps_update_closer_to_base(tiny, trained):
    x, y, _, _ = tiny
    base, plain = trained
    prox = train_local(build_model(SPEC), base, x, y, CFG.model_copy(update={"fedprox_mu": 1.0}), seed=1,
                       device=CPU, progress=False)
    layout = ParamLayout.from_state_dict(base)
    assert layout.flatten(prox.delta).norm() < layout.flatten(plain.delta).norm()


def test_adam_optimizer_trains(tiny):
    x, y, _, _ = tiny
    base = initial_state(SPEC, 0)
    cfg = TrainingConfig(local_epochs=1, optimizer="adam", learning_rate=1e-3)
    result = train_local(build_model(SPEC), base, x, y, cfg, seed=0, device=CPU, progress=False)
    assert np.isfinite(result.train_loss)


def test_batchnorm_integer_buffers_not_in_delta(tiny):
    x, y, _, _ = tiny
    model = build_architecture("cnn", (1, 28, 28), 10, {"batch_norm": True})
    base = {k: v.clone() for k, v in model.state_dict().items()}
    result = train_local(model, base, x[:32], y[:32], TrainingConfig(local_epochs=1), seed=0, device=CPU,
                         progress=False)
    assert "features.1.num_batches_tracked" not in result.delta
    assert result.delta["features.1.running_mean"].abs().sum() > 0


def test_training_on_no_data_raises():
    with pytest.raises(TrainingError, match="no samples"):
        train_local(build_model(SPEC), initial_state(SPEC, 0), np.zeros((0, 1, 28, 28), np.float32),
                    np.zeros(0, np.int64), CFG, seed=0, device=CPU, progress=False)


def test_progress_bar_runs(tiny, capsys):
    x, y, _, _ = tiny
    train_local(build_model(SPEC), initial_state(SPEC, 0), x[:16], y[:16], TrainingConfig(local_epochs=1),
                seed=0, device=CPU, progress=True)
    assert "training" in capsys.readouterr().err


def test_evaluate_reports_accuracy_and_samples(tiny, trained):
    _, _, xt, yt = tiny
    base, _ = trained
    ev = evaluate(build_model(SPEC), base, xt, yt, batch_size=128, device=CPU)
    assert ev.samples == 500 and 0.0 <= ev.accuracy <= 0.3  # untrained: about chance


def test_loss_evaluator_matches_evaluate(tiny, trained):
    _, _, xt, yt = tiny
    base, result = trained
    model = build_model(SPEC)
    layout = ParamLayout.from_state_dict(base)
    delta = layout.flatten(result.delta)
    oracle = LossEvaluator(model, layout, base, xt, yt, device=CPU)
    reference = evaluate(build_model(SPEC), apply_delta(base, delta, layout), xt, yt, device=CPU)
    assert oracle(delta) == pytest.approx(reference.loss, rel=1e-5)
    assert oracle.accuracy(delta) == pytest.approx(reference.accuracy)
    assert oracle.base_loss == pytest.approx(evaluate(build_model(SPEC), base, xt, yt, device=CPU).loss, rel=1e-5)
    assert oracle(delta) < oracle.base_loss
    assert oracle(torch.zeros(layout.total)) == pytest.approx(oracle.base_loss)


def test_loss_evaluator_subset_is_fixed(tiny, trained):
    _, _, xt, yt = tiny
    base, _ = trained
    layout = ParamLayout.from_state_dict(base)
    a = LossEvaluator(build_model(SPEC), layout, base, xt, yt, device=CPU, max_samples=100, seed=5)
    b = LossEvaluator(build_model(SPEC), layout, base, xt, yt, device=CPU, max_samples=100, seed=5)
    assert a.samples == 100 and a.base_loss == b.base_loss


def test_loss_evaluator_rejects_wrong_length(tiny, trained):
    _, _, xt, yt = tiny
    base, _ = trained
    oracle = LossEvaluator(build_model(SPEC), ParamLayout.from_state_dict(base), base, xt, yt, device=CPU)
    with pytest.raises(TrainingError, match="expected"):
        oracle(torch.zeros(3))


def test_set_seed_and_pick_device():
    set_seed(5)
    a = torch.rand(2)
    set_seed(5)
    assert torch.equal(a, torch.rand(2))
    assert pick_device("cpu") == CPU
    assert pick_device().type in ("cpu", "cuda")


@pytest.mark.slow
@pytest.mark.skipif(not __import__("os").environ.get("FEDCHAIN_SLOW"), reason="set FEDCHAIN_SLOW=1 (about 30 s)")
def test_fedavg_reaches_93_percent_on_non_iid_mnist_in_5_rounds():
    """The default TrainingConfig's target: 5 Dirichlet(0.5) shards, 5 rounds of sample-weighted FedAvg."""
    from fedchain.learning.data import dirichlet_shards, train_test_split

    torch.set_num_threads(1)
    x, y = mnist_subset()
    split = train_test_split(x, y, 0.2, seed=0)
    shards = dirichlet_shards(split.y_train, 5, alpha=0.5, seed=0)
    model, state = build_model(SPEC), initial_state(SPEC, 0)
    layout = ParamLayout.from_state_dict(state)
    for r in range(5):
        results = [
            train_local(model, state, split.x_train[idx], split.y_train[idx], SPEC.training, seed=100 * r + k,
                        device=CPU, progress=False)
            for k, idx in enumerate(shards)
        ]
        weights = torch.tensor([res.num_samples for res in results], dtype=torch.float32)
        deltas = torch.stack([layout.flatten(res.delta) for res in results])
        state = apply_delta(state, (weights / weights.sum()) @ deltas, layout)
    assert evaluate(model, state, split.x_test, split.y_test, device=CPU).accuracy >= 0.93


def test_loss_evaluator_replicas_agree_and_can_run_on_threads_at_once():
    from concurrent.futures import ThreadPoolExecutor

    spec = mnist_spec(sealing_keys=["00" * 32])
    state = initial_state(spec, 0)
    layout = ParamLayout.from_state_dict(state)
    rng = np.random.default_rng(0)
    x = rng.random((64, *spec.input_shape), dtype=np.float32)
    y = rng.integers(0, spec.num_classes, 64)
    first = LossEvaluator(build_model(spec), layout, state, x, y, device="cpu")
    twin = first.replica()
    deltas = [torch.randn(layout.total, generator=torch.Generator().manual_seed(i)) * 0.05 for i in range(8)]
    sequential = [first(d) for d in deltas]
    with ThreadPoolExecutor(2) as pool:
        halves = list(pool.map(lambda ev_ds: [ev_ds[0](d) for d in ev_ds[1]], [(first, deltas[::2]), (twin, deltas[1::2])]))
    assert halves[0] == sequential[::2] and halves[1] == sequential[1::2]
    assert twin.model is not first.model and twin._work.data_ptr() != first._work.data_ptr()
