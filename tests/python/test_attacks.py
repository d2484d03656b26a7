"""fedchain.sim.attacks: attacker behaviours for the demo."""

import numpy as np
import pytest
import torch

from fedchain.sim.attacks import (
    ATTACKS,
    AttackError,
    free_rider,
    get_attack,
    label_flip,
    noise_update,
    parse_attack_mix,
    perturb_copy,
    sign_flip,
)

DELTA = {"b": torch.linspace(-1, 1, 5), "a": torch.ones(2, 3)}
VEC = torch.linspace(-1, 1, 100)


def test_label_flip_reverses_labels():
    assert label_flip(np.array([0, 3, 9]), 10).tolist() == [9, 6, 0]
    assert label_flip(torch.tensor([1]), 2).tolist() == [0]


def test_sign_flip_scales_and_negates_vector_and_dict():
    assert torch.equal(sign_flip(VEC, 2.0), -2.0 * VEC)
    out = sign_flip(DELTA, 3.0)
    assert set(out) == {"a", "b"} and torch.equal(out["a"], -3.0 * DELTA["a"])


def test_noise_update_seeded_and_shaped():
    a, b, c = noise_update(DELTA, 0.1, seed=1), noise_update(DELTA, 0.1, seed=1), noise_update(DELTA, 0.1, seed=2)
    assert a["a"].shape == (2, 3) and torch.equal(a["a"], b["a"]) and not torch.equal(a["a"], c["a"])
    assert 0.05 < noise_update(torch.zeros(10_000), 0.1, 0).std() < 0.15


def test_free_rider_zero_or_tiny():
    assert not free_rider(VEC).any()
    tiny = free_rider(VEC, tiny_std=1e-6, seed=0)
    assert tiny.any() and tiny.abs().max() < 1e-4


def test_perturb_copy_stays_close():
    copy = perturb_copy(VEC, rel_std=0.01, seed=0)
    assert not torch.equal(copy, VEC)
    assert torch.nn.functional.cosine_similarity(copy, VEC, dim=0) > 0.99


def test_inputs_not_modified():
    before = VEC.clone()
    sign_flip(VEC, 2.0)
    perturb_copy(VEC, 0.1, 0)
    assert torch.equal(VEC, before)


def test_registry_names_and_stages():
    assert set(ATTACKS) == {"label-flip", "sign-flip", "noise", "free-rider", "copycat", "pseudo-label-flip"}
    assert get_attack("label-flip").stage == "data" and get_attack("copycat").stage == "copy"
    assert torch.equal(get_attack("sign-flip").apply_update(VEC, scale=1.0), -VEC)
    x, y = get_attack("label-flip").apply_data(np.zeros(2), np.array([0, 1]), 10)
    assert y.tolist() == [9, 8]


def test_parse_attack_mix():
    assert parse_attack_mix("label-flip:1, sign-flip:2") == {"label-flip": 1, "sign-flip": 2}
    assert parse_attack_mix("noise") == {"noise": 1}
    assert parse_attack_mix("") == {}


@pytest.mark.parametrize(
    "text, match",
    [
        ("flood:1", "unknown attack 'flood'; known attacks: label-flip"),
        ("noise:x", "positive integer"),
        ("noise:0", "positive integer"),
        ("noise:1,noise:2", "appears twice"),
        ("noise:1,,sign-flip:1", "empty entry"),
    ],
)
def test_parse_attack_mix_errors(text, match):
    with pytest.raises(AttackError, match=match):
        parse_attack_mix(text)
