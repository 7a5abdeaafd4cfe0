"""Propagated labels (issue 17, part 5), on real catalogs updated by the real importer from
synthetic caches (every stage's records written by the real writer, the real manifest, text
embeddings chosen so that cosines are known): a reviewed cluster reaches its later members, a
reviewed OCR line its look-alikes above the threshold, regions never cross classes, a human
review is never overwritten, and a rejected propagated label sticks."""

from __future__ import annotations

import hashlib
import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from shardlens.catalog import build_catalog, import_cache
from shardlens.manifest import build_manifest, write_manifest
from shardlens.propagation import refresh_propagation, review_of_propagated
from shardlens.records import SCHEMA_VERSION, write_jsonl
from shardlens.review_store import (
    STORE_DDL,
    Review,
    ReviewError,
    connect_store,
)
from shardlens.review_writer import mirror_reviews
from shardlens.reviews import record_cluster_review, record_reviews
from shardlens.vectors import encode_vector

STAGES = ["ingest", "gate", "ocr", "detect", "regions", "embed"]
QUIET = {"log": lambda message: None}


def image_id(path: str) -> str:
    return hashlib.sha256(path.encode()).hexdigest()


DIM = 64


def unit(cosine: float, axis: int = 0, other: int = 1, dim: int = DIM) -> np.ndarray:
    """A unit vector whose cosine with the unit vector of ``axis`` is ``cosine``."""
    v = np.zeros(dim)
    v[axis] = cosine
    v[other] = math.sqrt(max(0.0, 1.0 - cosine * cosine))
    return v


