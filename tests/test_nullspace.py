"""Tests of the retained-subspace module: unfolding, spectra, eps, GPM merge, cache and projection."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unlearn_core.errors import MethodError
from unlearn_core.nullspace import (GradientProjector, LayerEnergy, accumulate_energy, build_retained_space,
                                    class_factors, decompose_factor, gpm_merge, incremental_space,
                                    model_fingerprint, preactivation_drift, rank_for_energy, representation_rows,
                                    sample_per_class, tracked_layers)


class Wrapper(nn.Module):
    """Takes float images in [0, 1] like the library's models (``to_float`` of uint8 is exact for these)."""

    def __init__(self, *layers):
        super().__init__()
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


def explicit_patches(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """Representation columns built by hand (pad, slide, flatten), as rows: the layout reference."""
    (kh, kw), (sh, sw), (dh, dw), (ph, pw) = conv.kernel_size, conv.stride, conv.dilation, conv.padding
    padded = F.pad(x, (pw, pw, ph, ph))
    out_h = (padded.shape[2] - dh * (kh - 1) - 1) // sh + 1
    out_w = (padded.shape[3] - dw * (kw - 1) - 1) // sw + 1
    rows = []
    for n in range(x.shape[0]):
        for i in range(out_h):
            for j in range(out_w):
                patch = padded[n, :, i * sh:i * sh + dh * (kh - 1) + 1:dh, j * sw:j * sw + dw * (kw - 1) + 1:dw]
                rows.append(patch.reshape(-1))
    return torch.stack(rows)


def test_conv_rows_follow_the_layers_padding_stride_and_dilation():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=2, dilation=2)
    x = torch.randn(2, 2, 9, 7)
    rows = representation_rows(conv, x)
    assert torch.allclose(rows, explicit_patches(x, conv), atol=1e-6)
    # The layout matches weight.view(C_out, -1): rows @ W^T reproduces the convolution.
    out = conv(x)
    by_rows = rows @ conv.weight.view(3, -1).T + conv.bias
    assert torch.allclose(by_rows, out.permute(0, 2, 3, 1).reshape(-1, 3), atol=1e-5)


def test_spectrum_equals_svd_of_the_explicit_representation_matrix():
    torch.manual_seed(1)
    conv = nn.Conv2d(2, 4, 3, padding=1)
    x = torch.rand(6, 2, 5, 5)
    energy = LayerEnergy(18)
    for batch in x.split(2):  # batch by batch, as the hooks see it
        energy.add(representation_rows(conv, batch))
    values, vectors = energy.decompose()
    R = explicit_patches(x, conv).double().T
    u, s, _ = torch.linalg.svd(R, full_matrices=False)
    # float32 products of bounded chunks, summed in float64: agreement to float32 precision.
    assert np.allclose(values.numpy(), (s ** 2).numpy()[:len(values)], rtol=1e-5)
    # Same subspaces: the projectors onto the top 5 directions agree.
    assert torch.allclose(vectors[:, :5] @ vectors[:, :5].T, u[:, :5] @ u[:, :5].T, atol=1e-5)


def test_few_columns_path_matches_the_gram_path():
    torch.manual_seed(2)
    rows = torch.randn(40, 100, dtype=torch.float64) @ torch.randn(100, 100, dtype=torch.float64)
    kept = LayerEnergy(100)
    kept.add(rows)
    assert kept.gram is None  # 40 columns < 100 inputs: the columns are kept, not a 100 x 100 Gram
    gram = LayerEnergy(100)
    gram.add(torch.cat([rows, torch.zeros(70, 100, dtype=torch.float64)]))  # same energy, > d columns
    assert gram.gram is not None
    (v1, u1), (v2, u2) = kept.decompose(), gram.decompose()
    assert len(v1) == len(v2) == 40
    assert np.allclose(v1.numpy(), v2.numpy(), rtol=1e-7)
    assert torch.allclose(u1 @ u1.T, u2 @ u2.T, atol=1e-7)
    assert torch.allclose(u1.T @ u1, torch.eye(40, dtype=torch.float64), atol=1e-10)


