"""Model registry: every model on every input shape, features, seeded init."""

from __future__ import annotations

import pytest
import torch

from unlearn_core.errors import ModelError
from unlearn_core.models import MODELS, build_model, reinit_head


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("channels, size", [(1, (8, 8)), (1, (28, 28)), (3, (32, 32)), (3, (20, 12))])
def test_every_model_fits_every_shape(name, channels, size):
    model = build_model(name, channels, size, num_classes=7, seed=0).eval()
    images = torch.rand(2, channels, *size)
    with torch.no_grad():
        logits, features = model(images), model.features(images)
    assert logits.shape == (2, 7)
    assert features.shape == (2, model.feature_dim)
    assert torch.allclose(model.head(features), logits, atol=1e-5)


def test_seed_fixes_initial_weights():
    first = build_model("small_cnn", 1, (28, 28), 10, seed=3).state_dict()
    again = build_model("small_cnn", 1, (28, 28), 10, seed=3).state_dict()
    other = build_model("small_cnn", 1, (28, 28), 10, seed=4).state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_model_normalises_its_own_input():
    model = build_model("mlp", 1, (8, 8), 10, mean=(0.25,), std=(0.5,), seed=0)
    assert torch.allclose(model.normalize(torch.full((1, 1, 8, 8), 0.75)), torch.ones(1, 1, 8, 8))


def test_reinit_head_changes_weights_keeps_bias():
    model = build_model("mlp", 1, (8, 8), 10, seed=0)
    weight, bias = model.head.weight.clone(), model.head.bias.clone()
    reinit_head(model, seed=1)
    assert not torch.equal(weight, model.head.weight) and torch.equal(bias, model.head.bias)


def test_bad_model_requests_fail_clearly():
    with pytest.raises(ModelError, match="unknown model"):
        build_model("alexnet-9000", 1, (8, 8), 10)
    with pytest.raises(ModelError, match="channel"):
        build_model("mlp", 3, (8, 8), 10, mean=(0.5,), std=(0.5,))


def test_the_registry_lists_models_without_importing_torch():
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys; from unlearn_core.models import MODELS\n"
            "print(sorted(MODELS), 'torch' in sys.modules)\n"
            "from unlearn_core.models import build_model\n"
            "print(type(build_model('mlp', 1, (8, 8), 10, seed=0)).__name__, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:2] == [
        "['allcnn', 'mlp', 'resnet18', 'small_cnn', 'vgg11_bn'] False", "UnlearnModel True"]