def write_cache(folder: Path, images: dict[str, dict], clusters: list[tuple[int, str, list[str]]], vectors: dict[str, np.ndarray]) -> Path:
    """A cache of ``images`` (path -> {"lines": [text], "regions": [caption], "shard": name,
    "confidence": the OCR confidence of its lines, default 0.9}),
    the clusters aggregate (``(cluster_id, item, member texts)``; every other text in the
    'unclustered' bucket) and the manifest. ``vectors`` gives texts their embedding (axes 0-7);
    every other text gets a random one of its own in axes 8-63 (cosine near 0 with the others)."""
    shards: dict[str, dict[str, list]] = {}
    counts: dict[tuple[str, str], int] = {}
    for path, spec in sorted(images.items()):
        records = shards.setdefault(spec.get("shard", "0000"), {"ingest": [], "gate": [], "ocr": [], "detection": [], "embedding": {}})
        iid = image_id(path)
        records["ingest"].append(
            {
                "schema_version": SCHEMA_VERSION,
                "image_id": iid,
                "path": path,
                "bytes": 1000,
                "width": 640,
                "height": 480,
                "format": "PNG",
                "phash": spec.get("phash"),
                "status": "ok",
                "error": None,
                "error_detail": None,
            }
        )
        records["gate"].append(
            {
                "schema_version": SCHEMA_VERSION,
                "image_id": iid,
                "has_text": True,
                "score": 0.9,
                "decision": "ocr",
                "skip_reason": None,
                "text_regions": 1,
                "gate_version": "test-gate",
            }
        )
        for n, text in enumerate(spec.get("lines", [])):
            records["ocr"].append(
                {
                    "schema_version": SCHEMA_VERSION,
                    "image_id": iid,
                    "line_no": n,
                    "region_id": None,
                    "text": text,
                    "confidence": spec.get("confidence", 0.9),
                    "language": None,
                    "language_confidence": None,
                    "bbox": [10.0, 10.0 + 40 * n, 200.0, 40.0 + 40 * n],
                    "source": "test-ocr",
                }
            )
            records["embedding"].setdefault(("ocr", text), []).append([iid, None, n])
            counts[("text", text)] = counts.get(("text", text), 0) + 1
        for n, caption in enumerate(spec.get("regions", [])):
            labels = [{"label": caption, "score": 0.8, "source": "detector"}]
            records["detection"].append(
                {
                    "schema_version": SCHEMA_VERSION,
                    "image_id": iid,
                    "region_id": n,
                    "bbox": [300.0, 10.0 + 50 * n, 600.0, 50.0 + 50 * n],
                    "score": 0.8,
                    "labels": labels,
                    "caption": caption,
                    "detector_label": caption,
                    "detector_version": "test-det",
                }
            )
            records["embedding"].setdefault(("caption", caption), []).append([iid, n, None])
            counts[("region", caption)] = counts.get(("region", caption), 0) + 1
    for shard, records in shards.items():
        for stage, kind in (("ingest", "ingest"), ("gate", "gate"), ("ocr", "ocr"), ("detect", "detection")):
            write_jsonl(folder / stage / f"{shard}.jsonl", kind, records[kind])
        write_jsonl(folder / "regions" / f"{shard}.jsonl", "region", records["detection"])  # no ontology: the detector's names
        embed = []
        for (kind, text), occurrences in sorted(records["embedding"].items()):
            vector = vectors.get(text)
            if vector is None:
                rng = np.random.default_rng(int(hashlib.sha256(text.encode()).hexdigest()[:8], 16))
                vector = np.concatenate([np.zeros(8), rng.normal(size=DIM - 8)])
                vector /= np.linalg.norm(vector)
            embed.append(
                {
                    "schema_version": SCHEMA_VERSION,
                    "kind": kind,
                    "text": text,
                    "occurrences": occurrences,
                    "model": "test-embed",
                    "dim": DIM,
                    "vector": encode_vector(np.asarray(vector, dtype=np.float32)),
                }
            )
        write_jsonl(folder / "embed" / f"{shard}.jsonl", "embedding", embed)
    clustered = {(item, t) for _, item, texts in clusters for t in texts}
    records = []
    for cluster_id, item, texts in clusters:
        members = [
            {
                "text": t,
                "item": item,
                "kinds": ["ocr" if item == "text" else "caption"],
                "count": counts.get((item, t), 1),
                "probability": 0.9,
                "membership": "fitted",
            }
            for t in texts
        ]
        records.append(
            {
                "schema_version": SCHEMA_VERSION,
                "cluster_id": cluster_id,
                "item": item,
                "label": texts[0],
                "keywords": [],
                "size": sum(m["count"] for m in members),
                "members": members,
            }
        )
    rest = [
        {"text": t, "item": item, "kinds": ["ocr" if item == "text" else "caption"], "count": n, "probability": 0.0, "membership": "fitted"}
        for (item, t), n in sorted(counts.items())
        if (item, t) not in clustered
    ]
    records.append(
        {
            "schema_version": SCHEMA_VERSION,
            "cluster_id": -1,
            "item": None,
            "label": "unclustered",
            "keywords": [],
            "size": sum(m["count"] for m in rest),
            "members": rest,
        }
    )
    write_jsonl(folder / "clusters.jsonl", "cluster", records)
    write_manifest(folder / "manifest.json", build_manifest(folder, sorted(shards), {}, stages=STAGES))
    return folder


