"""fedchain.privacy: accounting against known values, the DP-SGD trainer (a clipped, noised step; the cap), the
contributor's budget file, the private models, and the "privacy/1" declaration with the validator's judgement."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from fedchain.core.envelope import UpdateEnvelope, decode_update, encode_update
from fedchain.core.reasons import Reason
from fedchain.core.spec import PrivacyConfig, TrainingConfig, mnist_spec, shakespeare_spec
from fedchain.learning.models import ParamLayout, build_model, initial_state
from fedchain.learning.trainers import LocalData, SupervisedTrainer, trainer_for
from fedchain.privacy.accounting import (
    AccountingError,
    BudgetExhaustedError,
    Steps,
    epsilon,
    noise_for_budget,
    to_micro,
)
from fedchain.privacy.budget import BudgetFileError, PrivacyBudget, Spend
from fedchain.privacy.declaration import EXTENSION, PrivacyDeclaration, judge
from fedchain.privacy.trainer import DPTrainer, round_steps
from fedchain.state import StateBinding, StateMismatchError

CPU = torch.device("cpu")
CFG = PrivacyConfig(epsilon_cap=3.0, delta=1e-5, clipping_norm=1.0, min_noise_multiplier=1.0)
BINDING = StateBinding(31337, "0x" + "11" * 20, 1, "0x" + "22" * 32)


# ---------------------------------------------------------------- accounting


def _gaussian_full_batch_epsilon(sigma: float, steps: int, delta: float) -> float:
    """Without subsampling the Gaussian mechanism's RDP is exactly steps * alpha / (2 sigma^2); converted to
    (epsilon, delta) with Balle et al. 2020's bound (Opacus's), over Opacus's orders."""
    orders = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
    return min(steps * a / (2 * sigma**2) + math.log((a - 1) / a) - (math.log(delta) + math.log(a)) / (a - 1)
               for a in orders)


@pytest.mark.parametrize("sigma, steps", [(1.0, 1), (2.0, 10), (5.0, 100)])
def test_full_batch_epsilon_is_the_gaussian_mechanisms(sigma, steps):
    assert epsilon([Steps(sigma, 1.0, steps)], CFG) == pytest.approx(_gaussian_full_batch_epsilon(sigma, steps, 1e-5),
                                                                     rel=1e-9)


def test_subsampled_epsilon_agrees_with_googles_dp_accounting():
    dp_accounting = pytest.importorskip("dp_accounting")
    history = [Steps(1.1, 256 / 60_000, 14_062), Steps(2.0, 0.02, 300)]
    ours = epsilon(history, CFG)
    accountant = dp_accounting.rdp.RdpAccountant([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)))
    for s in history:
        accountant.compose(dp_accounting.PoissonSampledDpEvent(
            s.sample_rate, dp_accounting.GaussianDpEvent(s.noise_multiplier)), s.steps)
    assert ours == pytest.approx(accountant.get_epsilon(1e-5), rel=0.01)
    assert 1 < ours < 10  # the classic MNIST DP-SGD setting (Abadi et al. 2016) spends a few units


def test_epsilon_composes_and_grows_with_steps():
    one = epsilon([Steps(1.0, 0.05, 100)], CFG)
    assert epsilon([], CFG) == 0.0
    assert epsilon([Steps(1.0, 0.05, 100)] * 2, CFG) == pytest.approx(epsilon([Steps(1.0, 0.05, 200)], CFG))
    assert epsilon([Steps(1.0, 0.05, 200)], CFG) > one > epsilon([Steps(2.0, 0.05, 100)], CFG)


def test_prv_accountant_is_close_to_rdp():
    prv = CFG.model_copy(update={"accountant": "prv"})
    history = [Steps(1.0, 0.05, 200)]
    assert epsilon(history, prv) == pytest.approx(epsilon(history, CFG), rel=0.25)  # PRV is tighter, not another scale
    assert epsilon(history, prv) <= epsilon(history, CFG)


def test_another_accountant_version_is_refused():
    with pytest.raises(AccountingError, match="accountant_version is 'opacus-1.5.0' but this fedchain computes with"):
        epsilon([Steps(1.0, 0.1, 1)], CFG.model_copy(update={"accountant_version": "opacus-1.5.0"}))


def test_micro_epsilon_rounds_up():
    assert to_micro(1.5) == 1_500_000 and to_micro(0.0) == 0
    assert to_micro(1.0000001) == 1_000_001
    with pytest.raises(AccountingError):
        to_micro(float("nan"))


