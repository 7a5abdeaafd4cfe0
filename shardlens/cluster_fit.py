"""Machine groups: HDBSCAN over the embeddings of all distinct texts, with readable names.

Clusters group; they never rename. A region keeps its own top candidate as machine label and an
OCR line its own text; a cluster is the set of similar items a reviewer can accept or relabel in
one go. Object labels (detection captions and candidates) and OCR texts are clustered apart, so
that a text never names or joins an object cluster: each point belongs to one ``item`` group,
``region`` or ``text``.

Deterministic for the same input: texts are sorted, PCA is exact, HDBSCAN has no randomness.
Identical texts are one point; a text seen ``n`` times is repeated ``min(n, min_cluster_size)``
times so that a frequent caption ("person" in 40 images) forms its own cluster instead of being
noise, while the cost stays bounded. Noise goes to an explicit ``unclustered`` bucket (-1).

Each point also gets HDBSCAN's **outlier score** (GLOSH, ``outlier_scores_``): 1 - lambda_p /
lambda_max, where lambda_p = 1 / the distance at which the point leaves the cluster tree and
lambda_max the largest lambda in the node it leaves (and below). Noise has one too. The copies of
a repeated text are at distance 0, so their lambda is infinite: hdbscan scores such a point 0, and
a point whose node holds one gets NaN from hdbscan ((inf - lambda_p) / inf); it is given the
limit, 1, as hdbscan's ``probabilities_`` give such a point 0. :func:`glosh` is the formula, and
:class:`Fit` keeps what scoring a later text needs (:mod:`shardlens.cluster_state`).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .records import SCHEMA_VERSION, read_jsonl
from .vectors import decode_vector

UNCLUSTERED = -1

# what the members' outlier_score is: a clusters-stage param (shardlens/stages/params.py), so a
# clusters file written without it, or by another method, is made again
OUTLIER_SCORE_METHOD = "GLOSH: hdbscan outlier_scores_ for fitted texts, approximate_predict_scores' formula for later texts at their nearest fitted member"

# embedding kind -> the item group its texts are clustered in (item_annotations' ``item``)
ITEM_OF_KIND = {"caption": "region", "label": "region", "ocr": "text"}


@dataclass
class TextPoint:
    text: str
    kinds: set[str]
    count: int
    vector: np.ndarray
    item: str = ""  # 'region' or 'text'; derived from the kinds when not given

    def __post_init__(self) -> None:
        if not self.item:
            items = {ITEM_OF_KIND[k] for k in self.kinds}
            if len(items) != 1:
                raise ValueError(f"text {self.text!r} mixes item groups {sorted(items)}: give one point per group")
            self.item = items.pop()


def load_points(embed_files: list[str | Path]) -> list[TextPoint]:
    """Distinct (item group, text) pairs over all shards (kinds merged, occurrences counted),
    sorted by group, then text. A word read by OCR and detected as a class is two points."""
    points: dict[tuple[str, str], TextPoint] = {}
    for path in embed_files:
        for record in read_jsonl(path, "embedding"):
            key = (ITEM_OF_KIND[record["kind"]], record["text"])
            point = points.get(key)
            if point is None:
                vector = decode_vector(record["vector"], record["dim"])
                points[key] = TextPoint(record["text"], {record["kind"]}, len(record["occurrences"]), vector, key[0])
            else:
                point.kinds.add(record["kind"])
                point.count += len(record["occurrences"])
    return [points[k] for k in sorted(points)]


@dataclass
class FitSpace:
    """What one item group's fit was made in: the exact PCA (``mean``, ``axes``; None when the
    vectors were used as they are) and HDBSCAN's effective ``min_samples`` (neighbours counted in
    a core distance)."""

    mean: np.ndarray | None
    axes: np.ndarray | None
    min_samples: int

    def point(self, vector: np.ndarray) -> np.ndarray:
        """One vector in the fit space, computed on its own: the same whatever else is projected."""
        v = np.asarray(vector, dtype=np.float64)
        if self.axes is None:
            return v
        reduced = (v - self.mean) @ self.axes
        return reduced / max(float(np.linalg.norm(reduced)), 1e-12)


def pca_axes(vectors: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(mean, axes) of the exact PCA to ``dims`` through the d x d covariance (cheap for any number
    of texts, deterministic); None when there is nothing to reduce."""
    if vectors.shape[0] <= dims or vectors.shape[1] <= dims:
        return None
    mean = vectors.mean(axis=0, keepdims=True)
    centred = vectors - mean
    eigvals, eigvecs = np.linalg.eigh(centred.T @ centred)
    return mean[0], eigvecs[:, np.argsort(eigvals)[::-1][:dims]]