def labels(db: Path, item: str | None = None) -> dict[tuple[str, str], tuple]:
    """(path, text) -> (final_label, label_source, propagated_from) of every region and line."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT i.path, f.item, f.text, f.final_label, f.label_source, f.propagated_from "
            "FROM final_annotations f JOIN images i USING (image_id)" + (" WHERE f.item = ?" if item else ""),
            (item,) if item else (),
        ).fetchall()
    finally:
        conn.close()
    return {(path, text): (final, source, origin) for path, _, text, final, source, origin in rows}


def propagated_rows(db: Path) -> dict[str, tuple]:
    conn = sqlite3.connect(db)
    try:
        return {r[0]: r[1:] for r in conn.execute("SELECT item_key, label, propagated_from, rule, similarity FROM propagated_labels")}
    finally:
        conn.close()


def line_key(path: str, line_no: int = 0) -> str:
    return f"{image_id(path)}/line/{line_no}"


def region_key(path: str, region_id: int = 0) -> str:
    return f"{image_id(path)}/region/{region_id}"


@pytest.fixture()
def run(tmp_path):
    return {"db": tmp_path / "results" / "annotations.sqlite", "store": tmp_path / "reviews" / "reviews.sqlite", "tmp": tmp_path}


# ----------------------------------------------------------------------------- rule 1 and 2


def test_a_reviewed_cluster_reaches_its_new_members_after_a_catalog_update(run):
    """A text cluster relabeled and a region cluster accepted; the next catalog update brings new
    images whose texts fall into them: they get the new label (text) or their own label (region)
    with label_source 'propagated' and propagated_from the cluster review's key."""
    db, store, tmp = run["db"], run["store"], run["tmp"]
    clusters = [(0, "text", ["EXIT", "EXIT ->"]), (1, "region", ["dog", "puppy"])]
    v1 = {"a.png": {"lines": ["EXIT"], "regions": ["dog"]}, "b.png": {"lines": ["EXIT ->"], "regions": ["dog"]}}
    build_catalog(write_cache(tmp / "v1", v1, clusters, {}), db, reviews_db=store, **QUIET)
    assert propagated_rows(db) == {}

    renamed = record_cluster_review(db, store, 0, "relabeled", "exit sign", reviewer="ana", source="test")
    accepted = record_cluster_review(db, store, 1, "accepted", reviewer="bo", source="test")
    assert (renamed.review_key, renamed.items) == ("cluster/text/0", 2)
    assert (accepted.review_key, accepted.items) == ("cluster/region/1", 2)
    conn = connect_store(store)
    assert sorted(conn.execute("SELECT review_key, cluster_id, item, status, label, cluster_label, reviewer FROM cluster_reviews")) == [
        ("cluster/region/1", 1, "region", "accepted", None, "dog", "bo"),
        ("cluster/text/0", 0, "text", "relabeled", "exit sign", "EXIT", "ana"),
    ]
    assert conn.execute("SELECT COUNT(*) FROM reviews").fetchone()[0] == 4  # the members' own (human) reviews stay
    conn.close()
    assert labels(db)[("a.png", "EXIT")] == ("exit sign", "review", None)

    # v2: c.png repeats a member text, d.png brings a new text assigned to the cluster, e.png a
    # region of the accepted cluster's reviewed class and one of a class nobody reviewed in it
    v2 = {
        **v1,
        "c.png": {"lines": ["EXIT"], "regions": ["dog"], "shard": "0001"},
        "d.png": {"lines": ["EXIT >>"], "shard": "0001"},
        "e.png": {"regions": ["dog", "puppy"], "shard": "0001"},
    }
    clusters2 = [(0, "text", ["EXIT", "EXIT ->", "EXIT >>"]), (1, "region", ["dog", "puppy"])]
    stats = build_catalog(write_cache(tmp / "v2", v2, clusters2, {}), db, reviews_db=store, **QUIET)
    assert stats["mode"] == "incremental" and stats["loaded"] == ["0001"]
    assert stats["propagated"] == {"near_duplicate": 0, "cluster": 4, "similarity": 0}  # c.png's EXIT is a look-alike too: the cluster comes first
    got = labels(db)
    assert got[("c.png", "EXIT")] == ("exit sign", "propagated", "cluster/text/0")
    assert got[("d.png", "EXIT >>")] == ("exit sign", "propagated", "cluster/text/0")
    assert got[("c.png", "dog")] == ("dog", "propagated", "cluster/region/1")  # accepted: its own label
    assert got[("e.png", "dog")] == ("dog", "propagated", "cluster/region/1")
    assert got[("e.png", "puppy")] == ("puppy", "machine", None)  # no puppy was reviewed in the cluster
    assert got[("a.png", "EXIT")] == ("exit sign", "review", None) and got[("b.png", "dog")] == ("dog", "review", None)
    assert propagated_rows(db)[line_key("d.png")] == ("exit sign", "cluster/text/0", "cluster", None)
    # the image's label says where it came from too
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT label_source, propagated_from FROM path_labels WHERE path = 'd.png'").fetchone() == ("propagated", "cluster/text/0")
    conn.close()
    # a full rebuild from the same cache and store is the same catalog
    fresh = tmp / "fresh.sqlite"
    import_cache(tmp / "v2", fresh, reviews_db=store, **QUIET)
    assert labels(fresh) == got and propagated_rows(fresh) == propagated_rows(db)