def test_noise_is_the_minimum_when_it_fits_else_just_enough_for_the_rounds_left():
    loose = CFG.model_copy(update={"epsilon_cap": 1000.0})
    assert noise_for_budget([], loose, 0.1, 20, 5) == 1.0
    sigma = noise_for_budget([], CFG, 0.1, 20, 5)
    assert sigma > 1.0
    assert epsilon([Steps(sigma, 0.1, 100)], CFG) <= 3.0 < epsilon([Steps(sigma * 0.998, 0.1, 100)], CFG)


def test_noise_search_refuses_a_spent_budget():
    with pytest.raises(BudgetExhaustedError, match=r"the privacy budget is spent: epsilon 16\.51\d* of the cap 3 already"):
        noise_for_budget([Steps(0.5, 1.0, 2)], CFG.model_copy(update={"min_noise_multiplier": 0.5}), 0.1, 20, 1)


# ---------------------------------------------------------------- the trainer


def _linear_spec(privacy: PrivacyConfig | None, batch_size: int = 64) -> object:
    spec = mnist_spec("mlp", arch_config={"hidden": []},
                      training=TrainingConfig(local_epochs=1, batch_size=batch_size, learning_rate=1.0, momentum=0.0))
    return spec.model_copy(update={"privacy": privacy})


def _loud_data(n: int = 32) -> LocalData:
    rng = np.random.default_rng(0)
    return LocalData((rng.random((n, 1, 28, 28)) * 50).astype(np.float32), rng.integers(0, 10, n))


def _norm(delta: dict[str, torch.Tensor]) -> float:
    return float(torch.sqrt(sum((t.double() ** 2).sum() for t in delta.values())))


def test_a_private_step_is_clipped_then_noised():
    """One full-batch step at lr 1: the clipped mean gradient moves the weights by at most C * n / batch, where a
    plain step on the same loud data moves them far more; the noise is N(0, (sigma C / batch)^2) per coordinate."""
    data = _loud_data(32)
    quiet = PrivacyConfig(epsilon_cap=4294, clipping_norm=1.0, min_noise_multiplier=0.02)  # the largest cap
    spec = _linear_spec(quiet)
    state = initial_state(spec, 0)
    assert round_steps(spec, len(data)) == (1.0, 1)  # 32 samples, batch 64: q = 1, one step
    plain = SupervisedTrainer().train(build_model(spec), state, data, _linear_spec(None), seed=0, device=CPU,
                                      progress=False)
    clipped = DPTrainer().train(build_model(spec), state, data, spec, seed=0, device=CPU, progress=False)
    assert _norm(plain.delta) > 10
    assert _norm(clipped.delta) <= 1.0 * 32 / 64 + 0.02 * 2 * math.sqrt(7850) / 64  # clipped sum + the small noise
    assert clipped.declaration.noise_multiplier == 0.02

    noisy = spec.model_copy(update={"privacy": PrivacyConfig(epsilon_cap=4294, clipping_norm=1.0,
                                                             min_noise_multiplier=4.0)})
    a = DPTrainer().train(build_model(noisy), state, data, noisy, seed=1, device=CPU, progress=False)
    b = DPTrainer().train(build_model(noisy), state, data, noisy, seed=2, device=CPU, progress=False)
    diff = ParamLayout.from_state_dict(state).flatten({k: a.delta[k] - b.delta[k] for k in a.delta})
    # the difference of two independent noises: std sqrt(2) * sigma * C / batch per coordinate
    assert float(diff.std()) == pytest.approx(math.sqrt(2) * 4.0 / 64, rel=0.05)
    same = DPTrainer().train(build_model(noisy), state, data, noisy, seed=1, device=CPU, progress=False)
    assert all(torch.equal(a.delta[k], same.delta[k]) for k in a.delta)  # deterministic for a seed