def test_padding_makes_the_basis_span_border_patches():
    conv = nn.Conv2d(1, 2, 3, padding=1)
    model = Wrapper(conv)
    images = torch.full((4, 1, 6, 6), 255, dtype=torch.uint8)  # constant images: interior patches are all alike
    space = build_retained_space(model, images, eps=1.0, device=torch.device("cpu"))
    basis = space.basis("net.0")
    border = explicit_patches(torch.ones(1, 1, 6, 6), conv)  # includes the zero-padded border patches
    residual = border - border @ basis @ basis.T
    assert float(residual.norm()) < 1e-4 * float(border.norm())
    assert basis.shape[1] > 1  # interior patches alone would give rank 1
    # The release's unfolding (stride 1, no padding) sees only the interior patches and misses the border.
    interior = LayerEnergy(9)
    interior.add(F.unfold(torch.ones(4, 1, 6, 6), 3).transpose(1, 2).reshape(-1, 9))
    _, interior_basis = interior.decompose()
    assert interior_basis.shape[1] == 1
    missed = border - border @ interior_basis.float() @ interior_basis.float().T
    assert float(missed.norm()) > 0.3 * float(border.norm())


def test_small_maps_are_never_left_without_columns():
    model = Wrapper(nn.Conv2d(1, 2, 3, padding=1))
    images = torch.randint(0, 256, (3, 1, 2, 2), dtype=torch.uint8)  # 2x2 maps: no unpadded 3x3 patch fits
    energy = accumulate_energy(model, images, torch.device("cpu"))
    assert energy["net.0"].columns == 3 * 4
    assert energy["net.0"].decompose()[0].sum() > 0


def test_rank_grows_with_eps_and_a_full_rank_layer_reaches_its_input_dimension(digits_class3):
    setup = digits_class3
    model = setup.original.model
    images = setup.bundle.train_x[torch.as_tensor(setup.split.retain_idx)]
    space = build_retained_space(model, images, eps=0.9, device=setup.device)
    eps_values = [0.5, 0.8, 0.9, 0.95, 0.99, 0.999, 1.0]
    for name, spectrum in space.layers.items():
        ranks = [spectrum.rank(e) for e in eps_values]
        assert ranks == sorted(ranks), name
        assert ranks[0] < ranks[-1], name
        assert spectrum.null_dim(0.99) == spectrum.input_dim - spectrum.rank(0.99)
        cumulative = spectrum.cumulative_energy()
        assert cumulative[spectrum.rank(0.99) - 1] >= 0.99 - 1e-12
        assert cumulative[spectrum.rank(0.99) - 2] < 0.99
    # A new eps comes from the stored spectra and agrees with a fresh build at that eps.
    fresh = build_retained_space(model, images, eps=0.99, device=setup.device)
    assert space.ranks(0.99) == fresh.ranks() == space.with_eps(0.99).ranks()

    torch.manual_seed(0)
    linear = nn.Linear(12, 3)
    energy = LayerEnergy(12)
    energy.add(torch.randn(500, 12))  # inputs that span every direction
    values, _ = energy.decompose()
    padded = np.zeros(12)
    padded[:len(values)] = values.numpy()
    assert rank_for_energy(padded, 1.0) == linear.in_features
    assert rank_for_energy(padded, 0.5) < linear.in_features


def test_summary_has_what_the_dashboard_draws(digits_class3):
    setup = digits_class3
    images = setup.bundle.train_x[torch.as_tensor(setup.split.retain_idx[:300])]
    space = build_retained_space(setup.original.model, images, eps=0.97, device=setup.device)
    rows = space.summary(0.9)
    assert [row["layer"] for row in rows] == list(tracked_layers(setup.original.model))
    for row in rows:
        assert len(row["spectrum"]) == len(row["cumulative"]) == row["input_dim"]
        assert abs(sum(row["spectrum"]) - 1.0) < 1e-9
        assert row["eps"] == 0.9 and row["rank"] + row["null_dim"] == row["input_dim"]


