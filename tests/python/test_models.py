"""fedchain.learning.models: registry, flat layout, initial state."""

import pytest
import torch

from fedchain.core.spec import mnist_spec
from fedchain.learning.models import (
    ModelError,
    ParamLayout,
    apply_delta,
    build_architecture,
    build_model,
    count_parameters,
    initial_state,
    known_architectures,
)


@pytest.fixture(scope="module")
def spec():
    return mnist_spec()


def test_registry_has_mlp_and_cnn():
    assert {"mlp", "cnn"} <= set(known_architectures())


def test_cnn_is_small_and_maps_images_to_logits(spec):
    model = build_model(spec)
    assert 40_000 <= count_parameters(model) <= 50_000
    assert model(torch.zeros(4, 1, 28, 28)).shape == (4, 10)


def test_mlp_maps_images_to_logits():
    model = build_model(mnist_spec("mlp"))
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_unknown_architecture_lists_known_ones():
    with pytest.raises(ModelError, match="known architectures: char-lstm, cnn, mlp"):
        build_architecture("transformer", (1, 28, 28), 10)


def test_bad_model_config_named():
    with pytest.raises(ModelError, match="bad model_config.*widht"):
        build_architecture("mlp", (1, 28, 28), 10, {"widht": 3})


def test_cnn_refuses_flat_input():
    with pytest.raises(ModelError, match="channels, height, width"):
        build_architecture("cnn", (784,), 10)


def test_layout_sorted_by_name_with_offsets(spec):
    layout = ParamLayout.from_model(build_model(spec))
    assert layout.names == sorted(layout.names)
    offsets = [e.offset for e in layout.entries]
    assert offsets[0] == 0 and layout.total == sum(e.numel for e in layout.entries) == 43_082
    assert all(a.offset + a.numel == b.offset for a, b in zip(layout.entries, layout.entries[1:]))


def test_flatten_unflatten_round_trip(spec):
    state = initial_state(spec, seed=1)
    layout = ParamLayout.from_state_dict(state)
    back = layout.unflatten(layout.flatten(state))
    assert set(back) == set(state)
    assert all(torch.equal(back[k], state[k]) for k in back)


def test_flatten_into_writes_a_buffer_row(spec):
    state = initial_state(spec, seed=1)
    layout = ParamLayout.from_state_dict(state)
    buf = torch.zeros(3, layout.total)
    layout.flatten_into(state, buf[1])
    assert torch.equal(buf[1], layout.flatten(state)) and not buf[0].any() and not buf[2].any()


def test_integer_buffers_excluded_from_layout():
    model = build_architecture("cnn", (1, 28, 28), 10, {"batch_norm": True})
    layout = ParamLayout.from_model(model)
    assert "features.1.num_batches_tracked" in model.state_dict()
    assert "features.1.num_batches_tracked" not in layout.names
    assert "features.1.running_mean" in layout.names  # float buffers are averaged


def test_apply_delta_keeps_integer_buffers_and_adds_floats():
    model = build_architecture("cnn", (1, 28, 28), 10, {"batch_norm": True})
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["features.1.num_batches_tracked"] += 7
    layout = ParamLayout.from_state_dict(state)
    new = apply_delta(state, torch.ones(layout.total), layout)
    assert new["features.1.num_batches_tracked"].item() == 7
    assert torch.allclose(new["head.3.bias"], state["head.3.bias"] + 1)
    assert not torch.equal(new["head.3.bias"], state["head.3.bias"])  # input untouched, output new


def test_expected_tensors(spec):
    layout = ParamLayout.from_model(build_model(spec))
    expected = layout.expected_tensors()
    assert expected["head.3.bias"] == ((10,), "float32")
    assert list(expected) == layout.names


def test_flatten_rejects_wrong_shapes(spec):
    state = initial_state(spec, seed=0)
    layout = ParamLayout.from_state_dict(state)
    bad = dict(state, **{"head.3.bias": torch.zeros(11)})
    with pytest.raises(ModelError, match="head.3.bias.*expected \\(10,\\)"):
        layout.flatten(bad)
    with pytest.raises(ModelError, match="missing tensor"):
        layout.flatten({k: v for k, v in state.items() if k != "head.3.bias"})
    with pytest.raises(ModelError, match="length"):
        layout.unflatten(torch.zeros(5))


def test_initial_state_deterministic_for_seed(spec):
    a, b, c = initial_state(spec, 3), initial_state(spec, 3), initial_state(spec, 4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["head.1.weight"], c["head.1.weight"])


def test_initial_state_leaves_global_rng_alone(spec):
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    initial_state(spec, 9)
    assert torch.equal(torch.rand(1), expected)


def test_cnn_kaiming_init_option_changes_weights():
    torch.manual_seed(0)
    a = build_architecture("cnn", (1, 28, 28), 10, {"init": "kaiming"})
    assert torch.count_nonzero(a.features[0].bias) == 0
    with pytest.raises(ModelError, match="init must be"):
        build_architecture("cnn", (1, 28, 28), 10, {"init": "xavier"})