def test_a_cluster_review_is_refused_for_the_bucket_an_unknown_cluster_or_without_a_label(run):
    db, store, tmp = run["db"], run["store"], run["tmp"]
    build_catalog(write_cache(tmp / "v1", {"a.png": {"lines": ["EXIT", "odd"]}}, [(0, "text", ["EXIT"])], {}), db, reviews_db=store, **QUIET)
    for args, needle in (
        ((-1, "accepted"), "'unclustered' bucket is no cluster"),
        ((7, "accepted"), "no such cluster"),
        ((0, "relabeled"), "needs its new label"),
        ((0, "rejected"), "is not one of accepted, relabeled"),
    ):
        with pytest.raises(ReviewError, match=needle):
            record_cluster_review(db, store, *args, source="test")
    assert not store.exists() or connect_store(store).execute("SELECT COUNT(*) FROM cluster_reviews").fetchone()[0] == 0


def test_regions_never_cross_classes(run):
    """A region cluster {dog, puppy, wolf} relabeled 'terrier' while it held dog and puppy
    regions; then a person re-reviews the puppy region as 'puppy'. New regions: a dog becomes a
    terrier, a puppy and a wolf (a class nobody relabeled in the cluster) keep their own label."""
    db, store, tmp = run["db"], run["store"], run["tmp"]
    v1 = {"a.png": {"regions": ["dog", "puppy"]}}
    clusters = [(0, "region", ["dog", "puppy", "wolf"])]
    build_catalog(write_cache(tmp / "v1", v1, clusters, {}), db, reviews_db=store, **QUIET)
    assert record_cluster_review(db, store, 0, "relabeled", "terrier", source="test").items == 2
    record_reviews([Review(image_id("a.png"), 1, None, "accepted", "puppy")], db, store, "test")
    v2 = {**v1, "b.png": {"regions": ["dog", "puppy", "wolf"], "shard": "0001"}}
    build_catalog(write_cache(tmp / "v2", v2, clusters, {}), db, reviews_db=store, **QUIET)
    got = labels(db, "region")
    assert got[("b.png", "dog")] == ("terrier", "propagated", "cluster/region/0")
    assert got[("b.png", "puppy")] == ("puppy", "machine", None)
    assert got[("b.png", "wolf")] == ("wolf", "machine", None)
    assert got[("a.png", "dog")] == ("terrier", "review", None) and got[("a.png", "puppy")] == ("puppy", "review", None)
    assert set(propagated_rows(db)) == {region_key("b.png", 0)}
    # regions get nothing by similarity, even from an identical text
    record_reviews([Review(image_id("a.png"), 1, None, "relabeled", "pup")], db, store, "test")
    assert labels(db, "region")[("b.png", "puppy")] == ("puppy", "machine", None)


# ------------------------------------------------------------------------------------ rule 3


LOOK_ALIKES = {
    "EXIT": unit(1.0),
    "EXIT.": unit(0.905),
    "EXlT": unit(0.895),  # around the threshold 0.9
    "OPEN": unit(1.0, 2, 3),
    "OPEN.": unit(0.95, 2, 3),
    "CLOSED": unit(1.0, 4, 5),
    "CLOSED.": unit(0.97, 4, 5),
}