def test_training_stops_at_the_cap_and_says_what_it_spent():
    spec = _linear_spec(PrivacyConfig(epsilon_cap=2.0, min_noise_multiplier=0.7), batch_size=8)
    data = _loud_data(64)
    trainer = DPTrainer(rounds_left=1)  # each round plans as if it were the last: the budget runs out
    state = initial_state(spec, 0)
    rounds = 0
    with pytest.raises(BudgetExhaustedError, match=r"the privacy budget is spent: epsilon (1\.99\d+|2\.0000) of the "
                                                   r"cap 2 already, and 1 more round\(s\) of 8 step\(s\) would exceed"):
        for rounds in range(1, 50):  # noqa: B007
            result = trainer.train(build_model(spec), state, data, spec, seed=rounds, device=CPU, progress=False)
            assert result.declaration.epsilon_micro <= 2_000_000
    assert rounds <= 3  # the first round spends (almost) the whole cap at the smallest noise that fits
    assert trainer.budget.spent() <= 2.0 and len(trainer.budget.spends) == rounds - 1


def test_trainer_for_a_private_spec_is_dp_sgd():
    assert isinstance(trainer_for(_linear_spec(CFG)), DPTrainer)
    assert isinstance(trainer_for(_linear_spec(None)), SupervisedTrainer)


# ---------------------------------------------------------------- models for private tasks


def test_private_models_replace_batch_norm_and_lstm_only_for_private_tasks():
    bn = mnist_spec("cnn", arch_config={"channels": [16, 48], "hidden": 32, "pool_to": 3, "batch_norm": True})
    plain = build_model(bn)
    private = build_model(bn.model_copy(update={"privacy": CFG}))
    assert any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    norms = [m for m in private.modules() if isinstance(m, nn.GroupNorm)]
    assert [(m.num_groups, m.num_channels) for m in norms] == [(16, 16), (16, 48)]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in private.modules())

    text = shakespeare_spec(window=10, arch_config={"embed": 8, "hidden": 16, "layers": 2})
    lstm_plain = build_model(text)
    lstm_private = build_model(text.model_copy(update={"privacy": CFG}))
    assert isinstance(lstm_plain.lstm, nn.LSTM) and type(lstm_private.lstm).__name__ == "DPLSTM"
    assert sorted(lstm_plain.state_dict()) == sorted(lstm_private.state_dict())  # nn.LSTM's names only
    lstm_private.load_state_dict(lstm_plain.state_dict())
    x = torch.randint(0, 95, (3, 10))
    assert torch.allclose(lstm_plain(x), lstm_private(x), atol=1e-5)  # the same computation


@pytest.mark.parametrize("arch", ["cnn", "mlp", "char-lstm", "cnn-bn"])
def test_every_shipped_model_trains_privately(arch):
    if arch == "char-lstm":
        spec = shakespeare_spec(window=8, arch_config={"embed": 8, "hidden": 16, "layers": 1},
                                training=TrainingConfig(local_epochs=1, batch_size=8))
        data = LocalData(np.random.default_rng(0).integers(0, 95, (24, 8)), np.random.default_rng(1).integers(0, 95, (24, 8)))
    else:
        config = {"channels": [8, 8], "hidden": 16, "pool_to": 3, "batch_norm": True} if arch == "cnn-bn" else None
        spec = mnist_spec(arch[:3], arch_config=config, training=TrainingConfig(local_epochs=1, batch_size=8))
        data = _loud_data(24)
    spec = spec.model_copy(update={"privacy": CFG.model_copy(update={"epsilon_cap": 50.0})})  # the minimum noise fits
    result = trainer_for(spec).train(build_model(spec), initial_state(spec, 0), data, spec, seed=0, device=CPU,
                                     progress=False)
    assert result.declaration.steps == 3 and result.declaration.noise_multiplier == 1.0
    assert set(result.delta) == set(ParamLayout.from_state_dict(initial_state(spec, 0)).names)
    assert all(torch.isfinite(t).all() for t in result.delta.values())


# ---------------------------------------------------------------- the contributor's budget file


def test_budget_is_kept_across_restarts_and_bound_to_its_chain_and_task(tmp_path):
    path = tmp_path / "task3.privacy.json"
    budget = PrivacyBudget.open(path, BINDING, 3, CFG)
    assert budget.spends == [] and budget.spent() == 0.0
    budget.record(Spend(0, Steps(1.2, 0.05, 40), 812_345))
    budget.record(Spend(1, Steps(1.2, 0.05, 40), 1_212_345))
    again = PrivacyBudget.open(path, BINDING, 3, CFG)
    assert again.spends == budget.spends and again.spent() == pytest.approx(epsilon(budget.history, CFG))
    assert again.last_for(1).epsilon_micro == 1_212_345 and again.last_for(2) is None
    with pytest.raises(BudgetFileError, match="not task 4's"):
        PrivacyBudget.open(path, BINDING, 4, CFG)
    with pytest.raises(StateMismatchError):
        PrivacyBudget.open(path, StateBinding(1, BINDING.contract, 1, BINDING.block_hash), 3, CFG)