def test_gpm_merge_is_orthonormal_and_captures_each_class(digits_class3, tmp_path):
    setup = digits_class3
    model = setup.original.model
    by_class = sample_per_class(setup.bundle.train_y.numpy(), np.asarray(setup.split.retain_idx), 60, 0)
    images = {c: setup.bundle.train_x[torch.as_tensor(idx)] for c, idx in by_class.items()}
    keys = {c: f"digits:{c}:{len(idx)}" for c, idx in by_class.items()}
    factors = class_factors(model, images, setup.device, cache_dir=tmp_path, sample_keys=keys)
    assert len(list(tmp_path.glob("nullspace-*.pt"))) == len(by_class)
    cached = class_factors(model, images, setup.device, cache_dir=tmp_path, sample_keys=keys)
    for c in factors:
        for name in factors[c]:
            assert torch.equal(factors[c][name].cpu(), cached[c][name].cpu())

    classes = sorted(factors)
    space = incremental_space(model, factors, classes, eps=0.97, eps_step=0.003)
    for name in tracked_layers(model):
        basis = space.basis(name).double()
        assert torch.allclose(basis.T @ basis, torch.eye(basis.shape[1], dtype=torch.float64), atol=1e-5)
        for t, c in enumerate(classes):
            factor = factors[c][name].double()
            captured = float(((basis.T @ factor) ** 2).sum()) / float((factor ** 2).sum())
            assert captured >= 0.97 + 0.003 * t - 1e-5, (name, c, captured)
    # A stricter first threshold can only add directions.
    strict = incremental_space(model, factors, classes, eps=0.995, eps_step=0.0)
    assert all(strict.ranks()[n] >= space.ranks()[n] for n in space.layers)


def test_gpm_merge_adds_nothing_for_a_class_already_spanned():
    torch.manual_seed(3)
    first = torch.randn(10, 4, dtype=torch.float64)
    inside = first @ torch.randn(4, 6, dtype=torch.float64)  # lies in the span of the first class
    basis = gpm_merge([first, inside], [0.999, 0.999], 10)
    assert basis.shape[1] == 4
    outside = torch.randn(10, 3, dtype=torch.float64)
    assert gpm_merge([first, outside], [0.999, 0.999], 10).shape[1] == 7


def test_cache_key_follows_the_model_weights(digits_class3):
    model = digits_class3.original.model
    import copy

    changed = copy.deepcopy(model)
    with torch.no_grad():
        changed.head.weight[0, 0] += 1e-3
    assert model_fingerprint(model) == model_fingerprint(copy.deepcopy(model))
    assert model_fingerprint(model) != model_fingerprint(changed)


def test_projection_removes_the_retained_component_and_freezes_1d_parameters():
    torch.manual_seed(4)
    model = Wrapper(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3))
    images = torch.randint(0, 256, (20, 1, 6, 6), dtype=torch.uint8)
    space = build_retained_space(model, images, eps=0.95, device=torch.device("cpu"))
    projector = space.projector(model)
    assert set(projector.operators) == {model.net[0], model.net[4]}  # keyed by the modules themselves
    model(torch.rand(5, 1, 6, 6)).square().sum().backward()
    shares = projector.removed_share()
    assert all(0.0 < share < 1.0 for share in shares.values())
    projector.project()
    for module in (model.net[0], model.net[4]):
        flat = module.weight.grad.reshape(module.weight.shape[0], -1)
        P = projector.projection_matrix(module)
        assert float((flat @ P).norm()) < 1e-5 * max(1.0, float(flat.norm()))
        assert float(flat.norm()) > 0
    for parameter in model.parameters():
        if parameter.dim() == 1:
            assert float(parameter.grad.abs().sum()) == 0.0