def test_similar_ocr_lines_take_the_reviewed_label_above_the_threshold(run):
    db, store, tmp = run["db"], run["store"], run["tmp"]
    images = {
        "r.png": {"lines": ["EXIT", "OPEN", "CLOSED"]},
        "s.png": {"lines": ["EXIT", "EXIT.", "EXlT", "OPEN.", "CLOSED."]},
    }
    cache = write_cache(tmp / "v1", images, [], LOOK_ALIKES)
    build_catalog(cache, db, reviews_db=store, propagate_similarity=0.9, **QUIET)
    record_reviews([
        Review(image_id("r.png"), None, 0, "relabeled", "exit sign"),
        Review(image_id("r.png"), None, 1, "accepted", "OPEN"),
        Review(image_id("r.png"), None, 2, "rejected", None),
    ], db, store, "test")  # fmt: skip
    got = labels(db)
    source = line_key("r.png", 0)
    assert got[("s.png", "EXIT")] == ("exit sign", "propagated", source)  # the same text: similarity 1
    assert got[("s.png", "EXIT.")] == ("exit sign", "propagated", source)  # 0.905 >= 0.9
    assert got[("s.png", "EXlT")] == ("EXlT", "machine", None)  # 0.895 < 0.9
    assert got[("s.png", "OPEN.")] == ("OPEN", "propagated", line_key("r.png", 1))  # accepted: the reviewed line's label
    assert got[("s.png", "CLOSED.")] == ("CLOSED.", "machine", None)  # a rejection does not propagate
    assert got[("r.png", "CLOSED")] == (None, "review", None)
    rows = propagated_rows(db)
    assert rows[line_key("s.png", 1)][2:] == ("similarity", pytest.approx(0.905, abs=1e-6))
    assert rows[line_key("s.png", 0)][2:] == ("similarity", pytest.approx(1.0, abs=1e-6))

    # the threshold is the workflow's setting, recorded in the catalog and used by later imports
    build_catalog(cache, db, reviews_db=store, propagate_similarity=0.89, **QUIET)
    assert labels(db)[("s.png", "EXlT")] == ("exit sign", "propagated", source)
    record_reviews([Review(image_id("s.png"), None, 3, "accepted", "OPEN.")], db, store, "test")  # mirrored: refreshes with 0.89
    assert labels(db)[("s.png", "EXlT")] == ("exit sign", "propagated", source)
    assert labels(db)[("s.png", "OPEN.")] == ("OPEN.", "review", None)
    # null turns similarity propagation off
    stats = build_catalog(cache, db, reviews_db=store, propagate_similarity=None, **QUIET)
    assert stats["propagated"] == {"near_duplicate": 0, "cluster": 0, "similarity": 0} and propagated_rows(db) == {}
    mirror_reviews(store, db)
    assert propagated_rows(db) == {}


def derived(db: Path) -> dict[str, list]:
    conn = sqlite3.connect(db)
    try:
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall()) for t in ("similar_texts", "similarity_sources", "propagated_labels")}
    finally:
        conn.close()


def test_similarity_is_kept_up_to_date_incrementally_and_equals_a_fresh_computation(run):
    """The pairs of similar texts are updated, not recomputed: texts of new shards are compared
    with the reviewed texts already known, a newly reviewed text with every text, and a review
    that stops being a source takes its pairs away. After each step the catalog's derived tables
    are those of a catalog built fresh from the same cache and store."""
    db, store, tmp = run["db"], run["store"], run["tmp"]
    v1 = {"a.png": {"lines": ["EXIT", "OPEN"]}}
    v2 = {**v1, "c.png": {"lines": ["EXIT.", "OPEN."], "shard": "0001"}}

    def fresh(cache: Path) -> dict:
        other = tmp / f"fresh-{len(list(tmp.glob('fresh-*')))}.sqlite"
        import_cache(cache, other, reviews_db=store, **QUIET)
        return derived(other)

    build_catalog(write_cache(tmp / "v1", v1, [], LOOK_ALIKES), db, reviews_db=store, **QUIET)
    record_reviews([Review(image_id("a.png"), None, 0, "relabeled", "exit sign")], db, store, "test")
    assert derived(db) == fresh(tmp / "v1")
    build_catalog(write_cache(tmp / "v2", v2, [], LOOK_ALIKES), db, reviews_db=store, **QUIET)  # new texts, older source
    got = labels(db)
    assert got[("c.png", "EXIT.")] == ("exit sign", "propagated", line_key("a.png"))
    assert derived(db) == fresh(tmp / "v2")
    record_reviews([Review(image_id("a.png"), None, 1, "accepted", "OPEN")], db, store, "test")  # a new source
    assert labels(db)[("c.png", "OPEN.")] == ("OPEN", "propagated", line_key("a.png", 1))
    assert derived(db) == fresh(tmp / "v2")
    record_reviews([Review(image_id("a.png"), None, 1, "rejected", None)], db, store, "test")  # no source any more
    assert labels(db)[("c.png", "OPEN.")] == ("OPEN.", "machine", None)
    assert derived(db) == fresh(tmp / "v2") and all(source != "OPEN" for _, source, _ in derived(db)["similar_texts"])
    # shard 0001 embedded again, EXIT. now far from EXIT (another model): its old pair goes
    build_catalog(write_cache(tmp / "v2b", v2, [], {**LOOK_ALIKES, "EXIT.": unit(0.5)}), db, reviews_db=store, **QUIET)
    assert labels(db)[("c.png", "EXIT.")] == ("EXIT.", "machine", None)
    assert derived(db) == fresh(tmp / "v2b")
    build_catalog(tmp / "v1", db, reviews_db=store, **QUIET)  # shard 0001 removed: its texts' pairs go
    assert derived(db) == fresh(tmp / "v1")
    assert {text for text, _, _ in derived(db)["similar_texts"]} == {"EXIT"}