def reduce_dimensions(vectors: np.ndarray, dims: int) -> np.ndarray:
    """Exact PCA to ``dims`` (:func:`pca_axes`), re-normalised so distances stay cosine-like."""
    pca = pca_axes(vectors, dims)
    if pca is None:
        return vectors
    reduced = (vectors - pca[0]) @ pca[1]
    norms = np.linalg.norm(reduced, axis=1, keepdims=True)
    return reduced / np.maximum(norms, 1e-12)


def glosh(lambda_p: float, lambda_max: float) -> float:
    """GLOSH outlier score in [0, 1]: (lambda_max - lambda_p) / lambda_max, as hdbscan computes
    ``outlier_scores_``; an infinite lambda_p (a point at distance 0) scores 0, a finite one under
    an infinite lambda_max the limit 1, and a lambda_p above lambda_max (a later text denser than
    the fit's densest point) 0."""
    if lambda_max == 0.0 or np.isinf(lambda_p):
        return 0.0
    if np.isinf(lambda_max):
        return 1.0
    return float(min(1.0, max(0.0, (lambda_max - lambda_p) / lambda_max)))


@dataclass
class Fit:
    """What a fit gives each point (arrays in the points' order) and each item group.

    ``lambdas``: 1 / the distance at which the point leaves the cluster tree; ``lambda_max``: the
    largest lambda of the node it leaves, and below (GLOSH's lambda_max); ``core_distances``:
    HDBSCAN's core distance in the fit space (to the ``min_samples``-th nearest other copy);
    ``copies``: how often it was repeated. NaN where the group was too small to fit."""

    labels: np.ndarray
    probabilities: np.ndarray
    outlier_scores: np.ndarray
    lambdas: np.ndarray
    lambda_max: np.ndarray
    core_distances: np.ndarray
    copies: np.ndarray
    spaces: dict[str, FitSpace]

    @classmethod
    def empty(cls, n: int) -> Fit:
        nan = np.full(n, np.nan)
        return cls(np.full(n, UNCLUSTERED), np.zeros(n), np.ones(n), nan, nan.copy(), nan.copy(), np.ones(n, dtype=int), {})


