"""Shared 2-D maps of several models' features, point sampling and the embedding cache."""

from __future__ import annotations

import numpy as np
import pytest

from unlearn_core.embeddings import (EmbeddingCache, embedding_key, indices_digest, joint_embedding,
                                     neighbour_preservation, procrustes_align, sample_points)
from unlearn_core.errors import UnlearnError


def blobs(seed=0, n=200, dim=16, centres=3):
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=10, size=(centres, dim))
    labels = np.arange(n) % centres
    return (means[labels] + rng.normal(size=(n, dim))).astype(np.float32), labels


def test_sample_points_keeps_forget_samples_and_the_budget():
    labels = np.repeat(np.arange(10), 100)
    forget = np.arange(300, 340)
    picked = sample_points(labels, 200, seed=1, include=forget)
    assert len(picked) == 200 and np.all(np.diff(picked) > 0)
    assert set(forget) <= set(picked)
    counts = np.bincount(labels[np.setdiff1d(picked, forget)], minlength=10)
    others = np.delete(counts, 3)
    assert others.max() - others.min() <= 1  # stratified: the rest in proportion to each class's size
    assert abs(counts[3] - 0.6 * others.mean()) <= 1.5  # class 3 has 60, not 100, samples left to draw from
    assert np.array_equal(sample_points(labels, 5000), np.arange(1000))
    with pytest.raises(UnlearnError):
        sample_points(labels, 0)


def test_identical_features_land_on_identical_points_and_moved_ones_move():
    before, _ = blobs()
    after = before.copy()
    after[:20] += 25.0  # the first 20 samples' features change a lot
    maps = joint_embedding({"before": before, "after": after}, "pca")
    assert maps["before"].shape == (200, 2)
    distance = np.linalg.norm(maps["after"] - maps["before"], axis=1)
    assert np.allclose(distance[20:], 0, atol=1e-4)
    assert distance[:20].min() > 1.0


def test_transformed_sets_share_the_fitted_map():
    before, _ = blobs(1)
    maps = joint_embedding({"before": before, "after": before + 0.0, "retrained": before.copy()}, "pca",
                           fit_on=["before", "after"])
    assert np.allclose(maps["retrained"], maps["before"], atol=1e-4)
    with pytest.raises(UnlearnError, match="unknown feature set"):
        joint_embedding({"before": before}, "pca", fit_on=["nope"])
    with pytest.raises(UnlearnError, match="different widths"):
        joint_embedding({"a": before, "b": before[:, :3]}, "pca")
    with pytest.raises(UnlearnError, match="unknown reducer"):
        joint_embedding({"a": before}, "tsne")


def test_cache_round_trips_through_disk_and_survives_a_torn_file(tmp_path):
    cache = EmbeddingCache(tmp_path)
    key = embedding_key(run=3, reducer="pca", idx=indices_digest(np.arange(5)))
    assert key != embedding_key(run=4, reducer="pca", idx=indices_digest(np.arange(5)))
    value = {"before": np.ones((5, 2), np.float32), "after": np.zeros((5, 2), np.float32)}
    calls = []
    assert cache.get_or_compute(key, lambda: calls.append(1) or value)["before"].sum() == 10
    fresh = EmbeddingCache(tmp_path)  # a new process: memory is empty, disk is not
    assert np.array_equal(fresh.get(key)["after"], value["after"])
    (tmp_path / f"{key}.npz").write_bytes(b"torn")
    third = EmbeddingCache(tmp_path)
    assert third.get(key) is None
    assert third.get_or_compute(key, lambda: value)["before"].shape == (5, 2)
    assert calls == [1]


@pytest.mark.slow
def test_umap_map_keeps_clusters_apart():
    features, labels = blobs(2, n=300)
    maps = joint_embedding({"before": features, "after": features.copy(), "retrained": features.copy()},
                           "umap", seed=0, fit_on=["before", "after"])
    coords = maps["before"]
    centres = np.stack([coords[labels == c].mean(0) for c in range(3)])
    spread = max(np.linalg.norm(coords[labels == c] - centres[c], axis=1).mean() for c in range(3))
    gaps = [np.linalg.norm(centres[a] - centres[b]) for a in range(3) for b in range(a + 1, 3)]
    assert min(gaps) > 2 * spread
    # the transformed retrained copy lands in the right clusters
    nearest = np.argmin(np.linalg.norm(maps["retrained"][:, None] - centres[None], axis=2), axis=1)
    assert (nearest == labels).mean() > 0.95