# ---------------------------------------------------------------- the declaration and the validator's judgement


def _declaration(**changes: object) -> PrivacyDeclaration:
    earlier = (Steps(1.2, 0.25, 8),)
    fields: dict[str, object] = dict(accountant="rdp", accountant_version="opacus-1.6.0", clipping_norm=1.0,
                                     delta=1e-5, noise_multiplier=1.2, sample_rate=0.25, steps=8, earlier=earlier)
    fields.update(changes)
    history = [*fields["earlier"], Steps(fields["noise_multiplier"], fields["sample_rate"], fields["steps"])]  # type: ignore[list-item,misc,arg-type]
    fields.setdefault("epsilon_micro", to_micro(epsilon(history, CFG)))
    return PrivacyDeclaration(**fields)  # type: ignore[arg-type]


def _judge(decl: PrivacyDeclaration | None, *, on_chain: int | None = None, num_samples: int = 64,
           privacy: PrivacyConfig | None = CFG) -> Reason | None:
    spec = mnist_spec(training=TrainingConfig(batch_size=16)).model_copy(update={"privacy": privacy})
    extensions = {EXTENSION: decl.record()} if decl is not None else {}
    chain_value = on_chain if on_chain is not None else (decl.epsilon_micro if decl else None)
    return judge(spec, extensions, num_samples, chain_value)


def test_a_true_declaration_passes_and_round_trips_through_the_envelope():
    decl = _declaration()
    assert _judge(decl) is None
    tensors = {"fc.weight": torch.zeros(3, 4), "fc.bias": torch.zeros(3)}
    env = UpdateEnvelope(7, 0, "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o", 64,
                         "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", tensors, extensions={EXTENSION: decl.record()})
    decoded = decode_update(encode_update(env), {"fc.bias": ((3,), "float32"), "fc.weight": ((3, 4), "float32")})
    assert PrivacyDeclaration.from_record(decoded.extensions[EXTENSION]) == decl


@pytest.mark.parametrize("changes", [
    {"noise_multiplier": 0.9},                       # below the spec's minimum noise
    {"earlier": (Steps(0.5, 0.25, 8),)},             # ... in an earlier round
    {"clipping_norm": 1.5},                          # above the spec's clipping norm
    {"delta": 1e-3},
    {"accountant": "prv"},
    {"sample_rate": 0.1},                            # not batch_size / num_samples
])
def test_declarations_breaking_the_spec_are_provable_faults(changes):
    assert _judge(_declaration(**changes)) is Reason.BAD_METADATA


def test_missing_misplaced_or_contradicted_declarations_are_provable_faults():
    assert _judge(None) is Reason.BAD_METADATA  # a private task's update without one
    assert _judge(_declaration(), privacy=None) is Reason.BAD_METADATA  # one in a plain task
    decl = _declaration()
    assert _judge(decl, on_chain=decl.epsilon_micro + 1) is Reason.BAD_METADATA  # not what the chain records


def test_an_epsilon_off_the_accountant_is_rejected_without_slashing():
    true = _declaration().epsilon_micro
    assert _judge(_declaration(epsilon_micro=int(true * 1.005))) is None  # within 1%
    low = _declaration(epsilon_micro=int(true * 0.97))
    assert _judge(low) is Reason.PRIVACY_ACCOUNTING
    assert Reason.PRIVACY_ACCOUNTING not in mnist_spec().policy.slash_reasons


@pytest.mark.parametrize("record, message", [
    ({"epsilon": 1}, "fields must be exactly"),
    ({"steps": 0}, "steps must be an integer in"),
    ({"noise_multiplier": "1.0"}, "noise_multiplier must be a finite number"),
    ({"sample_rate": 1.5}, r"sample_rate must be in \(0, 1\]"),
    ({"earlier": [[1.0, 0.1]]}, r"earlier\[0\] must be"),
])
def test_malformed_records_are_refused(record, message):
    base = _declaration().record()
    bad = {**base, **record} if "epsilon" not in record or len(record) > 1 else {"epsilon": 1}
    with pytest.raises(ValueError, match=message):
        PrivacyDeclaration.from_record(bad)