def test_the_most_similar_reviewed_line_wins_and_the_latest_review_of_a_text(run):
    db, store, tmp = run["db"], run["store"], run["tmp"]
    vectors = {"A": unit(1.0), "B": unit(0.96), "AB": unit(0.99, 0, 2)}  # AB: 0.99 with A, 0.99 * 0.96 with B
    images = {"r.png": {"lines": ["A", "B"]}, "t.png": {"lines": ["A"]}, "s.png": {"lines": ["AB", "A"]}}
    build_catalog(write_cache(tmp / "v1", images, [], vectors), db, reviews_db=store, **QUIET)
    record_reviews([
        Review(image_id("r.png"), None, 0, "relabeled", "first", reviewed_at="2024-01-01T00:00:00+00:00"),
        Review(image_id("t.png"), None, 0, "relabeled", "second", reviewed_at="2024-02-01T00:00:00+00:00"),
        Review(image_id("r.png"), None, 1, "relabeled", "bee"),
    ], db, store, "test")  # fmt: skip
    got = labels(db)
    assert float(vectors["AB"] @ vectors["A"]) > float(vectors["AB"] @ vectors["B"]) >= 0.9
    assert got[("s.png", "AB")] == ("second", "propagated", line_key("t.png"))  # nearest text A, its latest review
    assert got[("s.png", "A")] == ("second", "propagated", line_key("t.png"))


# ------------------------------------------------------------------------------------ rule 4


def test_a_human_review_is_never_overwritten(run):
    """x.png's line is reviewed on its own while its text is unclustered; the cluster of 'EXIT'
    is relabeled; in the next run its text joins that cluster, and a similar reviewed line exists:
    it keeps its review. A propagated label a person then reviews keeps that review through later
    updates and a later verdict on the cluster."""
    db, store, tmp = run["db"], run["store"], run["tmp"]
    vectors = {"EXIT": unit(1.0), "EXIT 2": unit(0.99)}
    v1 = {"a.png": {"lines": ["EXIT"]}, "x.png": {"lines": ["EXIT 2"]}}
    build_catalog(write_cache(tmp / "v1", v1, [(0, "text", ["EXIT"])], vectors), db, reviews_db=store, **QUIET)
    record_reviews([Review(image_id("x.png"), None, 0, "relabeled", "second exit")], db, store, "test")
    record_cluster_review(db, store, 0, "relabeled", "exit sign", source="test")
    v2 = {**v1, "y.png": {"lines": ["EXIT 2"], "shard": "0001"}}
    build_catalog(write_cache(tmp / "v2", v2, [(0, "text", ["EXIT", "EXIT 2"])], vectors), db, reviews_db=store, **QUIET)
    got = labels(db)
    assert got[("x.png", "EXIT 2")] == ("second exit", "review", None)
    assert got[("y.png", "EXIT 2")] == ("exit sign", "propagated", "cluster/text/0")  # the cluster's verdict comes first
    assert line_key("x.png") not in propagated_rows(db)

    # a person accepts y's propagated label: a review of its own, which a later verdict leaves alone
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    item = dict(conn.execute("SELECT * FROM final_annotations WHERE image_id = ?", (image_id("y.png"),)).fetchone())
    conn.close()
    review = review_of_propagated(item, "accepted", reviewer="ana")
    assert (review.status, review.label) == ("relabeled", "exit sign")
    record_reviews([review], db, store, "test")
    record_reviews([Review(image_id("y.png"), None, 0, "relabeled", "exit two")], db, store, "test")
    assert record_cluster_review(db, store, 0, "accepted", source="test").items == 0  # everyone has a review
    build_catalog(write_cache(tmp / "v2", v2, [(0, "text", ["EXIT", "EXIT 2"])], vectors), db, reviews_db=store, full=True, **QUIET)
    got = labels(db)
    assert got[("y.png", "EXIT 2")] == ("exit two", "review", None)
    assert got[("x.png", "EXIT 2")] == ("second exit", "review", None)
    assert propagated_rows(db) == {}


