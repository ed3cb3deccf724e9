"""The subspace maths on hand-made matrices, and the per-layer comparison on digits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from unlearn_core.errors import MethodError, ParameterError
from unlearn_core.nullspace import build_retained_space, sample_per_class
from unlearn_core.subspaces import (build_comparison, data_energy_share, discriminatory_directions, energy_share,
                                    esc_prune_count, left_singular_basis, orthonormal_columns, principal_angles,
                                    removed_directions, scaled_importance, scaled_projection, svd_forget_projection,
                                    svd_forget_weight)
from unlearn_core.training import extract_features


def e(i: int, d: int = 4) -> torch.Tensor:
    v = torch.zeros(d, dtype=torch.float64)
    v[i] = 1.0
    return v


def test_principal_angles_and_energy_share_of_two_planes_at_a_known_angle():
    theta = 0.3
    a = torch.stack([e(0), e(1)], 1)
    b = torch.stack([e(0), math.cos(theta) * e(1) + math.sin(theta) * e(2)], 1)
    assert np.allclose(principal_angles(a, b), [0.0, theta], atol=1e-7)
    assert energy_share(a, b) == pytest.approx((1 + math.cos(theta) ** 2) / 2)
    # Bases need not be orthonormal: scaled and mixed columns span the same plane.
    mixed = torch.stack([3 * a[:, 0] + a[:, 1], -2 * a[:, 1]], 1)
    assert np.allclose(principal_angles(mixed, b), [0.0, theta], atol=1e-7)


def test_orthogonal_identical_and_nested_subspaces():
    plane = torch.stack([e(0), e(1)], 1)
    other = torch.stack([e(2), e(3)], 1)
    assert np.allclose(principal_angles(plane, other), [math.pi / 2] * 2)
    assert energy_share(plane, other) == pytest.approx(0.0)
    assert np.allclose(principal_angles(plane, plane), [0.0, 0.0], atol=1e-7)
    assert energy_share(plane, plane) == pytest.approx(1.0)
    line = e(0)[:, None]
    assert energy_share(line, plane) == pytest.approx(1.0)  # a line inside the plane
    assert energy_share(plane, line) == pytest.approx(0.5)  # half the plane's directions in the line
    assert len(principal_angles(line, plane)) == 1
    assert math.isnan(energy_share(torch.zeros(4, 1, dtype=torch.float64), plane))
    assert len(principal_angles(torch.zeros(4, 0), plane)) == 0
    with pytest.raises(MethodError):
        energy_share(plane, torch.zeros(3, 1))


def test_data_energy_share_weighs_directions_by_their_eigenvalue():
    values = torch.tensor([3.0, 1.0, 0.0, 0.0])
    vectors = torch.eye(4, dtype=torch.float64)
    assert data_energy_share(values, vectors, e(0)[:, None]) == pytest.approx(0.75)
    assert data_energy_share(values, vectors, e(1)[:, None]) == pytest.approx(0.25)
    assert data_energy_share(values, vectors, e(2)[:, None]) == pytest.approx(0.0)
    diagonal = (e(0) + e(1))[:, None]
    assert data_energy_share(values, vectors, diagonal) == pytest.approx(0.5)


def test_scaled_importance_follows_the_release_formula():
    squared = torch.tensor([2.0, 1.0, 1.0, 0.0])  # shares 0.5, 0.25, 0.25, 0
    assert torch.allclose(scaled_importance(squared, 1.0), squared.double() / 4)
    expected = torch.tensor([3 * 0.5 / (2 * 0.5 + 1), 3 * 0.25 / (2 * 0.25 + 1), 3 * 0.25 / (2 * 0.25 + 1), 0.0],
                            dtype=torch.float64)
    assert torch.allclose(scaled_importance(squared, 3.0), expected)
    big = scaled_importance(squared, 1e9)
    assert torch.allclose(big[:3], torch.ones(3, dtype=torch.float64), atol=1e-6) and big[3] == 0
    with pytest.raises(ParameterError):
        scaled_importance(squared, 0.0)


def test_low_rank_weight_update_equals_the_dense_projection():
    generator = torch.Generator().manual_seed(0)
    d = 7
    forget = torch.randn(d, 3, generator=generator, dtype=torch.float64)
    retain = torch.randn(d, 5, generator=generator, dtype=torch.float64)
    weight = torch.randn(4, d, generator=generator, dtype=torch.float64)
    uf, sf, _ = torch.linalg.svd(forget, full_matrices=False)
    ur, sr, _ = torch.linalg.svd(retain, full_matrices=False)
    m_f, m_r = scaled_projection(uf, sf ** 2, 3.0), scaled_projection(ur, sr ** 2, 100.0)
    dense = weight @ svd_forget_projection(m_f, m_r).T
    low_rank = svd_forget_weight(weight, uf, scaled_importance(sf ** 2, 3.0), ur, scaled_importance(sr ** 2, 100.0))
    assert torch.allclose(low_rank, dense, atol=1e-12)
    # The discriminatory directions are the left singular vectors of D = M_f - M_f M_r, with its singular values.
    d_matrix = m_f - m_f @ m_r
    basis, strengths = discriminatory_directions(uf, scaled_importance(sf ** 2, 3.0), ur,
                                                 scaled_importance(sr ** 2, 100.0), tau=1e-6)
    assert np.allclose(strengths, torch.linalg.svdvals(d_matrix)[:3].numpy())
    left, _, _ = torch.linalg.svd(d_matrix)
    assert np.allclose(principal_angles(basis, left[:, :3]), 0.0, atol=1e-6)


def test_discriminatory_direction_is_the_forget_direction_the_retained_data_lacks():
    # Forget activations along e0 and e1 (equal energy), remaining ones along e1 and e2: with large alphas
    # both projections are near-exact, and D = M_f (I - M_r) keeps only e0.
    u_f, u_r = torch.stack([e(0), e(1)], 1), torch.stack([e(1), e(2)], 1)
    lam_f = scaled_importance(torch.tensor([1.0, 1.0]), 1000.0)
    lam_r = scaled_importance(torch.tensor([1.0, 1.0]), 1000.0)
    basis, strengths = discriminatory_directions(u_f, lam_f, u_r, lam_r, tau=0.5)
    assert basis.shape[1] == 1
    assert abs(float(basis[0, 0])) == pytest.approx(1.0)
    assert strengths[0] == pytest.approx(float(lam_f[0]))
    assert strengths[1] == pytest.approx(float(lam_f[1] * (1 - lam_r[0])))
    with pytest.raises(ParameterError):
        discriminatory_directions(u_f, lam_f, u_r, lam_r, tau=0.0)


def test_removed_directions_of_an_orthogonal_projection_are_its_complement():
    keep = torch.stack([e(1), e(2), e(3)], 1)
    basis, strengths = removed_directions(keep @ keep.T, tau=0.5)
    assert basis.shape[1] == 1 and abs(float(basis[0, 0])) == pytest.approx(1.0)
    assert np.allclose(strengths, [1.0, 0.0, 0.0, 0.0], atol=1e-12)


def test_esc_prune_count_and_full_left_basis():
    assert esc_prune_count(96, 1.5) == 1  # the release's AllCNN (96 features) erases one direction
    assert esc_prune_count(512, 1.5) == 7  # and ResNet-18 seven
    assert esc_prune_count(128, 0.0) == 0
    with pytest.raises(ParameterError):
        esc_prune_count(128, 101.0)
    features = torch.randn(3, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    u, sigma = left_singular_basis(features)
    assert u.shape == (6, 6) and torch.allclose(u.T @ u, torch.eye(6, dtype=torch.float64), atol=1e-12)
    assert int((sigma > 1e-9).sum()) == 3
    assert torch.allclose(orthonormal_columns(features.T).T @ u[:, :3] @ u[:, :3].T, orthonormal_columns(features.T).T,
                          atol=1e-10)


def test_comparison_on_digits_matches_unsc_and_esc(digits_class3):
    setup = digits_class3
    task = setup.task()
    model = setup.original.model
    labels = setup.bundle.train_y.numpy()
    by_class = sample_per_class(labels, np.asarray(setup.split.retain_idx), 100, 0)
    chosen = np.sort(np.concatenate(list(by_class.values())))
    retain_images = setup.bundle.train_x[torch.as_tensor(chosen)]
    forget_images, _ = task.forget_data()
    comparison = build_comparison(model, retain_images, forget_images, setup.device)
    assert list(comparison.layers) == ["body.1", "body.3", "head"] and comparison.head == "head"

    # UNSC's retained space is the one nullspace.build_retained_space finds from the same images.
    space = build_retained_space(model, retain_images, 0.99, setup.device)
    for name in comparison.layers:
        ours = comparison.unsc_retained(name, 0.99)
        assert ours.shape[1] == space.ranks()[name]
        assert np.allclose(principal_angles(ours, space.basis(name)), 0.0, atol=1e-3)

    # ESC's erased direction is the top left singular vector of the forget features.
    u, _ = left_singular_basis(extract_features(model, forget_images, setup.device))
    erased = comparison.esc_erased(1.5)
    assert erased.shape[1] == 1
    assert np.allclose(principal_angles(erased, u[:, :1]), 0.0, atol=1e-4)

    rows = comparison.rows(eps=0.99, alpha_f=3.0, alpha_r=100.0, tau=0.05, esc_p=1.5)
    head = rows[-1]
    assert head["esc_rank"] == 1 and 0 < head["unsc_rank"] < head["input_dim"]
    assert head["esc_forget_energy"] > 0.5  # the top direction holds most of the (uncentred) forget energy
    # The erased direction is shared with the remaining data: it lies mostly inside UNSC's retained space.
    assert head["esc_in_unsc"] > 0.9 and head["esc_retain_energy"] > 0.3
    for row in rows:
        assert row["svd_rank"] >= 0 and len(row["svd_strengths"]) >= 1
        assert all(0 <= s <= 1 + 1e-9 for s in row["svd_strengths"])
    # A lower eps keeps fewer directions; the comparison answers without new forward passes.
    assert comparison.rows(eps=0.9)[-1]["unsc_rank"] < head["unsc_rank"]
    with pytest.raises(MethodError):
        comparison.unsc_retained("nope", 0.99)
