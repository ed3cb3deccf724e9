"""Feature embeddings of several models in ONE shared 2-D map.

To see how unlearning moves features, the penultimate features of the
original ("before"), unlearned ("after") and retrained models on the same
samples are stacked and reduced together, so a point that moves in the map
moved in feature space. PCA is instant; UMAP (umap-learn) is slower: it runs
one fit at a time (:mod:`unlearn_core.umapfit`, in its helper process where
one was started) and results are cached by a small key in memory and on disk.
Nothing here imports Streamlit.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from unlearn_core import paths
from unlearn_core.arrays import ArrayCache
from unlearn_core.checkpoints import cache_key
from unlearn_core.distances import nearest_neighbours
from unlearn_core.errors import UnlearnError
from unlearn_core.umapfit import fit_coords

REDUCERS = ("pca", "umap")
CACHE_VERSION = 4  # 2: UMAP places non-fitted sets by nearest neighbours; 3: Procrustes-aligned retrained features;
# 4: the before map is fitted on the original alone and every other panel is placed into it


def features_of(model, images: torch.Tensor, device=None) -> np.ndarray:
    """Penultimate features (float32, ``(N, D)``) of raw ``uint8`` images."""
    from unlearn_core.training import extract_features

    return extract_features(model, images, device).numpy().astype(np.float32, copy=False)


def sample_points(labels: np.ndarray, max_points: int, seed: int = 0,
                  include: np.ndarray | None = None) -> np.ndarray:
    """Sorted indices of at most ``max_points`` samples, class-stratified.

    Indices in ``include`` (e.g. the forget set) are kept first, up to half
    the budget, so the highlighted samples are always in the picture.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if max_points <= 0:
        raise UnlearnError("max_points must be positive")
    if n <= max_points:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    chosen = np.zeros(n, dtype=bool)
    if include is not None and len(include):
        include = np.unique(np.asarray(include, dtype=np.int64))
        if len(include) > max_points // 2:
            include = rng.choice(include, size=max_points // 2, replace=False)
        chosen[include] = True
    budget = max_points - int(chosen.sum())
    rest = np.flatnonzero(~chosen)
    share = budget / len(rest)
    for cls in np.unique(labels[rest]):
        members = rest[labels[rest] == cls]
        take = min(len(members), int(round(len(members) * share)))
        chosen[rng.choice(members, size=take, replace=False)] = True
    picked = np.flatnonzero(chosen)
    if len(picked) > max_points:  # rounding can overshoot by a few
        keep = set(np.asarray(include if include is not None else [], dtype=np.int64).tolist())
        extra = np.array([i for i in picked if i not in keep])
        drop = rng.choice(extra, size=len(picked) - max_points, replace=False)
        picked = np.setdiff1d(picked, drop)
    return picked


@contextlib.contextmanager
def _one_blas_thread():
    # These products are small: one BLAS thread is fastest, and spinning BLAS threads on a busy machine cost
    # 10-100x (measured: 2 s instead of 20 ms for 4,000 x 128 with the load at 10 on 2 cores).
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn brings threadpoolctl; without it, just run
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _pca_fit_transform(fit: np.ndarray, others: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    with _one_blas_thread():
        return _pca_core(fit, others)


def _pca_axes(fit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean ``(1, D)`` and the top two principal axes ``(D, 2)`` of ``fit``, each axis signed so that the
    point furthest along it lies on its positive side (the map does not flip between reruns)."""
    mean = fit.mean(axis=0, keepdims=True)
    centred = (fit - mean).astype(np.float64)
    if centred.shape[0] < 2:
        return mean, np.zeros((fit.shape[1], 2))
    # The top eigenvectors of the small D x D covariance: much cheaper than an SVD of the N x D data.
    _, vectors = np.linalg.eigh(centred.T @ centred)
    axes = vectors[:, ::-1][:, :2]
    if axes.shape[1] < 2:
        axes = np.pad(axes, ((0, 0), (0, 2 - axes.shape[1])))
    coords = centred @ axes
    signs = np.sign(coords[np.abs(coords).argmax(axis=0), np.arange(2)])
    signs[signs == 0] = 1
    return mean, axes * signs


def _pca_core(fit: np.ndarray, others: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    mean, axes = _pca_axes(fit)
    return (((fit - mean) @ axes).astype(np.float32),
            [((o - mean) @ axes).astype(np.float32) for o in others])


def _umap_fit_transform(fit: np.ndarray, others: list[np.ndarray], seed: int,
                        n_neighbors: int = 15) -> tuple[np.ndarray, list[np.ndarray]]:
    """The UMAP map of ``fit`` (:func:`unlearn_core.umapfit.fit_coords`), and ``others`` placed in it by
    :func:`place_by_neighbours`."""
    coords = fit_coords(fit, seed, n_neighbors)
    n_neighbors = max(2, min(n_neighbors, len(fit) - 1))
    return coords, [place_by_neighbours(fit, coords, o, n_neighbors) for o in others]


def place_by_neighbours(fitted: np.ndarray, coords: np.ndarray, new: np.ndarray, k: int = 15) -> np.ndarray:
    """Place new points in a fitted 2-D map at the distance-weighted mean of their ``k`` nearest fitted points.

    This is where umap's own ``transform`` starts its points. Its refinement
    is left out on purpose: below 4,096 fitted points umap-learn finds the
    neighbours with a Python-level loop over every pair (8.5 s for 2,000 new
    points against 4,000, measured in benchmarks/bench_app.py's setting),
    while this takes milliseconds and keeps every new point inside the
    neighbourhood its features belong to.
    """
    k = max(1, min(k, len(fitted)))
    distances, neighbours = nearest_neighbours(fitted, new, k)
    # Weights fall off with the distance beyond the nearest neighbour, as in umap's fuzzy memberships.
    scale = np.maximum((distances - distances[:, :1]).mean(axis=1, keepdims=True), 1e-12)
    weights = np.exp(-(distances - distances[:, :1]) / scale)
    weights /= weights.sum(axis=1, keepdims=True)
    return np.einsum("nk,nkd->nd", weights, coords[neighbours]).astype(np.float32)


def procrustes_align(source: np.ndarray, target: np.ndarray, rows=None) -> np.ndarray:
    """Map ``source`` features into ``target``'s feature space by a rotation, a uniform scale and a shift.

    Another network (the retrained reference) has its own feature basis: its
    features cannot be compared with the original's coordinate by
    coordinate. The orthogonal Procrustes solution (rotation ``R = U Vᵀ`` from
    the SVD of ``Aᵀ B`` on centred features, scale ``trace(S) / |A|²``) is
    fitted on ``rows`` only (the remaining samples: both models know them, so
    they should agree there) and then applied to every row. A rotation and a
    uniform scale keep every distance ratio, so each point keeps exactly the
    neighbours it had in the source model's own space; only the frame changes.
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if source.shape != target.shape:
        raise UnlearnError(f"cannot align features of shape {source.shape} onto {target.shape}")
    fit = np.arange(len(source)) if rows is None else np.asarray(rows)
    if fit.dtype == bool:
        fit = np.flatnonzero(fit)
    if len(fit) < 2:
        raise UnlearnError("aligning two feature spaces needs at least 2 shared samples")
    a_mean, b_mean = source[fit].mean(0), target[fit].mean(0)
    a, b = source[fit] - a_mean, target[fit] - b_mean
    u, singular, vt = np.linalg.svd(a.T @ b, full_matrices=False)
    rotation = u @ vt
    norm = float((a ** 2).sum())
    scale = float(singular.sum()) / norm if norm > 0 else 1.0
    return ((source - a_mean) @ rotation * scale + b_mean).astype(np.float32)


def neighbour_preservation(features: np.ndarray, coords: np.ndarray, k: int = 10) -> float:
    """Share of each point's ``k`` nearest neighbours in ``features`` also among its ``k`` nearest in ``coords``.

    The mean over points, in [0, 1]: 1 means the 2-D panel keeps every local
    neighbourhood of the model's own feature space; a random placement keeps
    about ``k / N``. It says how far a panel can be read as that model's
    feature space.
    """
    features, coords = np.asarray(features), np.asarray(coords)
    n = len(features)
    if n != len(coords):
        raise UnlearnError(f"{n} feature rows but {len(coords)} map points")
    k = min(int(k), n - 1)
    if k < 1:
        return float("nan")
    # k + 1 because each point is its own nearest neighbour; duplicates are why self is removed by index, not rank.
    high = nearest_neighbours(features, features, k + 1)[1]
    low = nearest_neighbours(coords, coords, k + 1)[1]
    # Row i of both lists holds distinct indices: count the shared ones other than i itself.
    shared = (high[:, :, None] == low[:, None, :]) & (high[:, :, None] != np.arange(n)[:, None, None])
    return int(shared.sum()) / (n * k)


def joint_embedding(feature_sets: dict[str, np.ndarray], reducer: str = "pca", seed: int = 0,
                    fit_on: list[str] | None = None, align: dict | None = None) -> dict[str, np.ndarray]:
    """Reduce several feature sets of the SAME samples into one shared 2-D map.

    Sets named in ``fit_on`` (default: all) are stacked and fitted together,
    so their points share one map; any other set is placed into
    that map (PCA: its projection; UMAP: :func:`place_by_neighbours`). ``align``
    maps a set's name to the rows (mask or indices) on which it is first
    aligned onto the first set by :func:`procrustes_align`: a set from another
    network (the retrained reference) must be brought into the first model's
    feature frame before it can be placed in that model's map. Every set is
    standardised with the statistics of the first (the "before" model), so
    distances mean the same in every set. Returns one ``(N, 2)`` array per name.
    """
    if reducer not in REDUCERS:
        raise UnlearnError(f"unknown reducer {reducer!r}; choose one of {', '.join(REDUCERS)}")
    if not feature_sets:
        raise UnlearnError("no feature sets to embed")
    names = list(feature_sets)
    fit_on = list(fit_on) if fit_on else names
    unknown = [n for n in [*fit_on, *(align or {})] if n not in feature_sets]
    if unknown:
        raise UnlearnError(f"cannot fit on unknown feature set(s) {', '.join(unknown)}")
    dims = {feature_sets[name].shape[1] for name in names}
    if len(dims) != 1:
        raise UnlearnError(f"feature sets have different widths {sorted(dims)}; they must come from one architecture")
    reference = feature_sets[names[0]]
    sets = {name: (procrustes_align(feature_sets[name], reference, (align or {})[name])
                   if name in (align or {}) else feature_sets[name]) for name in names}
    mean = reference.mean(axis=0, keepdims=True)
    scale = reference.std(axis=0, keepdims=True).mean() + 1e-6
    scaled = {name: ((sets[name] - mean) / scale).astype(np.float32) for name in names}
    rest = [n for n in names if n not in fit_on]
    stacked = np.concatenate([scaled[n] for n in fit_on])
    if reducer == "pca":
        coords, transformed = _pca_fit_transform(stacked, [scaled[n] for n in rest])
    else:
        coords, transformed = _umap_fit_transform(stacked, [scaled[n] for n in rest], seed)
    out, start = {}, 0
    for name in fit_on:
        size = len(scaled[name])
        out[name] = coords[start:start + size]
        start += size
    out.update(zip(rest, transformed))
    return {name: out[name] for name in names}


def fit_before_map(before: np.ndarray, reducer: str = "pca", seed: int = 0) -> dict[str, np.ndarray]:
    """Fit the 2-D map on the original ("before") model's features alone; the map every other model is placed in.

    The features are standardised first, ``z = (x - mu) / s`` with ``mu`` the
    per-dimension mean and ``s`` the mean per-dimension standard deviation of
    ``before``. PCA: the map is ``(z - m) A`` with ``m`` the mean of ``z`` and
    ``A`` its top two principal axes. UMAP: umap-learn's ``fit_transform`` of
    ``z``. Returns the map as arrays: ``coords`` ``(N, 2)``, ``mu``, ``s``,
    and ``m``, ``axes`` (PCA) or the fitted ``z`` as ``fitted`` (UMAP), so
    :func:`place_on_map` can place other features into the SAME map without
    refitting it: the before panel and its layout never depend on the run
    shown next to it.
    """
    if reducer not in REDUCERS:
        raise UnlearnError(f"unknown reducer {reducer!r}; choose one of {', '.join(REDUCERS)}")
    before = np.asarray(before, dtype=np.float32)
    if before.ndim != 2 or len(before) < 2:
        raise UnlearnError("a map needs at least 2 feature rows")
    mu = before.mean(axis=0, keepdims=True)
    scale = np.array([[before.std(axis=0).mean() + 1e-6]], dtype=np.float32)
    z = ((before - mu) / scale).astype(np.float32)
    out = {"mu": mu, "scale": scale}
    if reducer == "pca":
        with _one_blas_thread():
            mean, axes = _pca_axes(z)
        out.update(coords=((z - mean) @ axes).astype(np.float32), m=mean.astype(np.float32),
                   axes=axes.astype(np.float32))
    else:
        out.update(coords=_umap_fit_transform(z, [], seed)[0], fitted=z)
    return out


def place_on_map(base: dict, features: np.ndarray, reducer: str = "pca", k: int = 15) -> np.ndarray:
    """Place another model's features (same samples, same feature width) into the fixed map of
    :func:`fit_before_map`: standardised with the before model's ``mu`` and ``s``, then projected on the before
    map's principal axes (PCA) or placed at the weighted mean of its ``k`` nearest fitted before points
    (:func:`place_by_neighbours`, UMAP). The map itself is not changed."""
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or features.shape[1] != base["mu"].shape[1]:
        raise UnlearnError(f"features of width {features.shape[-1]} cannot be placed in a map of width "
                           f"{base['mu'].shape[1]}; they must come from the same architecture")
    z = (features - base["mu"]) / base["scale"]
    if reducer == "pca":
        return ((z - base["m"]) @ base["axes"]).astype(np.float32)
    if "fitted" not in base:
        raise UnlearnError("this map was not fitted by UMAP")
    return place_by_neighbours(base["fitted"], base["coords"], z, k)


MAP_POINTS = 2000
KEPT_NEIGHBOURS = 10  # k of the neighbour-preservation figure stored with each panel


def default_points(n_samples: int) -> int:
    """How many training images a map draws by default: 2,000, or every image of a smaller training set."""
    return min(n_samples, MAP_POINTS)




def map_indices(labels: np.ndarray, forget_idx: np.ndarray, points: int) -> np.ndarray:
    """The training samples a map shows: :func:`sample_points` with seed 0, every forget sample first."""
    return sample_points(np.asarray(labels), int(points), seed=0, include=np.asarray(forget_idx))


def panel_maps(cache: "EmbeddingCache", reducer: str, digest: str, forget_mask: np.ndarray, sources: dict,
               seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """The before, after and retrained panels of one run, each ``{"coords", "features", "probs", "kept"}``, via
    ``cache`` (``kept``: :func:`neighbour_preservation` of the panel with ``KEPT_NEIGHBOURS`` neighbours).

    ``sources`` maps ``"before"``, ``"after"``, ``"retrained"`` to
    ``(model_key, compute)`` where ``compute()`` returns ``{"features",
    "probs"}`` of that model on the samples named by ``digest`` (called only
    when the panel is not cached). The before map is fitted once per original
    model, sample set and reducer (:func:`fit_before_map`); the after model
    (fine-tuned from the original, so it shares its feature axes) is placed
    into it directly; the retrained model (another network, another feature
    basis) is first mapped onto the original's features by
    :func:`procrustes_align`, fitted on the remaining samples
    (``~forget_mask``), then placed. Each panel is cached on its own, so
    switching the after run computes (or looks up) only the after panel and
    the before map keeps its exact coordinates.
    """
    if reducer not in REDUCERS:
        raise UnlearnError(f"unknown reducer {reducer!r}; choose one of {', '.join(REDUCERS)}")
    before_key, before_compute = sources["before"]
    base_key = embedding_key(panel="before", reducer=reducer, model=before_key, idx=digest, seed=seed)

    def fit():
        data = before_compute()
        base = fit_before_map(data["features"], reducer, seed)
        return {**base, "features": data["features"], "probs": data["probs"],
                "kept": np.float64(neighbour_preservation(data["features"], base["coords"], KEPT_NEIGHBOURS))}

    base = cache.get_or_compute(base_key, fit)
    panels = {"before": base}
    for name in ("after", "retrained"):
        if name not in sources:
            continue
        model_key, compute = sources[name]
        key = embedding_key(panel=name, reducer=reducer, model=model_key, base=base_key,
                            align=indices_digest(np.flatnonzero(~np.asarray(forget_mask))) if name == "retrained"
                            else "")

        def place(compute=compute, name=name):
            data = compute()
            features = data["features"]
            if name == "retrained":
                features = procrustes_align(features, base["features"], ~np.asarray(forget_mask))
            coords = place_on_map(base, features, reducer)
            return {"coords": coords, "features": data["features"], "probs": data["probs"],
                    "kept": np.float64(neighbour_preservation(data["features"], coords, KEPT_NEIGHBOURS))}

        panels[name] = cache.get_or_compute(key, place)
    return panels


def cached_panels(cache: "EmbeddingCache", reducer: str, digest: str, forget_mask: np.ndarray, keys: dict,
                  seed: int = 0) -> dict | None:
    """The panels of :func:`panel_maps` if ``cache`` holds all of them (``keys``: panel -> model key), else None."""
    try:
        return panel_maps(cache, reducer, digest, forget_mask,
                          {name: (key, _missing) for name, key in keys.items()}, seed)
    except _NotCached:
        return None


def placed_panels(cache: "EmbeddingCache", reducer: str, digest: str, forget_mask: np.ndarray, keys: dict,
                  data: dict, seed: int = 0) -> dict | None:
    """The panels of :func:`panel_maps` when ``cache`` holds the before map: a panel it lacks is placed into that
    map from ``data`` (panel -> ``{"features", "probs"}`` of its model on the same samples), which fits nothing
    (UMAP: :func:`place_by_neighbours`, milliseconds); None when the before map itself is not cached and has to be
    fitted first (a UMAP fit: seconds)."""
    sources = {name: (key, _missing if name == "before" else (lambda name=name: data[name]))
               for name, key in keys.items()}
    try:
        return panel_maps(cache, reducer, digest, forget_mask, sources, seed)
    except _NotCached:
        return None


class _NotCached(Exception):
    pass


def _missing():
    raise _NotCached()


def model_panel_data(model, images: torch.Tensor, device=None) -> dict[str, np.ndarray]:
    """Penultimate features (float32) and softmax outputs (float32) of ``model`` on raw ``uint8`` images.

    One pass through the network: the outputs are the linear head applied to those features (what
    ``UnlearnModel.forward`` computes), not a second forward pass over the images.
    """
    from unlearn_core.training import extract_features

    features = extract_features(model, images, device)
    with torch.no_grad():
        head = model.head
        logits = head(features.to(next(head.parameters()).device)).float().cpu()
    probs = torch.softmax(logits, dim=1).numpy().astype(np.float32)
    return {"features": features.numpy().astype(np.float32, copy=False), "probs": probs}


def run_maps(setup, run_key: str | None, model, cache: "EmbeddingCache", reducers=("pca",),
             points: int | None = None) -> dict[str, dict]:
    """Compute and store the map panels of one finished run for the default sample set (its job calls this).

    ``setup`` is the run's :class:`~unlearn_core.pipeline.Setup`; ``model``
    the unlearned model; ``run_key`` names it in the cache (``run<ID>``).
    Returns ``{reducer: panels}``. The before map and the retrained panel are
    computed once per setting; the after panel once per run. With ``model``
    None only the setting's before map and retrained panel are computed (a
    prepared demo stores them, so a run's first map only places its own model).
    """
    bundle = setup.bundle
    labels = bundle.train_y.numpy()
    idx = map_indices(labels, setup.split.forget_idx, points or default_points(len(labels)))
    forget_mask = np.isin(idx, setup.split.forget_idx)
    images = bundle.train_x[torch.as_tensor(idx, dtype=torch.long)]
    data: dict[str, dict] = {}

    def source(name, key, net):
        def compute():
            if name not in data:
                data[name] = model_panel_data(net, images, setup.device)
            return data[name]
        return key, compute

    sources = {"before": source("before", setup.original.key, setup.original.model)}
    if model is not None:
        sources["after"] = source("after", run_key, model)
    if setup.retrained is not None:
        sources["retrained"] = source("retrained", setup.retrained.key, setup.retrained.model)
    digest = indices_digest(idx)
    return {reducer: panel_maps(cache, reducer, digest, forget_mask, sources) for reducer in reducers}


def embedding_key(**parts) -> str:
    """A small cache key from small identifying values (model keys, run id, reducer, sample hash)."""
    return cache_key({"v": CACHE_VERSION, **{k: (str(v) if not isinstance(v, (int, float, bool)) else v)
                                             for k, v in sorted(parts.items())}})


def indices_digest(indices: np.ndarray) -> str:
    return cache_key({"idx": np.asarray(indices, dtype=np.int64).tolist()})


class EmbeddingCache(ArrayCache):
    """Map panels by key (:func:`embedding_key`): an :class:`~unlearn_core.arrays.ArrayCache` under
    ``data_dir()/embeddings``."""

    def __init__(self, root: Path | None = None, memory_items: int = 32):
        super().__init__(root if root is not None else paths.data_dir() / "embeddings", memory_items)
