"""Clustering texts into machine labels: deterministic, explicit noise, readable names."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from shardlens.cluster_fit import TextPoint, build_clusters, cluster_points, ctfidf_keywords


@pytest.fixture(scope="module")
def embed():
    from shardlens.models.text_embedder import make_text_embedder
    from shardlens.options import EmbedOptions

    return make_text_embedder(EmbedOptions.from_values(), threads=2).encode


def points_for(embed, counts: dict[str, int]) -> list[TextPoint]:
    texts = sorted(counts)
    vectors = embed(texts)
    return [TextPoint(t, {"caption"}, counts[t], v) for t, v in zip(texts, vectors)]


COUNTS = {
    "person": 9, "cat": 3, "kitten": 1, "car": 2, "automobile": 1, "OPEN 24 HOURS": 1,
    "Open 24 hours": 1, "EXIT": 1, "Bahnhofstraße 12": 1, "chair": 1,
}  # fmt: skip


def test_clusters_are_deterministic_and_group_like_texts(embed):
    points = points_for(embed, COUNTS)
    first = cluster_points(points, min_cluster_size=2, min_samples=1)
    again = cluster_points(points_for(embed, COUNTS), min_cluster_size=2, min_samples=1)
    assert np.array_equal(first[0], again[0]) and np.allclose(first[1], again[1])
    label = dict(zip([p.text for p in points], first[0]))
    assert label["person"] >= 0  # a frequent text is a cluster on its own
    assert label["OPEN 24 HOURS"] == label["Open 24 hours"] >= 0
    assert label["cat"] == label["kitten"] >= 0
    assert label["cat"] != label["OPEN 24 HOURS"] and label["cat"] != label["person"]
    assert label["person"] != label["chair"]  # unrelated words never share a cluster


def test_noise_goes_to_an_explicit_unclustered_bucket_with_readable_names(embed):
    points = points_for(embed, COUNTS)
    labels, probs = cluster_points(points, min_cluster_size=2, min_samples=1)
    records = build_clusters(points, labels, probs)
    by_id = {r["cluster_id"]: r for r in records}
    assert by_id[-1]["label"] == "unclustered"
    every_text = sorted(m["text"] for r in records for m in r["members"])
    assert every_text == sorted(COUNTS)  # nothing silently dropped
    assert all(m["probability"] == 0 for m in by_id[-1]["members"])
    person_cluster = next(r for r in records if any(m["text"] == "person" for m in r["members"]))
    assert person_cluster["label"] == "person" and person_cluster["size"] >= 9
    assert by_id[0]["size"] == max(r["size"] for r in records if r["cluster_id"] >= 0)  # ids by size


def test_ctfidf_prefers_distinctive_words():
    docs = {0: Counter({"open": 3, "hours": 3, "street": 1}), 1: Counter({"street": 5, "main": 4})}
    keywords = ctfidf_keywords(docs, top=2)
    assert keywords[0] == ["hours", "open"] or keywords[0] == ["open", "hours"]
    assert keywords[1][0] == "main"


def test_empty_and_single_inputs():
    assert cluster_points([])[0].size == 0
    labels, probs = cluster_points([TextPoint("x", {"ocr"}, 1, np.ones(4) / 2)])
    assert labels.tolist() == [-1] and probs.tolist() == [0.0]


def test_object_labels_and_ocr_texts_are_clustered_apart(embed):
    """A word read by OCR never joins, or names, a cluster of detected objects."""
    region_texts = {"orange": 4, "banana": 1, "apple": 1}
    ocr_texts = {"orange": 3, "ORANGE JUICE": 2, "Café Orange": 1}
    points = [TextPoint(t, {"caption"}, c, v) for (t, c), v in zip(region_texts.items(), embed(list(region_texts)))]
    points += [TextPoint(t, {"ocr"}, c, v) for (t, c), v in zip(ocr_texts.items(), embed(list(ocr_texts)))]
    labels, probs = cluster_points(points, min_cluster_size=2, min_samples=1, min_similarity=0.3)
    records = build_clusters(points, labels, probs)
    for record in records:
        if record["cluster_id"] < 0:
            continue
        assert {m["item"] for m in record["members"]} == {record["item"]}
        assert record["label"] in {m["text"] for m in record["members"]}  # named among its members
    clustered = [(m["item"], m["text"]) for r in records if r["cluster_id"] >= 0 for m in r["members"]]
    assert ("text", "ORANGE JUICE") in clustered  # the OCR texts do group
    orange = {m["item"]: r["cluster_id"] for r in records for m in r["members"] if m["text"] == "orange"}
    assert set(orange) == {"region", "text"}  # one point per group, each in its own group's clusters
    assert orange["region"] != orange["text"] or orange["region"] < 0


def test_an_object_cluster_is_named_by_its_most_frequent_label():
    vectors = {"cat": np.array([1.0, 0.0]), "kitten": np.array([0.9, np.sqrt(1 - 0.81)]), "tabby": np.array([0.95, np.sqrt(1 - 0.9025)])}
    points = [
        TextPoint("cat", {"caption"}, 5, vectors["cat"]),
        TextPoint("kitten", {"label"}, 1, vectors["kitten"]),
        TextPoint("tabby", {"caption"}, 2, vectors["tabby"]),
    ]
    records = build_clusters(points, np.array([0, 0, 0]), np.ones(3))
    assert records[0]["label"] == "cat" and records[0]["item"] == "region"
    only = build_clusters(points[:1], np.array([0]), np.ones(1))
    assert only[0]["label"] == "cat"  # every member shares the class: the class


def test_a_point_cannot_mix_item_groups():
    with pytest.raises(ValueError, match="mixes item groups"):
        TextPoint("orange", {"caption", "ocr"}, 2, np.ones(2))


# OCR-like texts in a few themes, enough (> pca_dims) for the fit to run in the PCA space
SIGNS = [
    "OPEN 24 HOURS", "Open 24 hours", "open 24h", "OPEN 24 HRS", "Open all night", "OPEN DAILY", "Open 7 days",
    "EXIT", "EMERGENCY EXIT", "Fire exit", "Exit only", "NO EXIT", "Way out", "EXIT HERE",
    "Main Street", "Main St", "MAIN ST.", "High Street", "Station Road", "Bahnhofstraße 12", "Church Lane",
    "NO PARKING", "No parking any time", "PARKING", "Car park", "Parking for customers only", "Free parking",
    "SALE", "50% OFF", "Big sale today", "Clearance sale", "Everything must go", "Half price",
    "Pharmacy", "PHARMACY", "Chemist", "Bakery", "Fresh bread", "Coffee", "COFFEE SHOP", "Espresso bar",
    "Quantum chromodynamics lecture", "tax return form 1040",
]  # fmt: skip


def direct_fit(points, min_cluster_size=2, min_samples=1):
    """hdbscan on the same points, as clustering.py prepares them (PCA, a text repeated per occurrence)."""
    import hdbscan

    from shardlens.cluster_fit import reduce_dimensions

    vectors = reduce_dimensions(np.stack([p.vector for p in points]).astype(np.float64), 32)
    repeats = [min(p.count, min_cluster_size) for p in points]
    model = hdbscan.HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples, approx_min_span_tree=False).fit(np.repeat(vectors, repeats, axis=0))
    first = np.cumsum([0, *repeats[:-1]])
    return model, first


@pytest.mark.parametrize("repeated", [False, True], ids=["each text once", "frequent texts repeated"])
def test_fitted_points_carry_hdbscans_outlier_scores(embed, repeated):
    """Each point's outlier score is outlier_scores_ of a direct hdbscan fit on the same points
    (noise included); where hdbscan gives NaN (a repeated text makes lambda_max infinite) it is the
    limit 1. glosh() on the kept lambdas gives the same scores: what scoring a later text uses."""
    from shardlens.cluster_fit import fit_points, glosh

    counts = {t: (1 + (i % 4 == 0) * 3 if repeated else 1) for i, t in enumerate(SIGNS)}
    points = sorted((TextPoint(t, {"ocr"}, counts[t], v) for t, v in zip(SIGNS, embed(SIGNS))), key=lambda p: p.text)
    fit = fit_points(points, min_cluster_size=2, min_samples=1, min_similarity=-1.0)
    model, first = direct_fit(points)
    expected = model.outlier_scores_[first]
    assert np.isnan(expected).any() or not repeated  # (texts that differ in case only share a vector: NaN too)
    assert fit.outlier_scores.tolist() == np.where(np.isnan(expected), 1.0, expected).tolist()
    graded = ((fit.outlier_scores > 0) & (fit.outlier_scores < 1)).sum()
    if repeated:  # the copies of a repeated text are at distance 0: infinitely dense, score 0
        assert all(s == 0.0 for p, s in zip(points, fit.outlier_scores) if p.count > 1)
    else:
        assert graded >= 5  # a graded score, not 0/1 flags
    assert (fit.labels == -1).any() and not np.isnan(fit.outlier_scores[fit.labels == -1]).any()  # noise has one too
    assert [glosh(l, m) for l, m in zip(fit.lambdas, fit.lambda_max)] == pytest.approx(fit.outlier_scores.tolist(), abs=1e-12)
    assert fit.spaces["text"].axes.shape == (384, 32) and fit.spaces["text"].min_samples == 1
    # the fit space of a later text is the fit's: a fitted text projected on its own lands on its fitted point
    from shardlens.cluster_fit import reduce_dimensions

    reduced = reduce_dimensions(np.stack([p.vector for p in points]).astype(np.float64), 32)
    assert fit.spaces["text"].point(points[3].vector) == pytest.approx(reduced[3], abs=1e-9)


def test_glosh_conventions():
    from shardlens.cluster_fit import glosh

    assert glosh(2.0, 8.0) == 0.75
    assert glosh(np.inf, np.inf) == 0.0  # a copy of a repeated text: as dense as it gets
    assert glosh(2.0, np.inf) == 1.0  # the limit of (inf - 2) / inf, where hdbscan gives NaN
    assert glosh(9.0, 8.0) == 0.0  # a later text denser than the fit's densest point
    assert glosh(2.0, 0.0) == 0.0  # hdbscan's convention for an empty node