def test_new_points_land_among_their_nearest_fitted_neighbours():
    from unlearn_core.embeddings import place_by_neighbours

    fitted = np.array([[0.0, 0.0], [0.1, 0.0], [10.0, 10.0], [10.1, 10.0]])
    coords = np.array([[-5.0, -5.0], [-5.0, -4.0], [5.0, 5.0], [5.0, 6.0]])
    placed = place_by_neighbours(fitted, coords, np.array([[0.05, 0.0], [10.05, 10.0], [10.0, 10.0]]), k=2)
    assert np.allclose(placed[0], [-5.0, -4.5]) and np.allclose(placed[1], [5.0, 5.5])
    assert np.linalg.norm(placed[2] - [5.0, 5.0]) < np.linalg.norm(placed[2] - [5.0, 6.0])  # nearer one weighs more
    assert placed.dtype == np.float32


def random_rotation(dim, seed=0):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(dim, dim)))
    return q


def test_procrustes_undoes_a_rotation_scale_and_shift_fitted_on_a_subset():
    before, _ = blobs(3)
    other = (before @ random_rotation(before.shape[1]) * 2.5 + 7.0).astype(np.float32)  # another network's frame
    rows = np.arange(len(before)) % 3 != 0  # fitted on two thirds, applied to every row
    aligned = procrustes_align(other, before, rows)
    assert np.allclose(aligned, before, atol=1e-3)
    with pytest.raises(UnlearnError, match="cannot align"):
        procrustes_align(other[:, :3], before)


def test_nearest_neighbours_match_sklearns_exact_search_and_the_set_definition():
    """``nearest_neighbours`` returns what sklearn's ``NearestNeighbors(k).fit(points).kneighbors(queries)`` does
    (same indices, same distances), across query chunks; ``neighbour_preservation`` counts, per point, the shared
    neighbours of both lists other than the point itself."""
    from sklearn.neighbors import NearestNeighbors

    from unlearn_core.distances import nearest_neighbours
    from unlearn_core.umapfit import euclidean_distances

    rng = np.random.default_rng(3)
    points, queries = rng.normal(size=(500, 24)), rng.normal(size=(130, 24))
    distances, indices = nearest_neighbours(points, queries, 7, chunk=50)
    ref_distances, ref_indices = NearestNeighbors(n_neighbors=7).fit(points).kneighbors(queries)
    np.testing.assert_array_equal(indices, ref_indices)
    np.testing.assert_allclose(distances, ref_distances, rtol=1e-9, atol=1e-9)
    assert nearest_neighbours(points[:5], queries, 9)[1].shape == (130, 5)  # k is capped at the points
    np.testing.assert_allclose(euclidean_distances(points[:40]),
                               np.linalg.norm(points[:40, None] - points[None, :40], axis=-1), atol=1e-9)

    coords = rng.normal(size=(500, 2))
    high = NearestNeighbors(n_neighbors=11).fit(points).kneighbors(points, return_distance=False)
    low = NearestNeighbors(n_neighbors=11).fit(coords).kneighbors(coords, return_distance=False)
    expected = sum(len((set(high[i]) - {i}) & (set(low[i]) - {i})) for i in range(500)) / (500 * 10)
    assert neighbour_preservation(points, coords, k=10) == pytest.approx(expected)


def test_neighbour_preservation_is_one_for_a_faithful_map_and_near_chance_for_noise():
    features, _ = blobs(4, n=300, dim=2)
    assert neighbour_preservation(features, features * 3.0 + 1.0, k=10) == pytest.approx(1.0)
    noise = np.random.default_rng(0).normal(size=(300, 2))
    assert neighbour_preservation(features, noise, k=10) < 0.1  # chance is 10 / 299
    with pytest.raises(UnlearnError):
        neighbour_preservation(features, noise[:10])


def test_a_retrained_set_in_another_frame_lands_on_the_original_map_only_when_aligned():
    before, labels = blobs(5, n=300)
    retrained = (before @ random_rotation(before.shape[1], 1) * 0.5).astype(np.float32)
    sets = {"before": before, "after": before.copy(), "retrained": retrained}
    retain = labels != 2
    plain = joint_embedding(sets, "pca", fit_on=["before", "after"])
    aligned = joint_embedding(sets, "pca", fit_on=["before", "after"], align={"retrained": retain})
    spread = np.linalg.norm(plain["before"] - plain["before"].mean(0), axis=1).mean()
    assert np.linalg.norm(aligned["retrained"] - aligned["before"], axis=1).max() < 0.01 * spread
    assert np.linalg.norm(plain["retrained"] - plain["before"], axis=1).mean() > 0.3 * spread
    with pytest.raises(UnlearnError, match="unknown feature set"):
        joint_embedding(sets, "pca", align={"nope": retain})


