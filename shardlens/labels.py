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
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .records import SCHEMA_VERSION, read_jsonl, write_jsonl
from .vectors import decode_vector

UNCLUSTERED = -1

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


def reduce_dimensions(vectors: np.ndarray, dims: int) -> np.ndarray:
    """Exact PCA to ``dims`` through the d x d covariance (cheap for any number of texts,
    deterministic), re-normalised so distances stay cosine-like."""
    if vectors.shape[0] <= dims or vectors.shape[1] <= dims:
        return vectors
    centred = vectors - vectors.mean(axis=0, keepdims=True)
    eigvals, eigvecs = np.linalg.eigh(centred.T @ centred)
    axes = eigvecs[:, np.argsort(eigvals)[::-1][:dims]]
    reduced = centred @ axes
    norms = np.linalg.norm(reduced, axis=1, keepdims=True)
    return reduced / np.maximum(norms, 1e-12)


def cluster_points(
    points: list[TextPoint],
    min_cluster_size: int = 2,
    min_samples: int | None = 1,
    pca_dims: int = 32,
    selection_epsilon: float = 0.0,
    min_similarity: float = 0.5,
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities) per point; -1 is noise. Each item group is clustered on its own.

    HDBSCAN finds density, not meaning: on few texts it happily pairs "person" with "chair". A
    member whose cosine similarity (full 384-d embedding) to its cluster's representative text is
    below ``min_similarity`` is moved to the unclustered bucket.
    """
    labels = np.full(len(points), UNCLUSTERED)
    probs = np.zeros(len(points))
    offset = 0
    for item in sorted({p.item for p in points}):
        idx = [i for i, p in enumerate(points) if p.item == item]
        group_labels, group_probs = _cluster_group(
            [points[i] for i in idx], min_cluster_size, min_samples, pca_dims, selection_epsilon, min_similarity, threads
        )
        labels[idx] = np.where(group_labels >= 0, group_labels + offset, UNCLUSTERED)
        probs[idx] = group_probs
        offset += int(group_labels.max(initial=-1)) + 1
    return _renumber(labels, points), probs


def _cluster_group(
    points: list[TextPoint],
    min_cluster_size: int,
    min_samples: int | None,
    pca_dims: int,
    selection_epsilon: float,
    min_similarity: float,
    threads: int,
) -> tuple[np.ndarray, np.ndarray]:
    """HDBSCAN over the points of one item group; labels not yet renumbered."""
    n = len(points)
    if n == 0:
        return np.zeros(0, int), np.zeros(0)
    if n == 1:
        return np.array([UNCLUSTERED]), np.zeros(1)
    import hdbscan

    vectors = reduce_dimensions(np.stack([p.vector for p in points]).astype(np.float64), pca_dims)
    repeats = np.array([min(p.count, min_cluster_size) for p in points])
    expanded = np.repeat(vectors, repeats, axis=0)
    owner = np.repeat(np.arange(n), repeats)
    if len(expanded) < max(min_cluster_size, 2):
        return np.full(n, UNCLUSTERED), np.zeros(n)
    model = hdbscan.HDBSCAN(
        min_cluster_size=min_cluster_size,
        min_samples=min_samples,
        metric="euclidean",
        cluster_selection_epsilon=selection_epsilon,
        core_dist_n_jobs=max(1, threads),
        approx_min_span_tree=False,
    )
    model.fit(expanded)
    labels = np.full(n, UNCLUSTERED)
    probs = np.zeros(n)
    first = np.searchsorted(owner, np.arange(n))  # copies of a point agree; read the first
    labels[:] = model.labels_[first]
    probs[:] = np.where(labels >= 0, model.probabilities_[first], 0.0)
    for cluster in sorted(set(labels.tolist()) - {UNCLUSTERED}):
        members = [int(i) for i in np.nonzero(labels == cluster)[0]]
        rep_vector = points[_representative_index(members, points)].vector
        for i in members:
            if float(points[i].vector @ rep_vector) < min_similarity:
                labels[i], probs[i] = UNCLUSTERED, 0.0
    return labels, probs


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
        scored = sorted(
            ((counts[w] / length) * np.log(1 + avg_words / total[w]), w) for w in counts
        )
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
    points: list[TextPoint], labels: np.ndarray, probs: np.ndarray, names: dict[int, str] | None = None, membership: list[str] | None = None
) -> list[dict]:
    """Cluster records. ``names`` keeps given clusters' names (else :func:`display_name`);
    ``membership`` says per point whether a fit placed it (``fitted``, the default) or it joined
    later (``assigned``, :mod:`shardlens.cluster_state`)."""
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
                    {"text": points[i].text, "item": points[i].item, "kinds": sorted(points[i].kinds), "count": points[i].count, "probability": round(float(probs[i]), 6), "membership": membership[i]}
                    for i in sorted(idx, key=lambda i: (-points[i].count, points[i].item, points[i].text))
                ],
            }
        )
    if UNCLUSTERED not in groups:
        records.append({"schema_version": SCHEMA_VERSION, "cluster_id": UNCLUSTERED, "item": None, "label": "unclustered", "keywords": [], "size": 0, "members": []})
    return records


def run_clustering(
    embed_files: list[str | Path], output: str | Path, options: dict, threads: int = 1, log=print, refit: str | None = None
) -> dict:
    """The cluster rule: update the clusters incrementally (:mod:`shardlens.cluster_state`,
    ``labels.refit``) and write them to ``output``."""
    from .cluster_state import update_clusters
    from .jobs import JobSummary

    summary = JobSummary(shard="all", stage="cluster")
    records, info = update_clusters(embed_files, output, options, threads=threads, log=log, refit=refit)
    write_jsonl(output, "cluster", records)
    members = [m for r in records for m in r["members"]]
    stats = {
        "texts": len(members),
        "clusters": sum(1 for r in records if r["cluster_id"] >= 0),
        "unclustered_texts": sum(len(r["members"]) for r in records if r["cluster_id"] < 0),
        "assigned_texts": sum(1 for m in members if m["membership"] == "assigned"),
        "refit": info.refit,
        "refit_reason": info.reason,
        "embedding_files_read": info.files_read,
    }
    log(f"cluster: {stats['texts']} distinct texts -> {stats['clusters']} clusters, {stats['unclustered_texts']} unclustered")
    summary.records = len(records)
    summary.ok = stats["texts"] - stats["unclustered_texts"]
    summary.skipped = stats["unclustered_texts"]
    summary.extra = stats
    summary.finish()
    return stats
