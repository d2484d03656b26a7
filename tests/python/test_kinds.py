"""fedchain.learning.kinds: the next-token task kind (shapes, loss, accuracy, determinism) beside classification."""

import math

import pytest
import torch
import torch.nn.functional as F

from fedchain.core.spec import PRINTABLE_ASCII, SpecError, TrainingConfig, shakespeare_spec
from fedchain.learning.evaluation import NEXT_TOKEN, LossEvaluator, TrainingError, evaluate
from fedchain.learning.kinds import KINDS, Classification, NextToken, check_spec, kind_of, num_parameters
from fedchain.learning.models import (
    ParamLayout,
    apply_delta,
    build_model,
    count_parameters,
    initial_state,
    register_architecture,
)
from fedchain.learning.text import save_text
from fedchain.learning.trainers import train_local, trainer_for

CPU = torch.device("cpu")
SPEC = shakespeare_spec(window=16, arch_config={"embed": 8, "hidden": 32})
TEXT = ("To be, or not to be: that is the question: Whether 'tis nobler in the mind to suffer the slings and arrows "
        "of outrageous fortune, or to take arms against a sea of troubles, and by opposing end them? ") * 4


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = save_text(tmp_path_factory.mktemp("text") / "hamlet.txt", [TEXT])
    return kind_of(SPEC).load_data(path, SPEC)


def test_the_spec_kind_picks_the_next_token_kind():
    assert isinstance(kind_of(SPEC), NextToken) and set(KINDS) == {"classification", "next-token"}
    assert isinstance(kind_of(SPEC.model_copy(update={"kind": "classification"})), Classification)
    assert trainer_for(SPEC).objective is NEXT_TOKEN


def test_data_are_windows_of_ids_and_their_next_ids(data):
    n = (len(TEXT.strip()) - 1) // 16
    assert data.x.shape == data.y.shape == (n, 16) and len(data) == n
    assert (data.x[:, 1:] == data.y[:, :-1]).all()  # y is x shifted by one
    assert data.x.max() < len(PRINTABLE_ASCII)


def test_the_model_gives_logits_over_the_vocabulary_at_every_position(data):
    model = build_model(SPEC)
    out = model(torch.as_tensor(data.x[:3]))
    assert out.shape == (3, 16, 95)


def test_the_default_text_model_has_a_few_hundred_thousand_parameters():
    spec = shakespeare_spec()
    assert num_parameters(spec) == count_parameters(build_model(spec)) == 324_415


def test_loss_is_the_mean_cross_entropy_over_every_prediction_and_accuracy_counts_predictions(data):
    model, state = build_model(SPEC), initial_state(SPEC, seed=0)
    result = evaluate(model, state, data.x, data.y, device=CPU, batch_size=3, objective=NEXT_TOKEN)
    with torch.no_grad():
        logits = model(torch.as_tensor(data.x))
    expected = F.cross_entropy(logits.reshape(-1, 95), torch.as_tensor(data.y).reshape(-1))
    assert result.loss == pytest.approx(float(expected), rel=1e-5)
    assert abs(result.loss - math.log(95)) < 0.1  # an untrained model guesses about uniformly
    correct = int((logits.argmax(-1) == torch.as_tensor(data.y)).sum())
    assert result.accuracy == correct / data.y.size and result.samples == len(data)


def test_training_on_text_is_deterministic_and_lowers_the_loss(data):
    cfg = TrainingConfig(local_epochs=3, batch_size=4, learning_rate=0.01, optimizer="adam")
    base = initial_state(SPEC, seed=0)
    runs = [train_local(build_model(SPEC), base, data.x, data.y, cfg, seed=5, device=CPU, progress=False,
                        objective=NEXT_TOKEN) for _ in range(2)]
    layout = ParamLayout.from_state_dict(base)
    a, b = (layout.flatten(r.delta) for r in runs)
    assert torch.equal(a, b)  # same bytes for the same seed
    model = build_model(SPEC)
    before = evaluate(model, base, data.x, data.y, device=CPU, objective=NEXT_TOKEN)
    after = evaluate(model, apply_delta(base, a, layout), data.x, data.y, device=CPU, objective=NEXT_TOKEN)
    assert after.loss < 0.8 * before.loss and after.accuracy > before.accuracy


def test_the_scoring_oracle_agrees_with_evaluation(data):
    model, base = build_model(SPEC), initial_state(SPEC, seed=0)
    layout = ParamLayout.from_state_dict(base)
    delta = torch.randn(layout.total, generator=torch.Generator().manual_seed(0)) * 0.05
    oracle = LossEvaluator(model, layout, base, data.x, data.y, device=CPU, objective=NEXT_TOKEN)
    direct = evaluate(build_model(SPEC), apply_delta(base, delta, layout), data.x, data.y, device=CPU,
                      objective=NEXT_TOKEN)
    assert oracle(delta) == pytest.approx(direct.loss, rel=1e-5)
    assert oracle.accuracy(delta) == direct.accuracy


def test_targets_of_the_wrong_shape_are_refused(data):
    with pytest.raises(TrainingError, match=r"expected y of shape \(N, \.\.\.\)"):
        evaluate(build_model(SPEC), None, data.x, data.y[:, 0], device=CPU, objective=NEXT_TOKEN)


def test_check_spec_accepts_the_text_preset_and_refuses_a_model_that_does_not_read_ids():
    check_spec(shakespeare_spec(), max_contributors=5)
    with pytest.raises(SpecError, match="model_config: mlp with model_config"):
        check_spec(SPEC.model_copy(update={"architecture": "mlp", "arch_config": {"hidden": [8]}}))


@register_architecture("test-bag-of-characters")
class BagOfCharacters(torch.nn.Module):
    """Reads ids but predicts only one next token per window: (B, V), not (B, T, V)."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.embed = torch.nn.Embedding(num_classes, 4)
        self.head = torch.nn.Linear(4, num_classes)

    def forward(self, x):
        return self.head(self.embed(x).mean(1))


def test_check_spec_refuses_a_model_without_one_prediction_per_position():
    spec = SPEC.model_copy(update={"architecture": "test-bag-of-characters", "arch_config": {}})
    with pytest.raises(SpecError, match=r"outputs of shape \(1, 95\) for one input, expected \(1, 16, 95\)"):
        check_spec(spec)