@pytest.mark.slow
def test_aligned_umap_keeps_the_retrained_models_neighbourhoods(mnist_class3):
    """The retrained panel on mnist5k: measured 31 % of 10 neighbours kept aligned, 13 % placed without alignment."""
    import torch

    from unlearn_core.embeddings import features_of

    setup = mnist_class3
    labels = setup.bundle.train_y.numpy()
    idx = sample_points(labels, 1500, seed=0, include=setup.split.forget_idx)
    images = setup.bundle.train_x[torch.as_tensor(idx)]
    sets = {"before": features_of(setup.original.model, images), "after": features_of(setup.original.model, images),
            "retrained": features_of(setup.retrained.model, images)}
    retain = ~np.isin(idx, setup.split.forget_idx)
    aligned = joint_embedding(sets, "umap", fit_on=["before", "after"], align={"retrained": retain})
    plain = joint_embedding(sets, "umap", fit_on=["before", "after"])
    kept = neighbour_preservation(sets["retrained"], aligned["retrained"], 10)
    assert kept > 0.22
    assert kept > 1.5 * neighbour_preservation(sets["retrained"], plain["retrained"], 10)


def _counted(features, probs, calls, name):
    def compute():
        calls.append(name)
        return {"features": features, "probs": probs}
    return compute


def test_the_before_map_stays_fixed_when_the_after_run_changes_and_each_panel_is_computed_once(tmp_path):
    from unlearn_core.embeddings import panel_maps

    before, labels = blobs(seed=1)
    probs = np.eye(3, dtype=np.float32)[labels]
    rng = np.random.default_rng(2)
    run_a = before + rng.normal(scale=3, size=before.shape).astype(np.float32)
    run_b = before.copy()
    run_b[:20] += 25.0  # run b moves its forget samples far
    forget = np.zeros(len(before), bool)
    forget[:20] = True
    cache, calls = EmbeddingCache(tmp_path), []
    first = panel_maps(cache, "pca", "d", forget, {"before": ("orig", _counted(before, probs, calls, "before")),
                                                   "after": ("run1", _counted(run_a, probs, calls, "a"))})
    second = panel_maps(cache, "pca", "d", forget, {"before": ("orig", _counted(before, probs, calls, "before")),
                                                    "after": ("run2", _counted(run_b, probs, calls, "b"))})
    np.testing.assert_array_equal(first["before"]["coords"], second["before"]["coords"])
    assert calls == ["before", "a", "b"]  # the before map once; each run's panel once
    # the run that did not move its remaining samples draws them exactly where the before map has them
    np.testing.assert_allclose(second["after"]["coords"][20:], second["before"]["coords"][20:], atol=1e-4)
    assert np.linalg.norm(second["after"]["coords"][:20] - second["before"]["coords"][:20], axis=1).min() > 1.0
    panel_maps(cache, "pca", "d", forget, {"before": ("orig", _counted(before, probs, calls, "before")),
                                           "after": ("run1", _counted(run_a, probs, calls, "a"))})
    assert calls == ["before", "a", "b"]  # switching back is a lookup
    fresh = EmbeddingCache(tmp_path)  # and so is a new server process: the panels are on disk
    from unlearn_core.embeddings import cached_panels

    again = cached_panels(fresh, "pca", "d", forget, {"before": "orig", "after": "run2"})
    np.testing.assert_array_equal(again["after"]["coords"], second["after"]["coords"])
    assert cached_panels(fresh, "pca", "d", forget, {"before": "orig", "after": "run3"}) is None


def test_a_retrained_model_in_another_frame_is_aligned_then_placed_on_the_fixed_map(tmp_path):
    from unlearn_core.embeddings import panel_maps

    before, labels = blobs(seed=3)
    probs = np.eye(3, dtype=np.float32)[labels]
    rotation, _ = np.linalg.qr(np.random.default_rng(4).normal(size=(16, 16)))
    retrained = (before @ rotation * 2.5 + 7.0).astype(np.float32)
    forget = np.zeros(len(before), bool)
    forget[:10] = True
    panels = panel_maps(EmbeddingCache(tmp_path), "pca", "d", forget,
                        {"before": ("orig", lambda: {"features": before, "probs": probs}),
                         "retrained": ("ret", lambda: {"features": retrained, "probs": probs})})
    np.testing.assert_allclose(panels["retrained"]["coords"], panels["before"]["coords"], atol=1e-2)
    np.testing.assert_array_equal(panels["retrained"]["features"], retrained)  # its own features, for the status


def test_placing_into_a_umap_style_map_uses_the_fitted_points_and_checks_the_width():
    from unlearn_core.embeddings import fit_before_map, place_on_map

    before, _ = blobs(seed=5)
    base = fit_before_map(before, "pca")
    np.testing.assert_allclose(place_on_map(base, before, "pca"), base["coords"], atol=1e-4)
    umap_like = {"mu": base["mu"], "scale": base["scale"], "coords": base["coords"],
                 "fitted": (before - base["mu"]) / base["scale"]}
    placed = place_on_map(umap_like, before[:5], "umap", k=1)
    np.testing.assert_allclose(placed, base["coords"][:5], atol=1e-4)  # each point onto its own fitted point
    with pytest.raises(UnlearnError):
        place_on_map(base, before[:, :8], "pca")
    with pytest.raises(UnlearnError):
        place_on_map(base, before, "umap")  # a PCA map has no fitted points to place by