def test_rejecting_a_propagated_label_sticks(run):
    db, store, tmp = run["db"], run["store"], run["tmp"]
    images = {"r.png": {"lines": ["EXIT"]}, "s.png": {"lines": ["EXIT."]}}
    cache = write_cache(tmp / "v1", images, [(0, "text", ["EXIT", "EXIT."])], LOOK_ALIKES)
    build_catalog(cache, db, reviews_db=store, **QUIET)
    record_reviews([Review(image_id("r.png"), None, 0, "relabeled", "exit sign")], db, store, "test")
    assert labels(db)[("s.png", "EXIT.")] == ("exit sign", "propagated", line_key("r.png"))
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    item = dict(conn.execute("SELECT * FROM final_annotations WHERE label_source = 'propagated'").fetchone())
    conn.close()
    record_reviews([review_of_propagated(item, "rejected", reviewer="ana")], db, store, "test")
    assert labels(db)[("s.png", "EXIT.")] == (None, "review", None)
    # the rejection stays through catalog updates, a full rebuild, and a new label of its look-alike
    build_catalog(cache, db, reviews_db=store, **QUIET)
    build_catalog(cache, db, reviews_db=store, full=True, **QUIET)
    record_reviews([Review(image_id("r.png"), None, 0, "relabeled", "way out")], db, store, "test")
    assert labels(db)[("s.png", "EXIT.")] == (None, "review", None)
    assert propagated_rows(db) == {}


# ---------------------------------------------------------------------------- the store


def test_a_store_of_the_previous_layout_keeps_working(run):
    """A store written before cluster reviews (only the reviews table) is read and extended;
    what older code reads (the reviews table) is unchanged."""
    db, store, tmp = run["db"], run["store"], run["tmp"]
    build_catalog(write_cache(tmp / "v1", {"a.png": {"lines": ["EXIT"]}, "b.png": {"lines": ["EXIT"]}}, [(0, "text", ["EXIT"])], {}), db, **QUIET)
    store.parent.mkdir(parents=True)
    old = sqlite3.connect(store)
    old.execute(STORE_DDL)
    old.execute(
        "INSERT INTO reviews VALUES (?, ?, NULL, 0, 'relabeled', 'exit sign', 'ana', '2024-01-01', 'csv:old.csv', '2024-01-01')",
        (line_key("a.png"), image_id("a.png")),
    )
    old.commit()
    old.close()
    build_catalog(tmp / "v1", db, reviews_db=store, **QUIET)
    assert labels(db)[("b.png", "EXIT")] == ("exit sign", "propagated", line_key("a.png"))
    record_cluster_review(db, store, 0, "accepted", source="test")
    conn = sqlite3.connect(store)
    assert conn.execute("SELECT item_key, status, label FROM reviews ORDER BY item_key").fetchall() == sorted(
        [(line_key("a.png"), "relabeled", "exit sign"), (line_key("b.png"), "accepted", "EXIT")]
    )
    assert conn.execute("SELECT review_key FROM cluster_reviews").fetchall() == [("cluster/text/0",)]
    conn.close()


def test_a_catalog_without_the_propagation_tables_is_left_alone(run):
    """A catalog of an older layout (no propagation tables, views that do not read them): a
    review import still mirrors the store into it and propagates nothing; its next build
    rebuilds the layout."""
    db, store = run["tmp"] / "old.sqlite", run["store"]
    conn = connect_store(store)
    conn.execute("INSERT INTO reviews VALUES ('x/line/0', 'x', NULL, 0, 'accepted', 'EXIT', NULL, 't', 'test', 't')")
    conn.close()
    sqlite3.connect(db).execute(STORE_DDL).connection.close()
    mirror_reviews(store, db)
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT item_key FROM reviews").fetchall() == [("x/line/0",)]
    assert refresh_propagation(conn) == {"near_duplicate": 0, "cluster": 0, "similarity": 0}
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'propagated_labels'").fetchone() is None
    conn.close()