def cluster_points(points: list[TextPoint], **options) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities) per point of :func:`fit_points` (same options, same defaults)."""
    fit = fit_points(points, **options)
    return fit.labels, fit.probabilities


def fit_points(
    points: list[TextPoint],
    min_cluster_size: int = 2,
    min_samples: int | None = 1,
    pca_dims: int = 32,
    selection_epsilon: float = 0.0,
    min_similarity: float = 0.5,
    threads: int = 1,
) -> Fit:
    """Labels (-1 is noise), probabilities and outlier scores per point. Each item group is
    clustered on its own.

    HDBSCAN finds density, not meaning: on few texts it happily pairs "person" with "chair". A
    member whose cosine similarity (full 384-d embedding) to its cluster's representative text is
    below ``min_similarity`` is moved to the unclustered bucket (its outlier score stays the fit's).
    """
    fit = Fit.empty(len(points))
    offset = 0
    for item in sorted({p.item for p in points}):
        idx = [i for i, p in enumerate(points) if p.item == item]
        group = _cluster_group([points[i] for i in idx], min_cluster_size, min_samples, pca_dims, selection_epsilon, min_similarity, threads)
        fit.labels[idx] = np.where(group.labels >= 0, group.labels + offset, UNCLUSTERED)
        for name in ("probabilities", "outlier_scores", "lambdas", "lambda_max", "core_distances", "copies"):
            getattr(fit, name)[idx] = getattr(group, name)
        fit.spaces.update(group.spaces)
        offset += int(group.labels.max(initial=-1)) + 1
    fit.labels = _renumber(fit.labels, points)
    return fit


def _cluster_group(
    points: list[TextPoint],
    min_cluster_size: int,
    min_samples: int | None,
    pca_dims: int,
    selection_epsilon: float,
    min_similarity: float,
    threads: int,
) -> Fit:
    """HDBSCAN over the points of one item group; labels not yet renumbered."""
    n = len(points)
    fit = Fit.empty(n)
    if n <= 1:
        return fit
    import hdbscan

    raw = np.stack([p.vector for p in points]).astype(np.float64)
    vectors = reduce_dimensions(raw, pca_dims)
    repeats = np.array([min(p.count, min_cluster_size) for p in points])
    expanded = np.repeat(vectors, repeats, axis=0)
    owner = np.repeat(np.arange(n), repeats)
    if len(expanded) < max(min_cluster_size, 2):
        return fit
    model = hdbscan.HDBSCAN(
        min_cluster_size=min_cluster_size,
        min_samples=min_samples,
        metric="euclidean",
        cluster_selection_epsilon=selection_epsilon,
        core_dist_n_jobs=max(1, threads),
        approx_min_span_tree=False,
    )
    model.fit(expanded)
    labels, probs = fit.labels, fit.probabilities
    first = np.searchsorted(owner, np.arange(n))  # copies of a point agree; read the first
    labels[:] = model.labels_[first]
    probs[:] = np.where(labels >= 0, model.probabilities_[first], 0.0)
    scores = model.outlier_scores_[first]
    fit.outlier_scores[:] = np.where(np.isnan(scores), 1.0, scores)  # NaN: lambda_max infinite, the limit is 1
    lambdas, deaths = _tree_lambdas(model.condensed_tree_._raw_tree, len(expanded))
    fit.lambdas[:], fit.lambda_max[:] = lambdas[first], deaths[first]
    # hdbscan's own min_samples: clamped to the points there are; a core distance counts the point itself
    k = max(1, min(len(expanded) - 1, min_samples or min_cluster_size))
    from sklearn.neighbors import KDTree

    fit.core_distances[:] = KDTree(expanded).query(expanded[first], k=k + 1)[0][:, -1]
    fit.copies[:] = repeats
    pca = pca_axes(raw, pca_dims)
    fit.spaces[points[0].item] = FitSpace(None, None, k) if pca is None else FitSpace(pca[0], pca[1], k)
    for cluster in sorted(set(labels.tolist()) - {UNCLUSTERED}):
        members = [int(i) for i in np.nonzero(labels == cluster)[0]]
        rep_vector = points[_representative_index(members, points)].vector
        for i in members:
            if float(points[i].vector @ rep_vector) < min_similarity:
                labels[i], probs[i] = UNCLUSTERED, 0.0
    return fit


def _tree_lambdas(tree: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per point of a condensed tree: the lambda at which it leaves, and the largest lambda of the
    node it leaves and its descendants (hdbscan's ``outlier_scores``, step by step)."""
    parent, child, lam = tree["parent"], tree["child"], tree["lambda_val"]
    deaths = np.zeros(int(parent.max()) + 1)
    np.maximum.at(deaths, parent, lam)
    for row in range(len(tree) - 1, -1, -1):  # children come after their parents: bottom up
        if deaths[child[row]] > deaths[parent[row]]:
            deaths[parent[row]] = deaths[child[row]]
    lambdas, point_deaths = np.full(n, np.nan), np.full(n, np.nan)
    rows = child < n
    lambdas[child[rows]] = lam[rows]
    point_deaths[child[rows]] = deaths[parent[rows]]
    return lambdas, point_deaths


def _renumber(labels: np.ndarray, points: list[TextPoint]) -> np.ndarray:
    """Cluster ids by descending size (occurrences), ties by smallest member text: stable ids."""
    sizes: dict[int, tuple[int, str]] = {}
    for label, point in zip(labels, points):
        if label < 0:
            continue
        count, text = sizes.get(int(label), (0, point.text))
        sizes[int(label)] = (count + point.count, min(text, point.text))
    order = sorted(sizes, key=lambda c: (-sizes[c][0], sizes[c][1]))
    remap = {old: new for new, old in enumerate(order)}
    return np.array([remap.get(int(l), UNCLUSTERED) for l in labels])


_TOKEN = re.compile(r"[^\W\d_]{2,}", re.UNICODE)


def ctfidf_keywords(docs: dict[int, Counter], top: int = 3) -> dict[int, list[str]]:
    """Class-based TF-IDF (BERTopic): term frequency in the cluster x log(1 + A / frequency overall)."""
    total = Counter()
    for counts in docs.values():
        total.update(counts)
    avg_words = sum(total.values()) / max(len(docs), 1)
    out = {}
    for cluster, counts in docs.items():
        length = sum(counts.values()) or 1
        scored = sorted(((counts[w] / length) * np.log(1 + avg_words / total[w]), w) for w in counts)
        out[cluster] = [w for _, w in sorted(scored, key=lambda s: (-s[0], s[1]))[:top]]
    return out


def representative(members: list[int], points: list[TextPoint]) -> str:
    """The member text closest to the frequency-weighted centroid; ties go to the most frequent."""
    return points[_representative_index(members, points)].text


def _representative_index(members: list[int], points: list[TextPoint]) -> int:
    vecs = np.stack([points[i].vector for i in members])
    weights = np.array([points[i].count for i in members], dtype=np.float64)
    centroid = (vecs * weights[:, None]).sum(axis=0)
    centroid /= np.linalg.norm(centroid) or 1.0
    sims = vecs @ centroid
    best = max(
        range(len(members)),
        key=lambda k: (round(float(sims[k]), 6), points[members[k]].count, -len(points[members[k]].text), points[members[k]].text),
    )
    return members[best]


def display_name(members: list[int], points: list[TextPoint]) -> str:
    """A cluster's name, chosen among its members' texts. An object cluster is named by its most
    frequent label (the class, when every member shares it); a text cluster by its most
    representative text. Ties go to the representative."""
    rep = _representative_index(members, points)
    if points[rep].item != "region":
        return points[rep].text
    top = max(points[i].count for i in members)
    frequent = [i for i in members if points[i].count == top]
    return points[rep].text if rep in frequent else min(points[i].text for i in frequent)


def build_clusters(
    points: list[TextPoint],
    labels: np.ndarray,
    probs: np.ndarray,
    names: dict[int, str] | None = None,
    membership: list[str] | None = None,
    outlier_scores: np.ndarray | None = None,
) -> list[dict]:
    """Cluster records. ``names`` keeps given clusters' names (else :func:`display_name`);
    ``membership`` says per point whether a fit placed it (``fitted``, the default) or it joined
    later (``assigned``, :mod:`shardlens.cluster_state`); ``outlier_scores``, when given, go to
    the members' ``outlier_score``."""
    names = names or {}
    membership = membership or ["fitted"] * len(points)
    groups: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(int(label), []).append(i)
    docs = {c: Counter(w.lower() for i in idx for w in _TOKEN.findall(points[i].text) for _ in range(points[i].count)) for c, idx in groups.items() if c >= 0}
    keywords = ctfidf_keywords(docs)
    records = []
    for cluster_id in sorted(groups, key=lambda c: (c < 0, c)):
        idx = groups[cluster_id]
        records.append(
            {
                "schema_version": SCHEMA_VERSION,
                "cluster_id": cluster_id,
                "item": None if cluster_id < 0 else points[idx[0]].item,
                "label": "unclustered" if cluster_id < 0 else names.get(cluster_id) or display_name(idx, points),
                "keywords": keywords.get(cluster_id, []),
                "size": int(sum(points[i].count for i in idx)),
                "members": [
                    {
                        "text": points[i].text,
                        "item": points[i].item,
                        "kinds": sorted(points[i].kinds),
                        "count": points[i].count,
                        "probability": round(float(probs[i]), 6),
                        "membership": membership[i],
                    }
                    | ({} if outlier_scores is None else {"outlier_score": round(float(outlier_scores[i]), 6)})
                    for i in sorted(idx, key=lambda i: (-points[i].count, points[i].item, points[i].text))
                ],
            }
        )
    if UNCLUSTERED not in groups:
        records.append(
            {"schema_version": SCHEMA_VERSION, "cluster_id": UNCLUSTERED, "item": None, "label": "unclustered", "keywords": [], "size": 0, "members": []}
        )
    return records