def test_grouped_convolutions_are_refused():
    with pytest.raises(MethodError, match="groups"):
        tracked_layers(Wrapper(nn.Conv2d(4, 4, 3, groups=2)))


def test_drift_is_zero_for_an_unchanged_model_and_positive_after_a_change(digits_class3):
    import copy

    model = digits_class3.original.model
    images = digits_class3.bundle.train_x[:50]
    same = preactivation_drift(model, copy.deepcopy(model), images)
    assert all(value == 0.0 for value in same.values())
    changed = copy.deepcopy(model)
    with torch.no_grad():
        changed.head.weight.mul_(1.1)
    drift = preactivation_drift(model, changed, images)
    assert abs(drift["head"] - 0.1) < 0.05 and drift["body.1"] == 0.0


def test_decompose_factor_of_an_empty_factor_is_empty():
    values, vectors = decompose_factor(torch.zeros(5, 0, dtype=torch.float64))
    assert values.numel() == 0 and vectors.shape == (5, 0)


def test_wide_gram_gives_eigenvalues_first_and_only_the_leading_vectors_asked_for():
    from unlearn_core.nullspace import LAZY_GRAM_DIM, gram_eigenpairs

    torch.manual_seed(5)
    dim = LAZY_GRAM_DIM + 16
    factor = torch.randn(dim, 300, dtype=torch.float64) * torch.logspace(0, -3, 300, dtype=torch.float64)
    gram = factor @ factor.T
    pairs = gram_eigenpairs(gram)
    values, vectors = torch.linalg.eigh(gram)
    values, vectors = values.flip(0), vectors.flip(1)
    assert len(pairs) == 300  # the numerically zero directions of a rank-300 Gram are dropped
    assert np.allclose(pairs.values.numpy(), values[:300].numpy(), rtol=1e-8)
    top = pairs.vectors(40)
    assert top.shape == (dim, 40)
    assert torch.allclose(top @ top.T, vectors[:, :40] @ vectors[:, :40].T, atol=1e-8)
    assert torch.allclose(top.T @ top, torch.eye(40, dtype=torch.float64), atol=1e-10)


def test_ill_conditioned_factor_still_gives_an_orthonormal_basis():
    from unlearn_core.nullspace import factor_eigenpairs

    torch.manual_seed(6)
    scales = torch.logspace(0, -6, 50, dtype=torch.float64)  # eigenvalues span 1e-12: the QR pass must run
    factor = torch.linalg.qr(torch.randn(400, 50, dtype=torch.float64))[0] * scales
    for part in (factor, factor[:, :10]):  # with and without the QR pass
        pairs = factor_eigenpairs(part)
        basis = pairs.vectors()
        assert len(pairs) == part.shape[1]
        assert torch.allclose(basis.T @ basis, torch.eye(len(pairs), dtype=torch.float64), atol=1e-13)
        assert torch.allclose(basis @ (basis.T @ part), part, atol=1e-10)  # it spans the factor


def test_a_spectrum_computes_eigenvectors_only_when_a_basis_is_asked_for():
    from unlearn_core.nullspace import Eigenpairs, LayerSpectrum

    asked = []
    vectors = torch.eye(6, dtype=torch.float64)[:, :4]
    pairs = Eigenpairs(torch.tensor([4.0, 3.0, 2.0, 1.0], dtype=torch.float64),
                       lambda count: asked.append(count) or vectors[:, :count])
    spectrum = LayerSpectrum("fc", "linear", 6, np.array([4.0, 3.0, 2.0, 1.0, 0.0, 0.0]), pairs, 10)
    assert spectrum.rank(0.65) == 2 and spectrum.null_dim(0.65) == 4 and spectrum.summary(0.95)["rank"] == 4
    assert asked == []  # ranks, spectrum and the eps slider need eigenvalues only
    assert spectrum.basis(0.65).shape == (6, 2) and asked == [2]
    spectrum.basis(0.5)
    assert asked == [2]  # fewer vectors than already computed: nothing new
