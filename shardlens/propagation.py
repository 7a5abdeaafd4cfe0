"""Propagated labels: people's reviews carried to items nobody reviewed.

The catalog's ``propagated_labels`` table holds, for items without a review of their own, the
label a person's decision about similar items implies, with ``propagated_from`` naming that
decision. It is derived, never edited: :func:`refresh_propagation` recomputes it from the
catalog's tables inside the caller's transaction, on every catalog build or update
(:func:`shardlens.catalog.import_cache`) and every time reviews are recorded or imported
(:func:`shardlens.reviews.mirror_reviews`). ``final_annotations`` reads it: a human review wins,
then a propagated label, then the machine label (``label_source`` 'review' | 'propagated' |
'machine').

Rules, in this order (an item gets at most one propagated label, from the first that applies):

1. **A reviewed cluster** (a row of ``cluster_reviews``, written by
   :func:`shardlens.reviews.record_cluster_review` when a person accepts or relabels a whole
   cluster; ``propagated_from`` is its key, e.g. ``cluster/text/3``) reaches the cluster's member
   items that have no review, typically items of images added after the verdict whose text falls
   into the cluster. An accepted cluster gives each such item its **own machine label** (clusters
   group, they never rename); a relabeled cluster gives the **new label**.
   A cluster review applies only while the cluster still holds an item a person reviewed the
   same way (accepted; or relabeled with the same label), as the verdict's own item reviews are:
   cluster ids are not guaranteed stable across re-clustering, and a verdict whose reviewed items
   all left the cluster no longer describes it.
2. **Regions never cross classes.** A region's text is its class (its machine label), so for a
   region cluster that evidence must be of the item's own class: a region gets the cluster's
   verdict only when a region **with the same machine label** in that cluster carries the
   verdict as its human review. A relabel of a {dog, puppy} cluster to "terrier" thus reaches new
   "dog" and "puppy" regions, never a "wolf" region that joined the cluster later; an accepted
   cluster only confirms the classes a person saw. Regions get nothing by similarity.
3. **A similar reviewed OCR line** (items 'text' only): an OCR line whose text embedding has
   cosine similarity >= ``reviews.propagate_similarity`` (config; recorded in the catalog's
   ``propagation_settings``; null turns this rule off) with the text of an **accepted or
   relabeled** OCR line takes that line's reviewed label (the text accepted, or the new label);
   ``propagated_from`` is the reviewed line's item key, ``similarity`` the cosine. The most
   similar reviewed line wins; between reviewed lines of the same text, the most recent review
   (then the smaller item key). An identical text is similarity 1.
   **Rejections do not propagate**: a rejection says that one item's machine label is wrong, not
   what a look-alike is; spreading it would drop labels from exports that nobody looked at. A
   rejected line is no source, and its look-alikes keep their machine labels (or what another
   rule gives them).
4. **Human reviews always win**: an item with a review of its own (accepted, relabeled or
   rejected) never gets a propagated label, whatever cluster or look-alike would apply. Turning
   a propagated label into a review (the dashboard's "Accept propagated" / "Reject propagated",
   :func:`review_of_propagated`) therefore makes it stick.

To undo a propagated label, review the item (a rejection sticks too), or relabel or re-review
the cluster; to stop similarity propagation, set ``reviews.propagate_similarity: null``.
"""

from __future__ import annotations

import base64
import json
import sqlite3

import numpy as np

from .reviews import Review

RECORDED = "recorded"  # use the threshold the catalog recorded (or the schema's default)
BLOCK = 4096  # OCR texts compared per block

PROPAGATION_DDL = (
    """CREATE TABLE IF NOT EXISTS propagated_labels (
    item_key TEXT PRIMARY KEY,
    image_id TEXT NOT NULL,
    region_id INTEGER,
    line_no INTEGER,
    label TEXT NOT NULL,
    propagated_from TEXT NOT NULL,
    rule TEXT NOT NULL CHECK (rule IN ('cluster', 'similarity')),
    similarity REAL
)""",
    """CREATE TABLE IF NOT EXISTS propagation_settings (
    name TEXT PRIMARY KEY,
    value REAL
)""",
)
COLUMNS = ("item_key", "image_id", "region_id", "line_no", "label", "propagated_from", "rule", "similarity")


def has_propagation(conn: sqlite3.Connection) -> bool:
    """Whether the catalog has the propagation tables (one written before them gets them, and
    views that read them, at its next build, which rebuilds a catalog of another layout)."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'propagated_labels'").fetchone() is not None


def similarity_setting(conn: sqlite3.Connection, given: float | None | str = RECORDED) -> float | None:
    """The similarity threshold to propagate with: ``given`` (recorded in the catalog for later
    refreshes), or with :data:`RECORDED` the one the catalog recorded, else the schema's default."""
    if given != RECORDED:
        conn.execute("INSERT OR REPLACE INTO propagation_settings (name, value) VALUES ('similarity', ?)", (given,))
        return None if given is None else float(given)
    row = conn.execute("SELECT value FROM propagation_settings WHERE name = 'similarity'").fetchone()
    if row is not None:
        return row[0]
    from .config import schema_default

    return schema_default("reviews", "propagate_similarity")


def refresh_propagation(conn: sqlite3.Connection, similarity: float | None | str = RECORDED) -> dict[str, int]:
    """Recompute ``propagated_labels`` (inside the caller's transaction); return how many items
    each rule labelled. A catalog without the table (an older layout) is left as it is."""
    if not has_propagation(conn):
        return {"cluster": 0, "similarity": 0}
    threshold = similarity_setting(conn, similarity)
    rows = _cluster_rows(conn)
    by_cluster = len(rows)
    if threshold is not None:
        for row in _similarity_rows(conn, threshold):
            rows.setdefault(row[0], row)
    conn.execute("DELETE FROM propagated_labels")
    conn.executemany(
        f"INSERT INTO propagated_labels ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
        [rows[key] for key in sorted(rows)],
    )
    return {"cluster": by_cluster, "similarity": len(rows) - by_cluster}


# Cluster verdicts with the texts they may reach: for a text cluster every member text, for a
# region cluster only the classes (captions) a person reviewed the same way in it. The evidence
# is found from the reviews (few) outwards, never by scanning a cluster's items per item.
_CLUSTER_SQL = """
WITH agreeing AS (
    SELECT c.review_key, c.item, c.status, c.label, m.text
    FROM reviews v
    JOIN regions r ON r.image_id = v.image_id AND r.region_id = v.region_id
    JOIN cluster_members m ON m.item = 'region' AND m.text = r.caption
    JOIN cluster_reviews c ON c.item = 'region' AND c.cluster_id = m.cluster_id
    WHERE v.region_id IS NOT NULL AND v.status = c.status AND (c.status = 'accepted' OR v.label = c.label)
    UNION
    SELECT c.review_key, c.item, c.status, c.label, NULL
    FROM reviews v
    JOIN ocr_lines o ON o.image_id = v.image_id AND o.line_no = v.line_no
    JOIN cluster_members m ON m.item = 'text' AND m.text = o.text
    JOIN cluster_reviews c ON c.item = 'text' AND c.cluster_id = m.cluster_id
    WHERE v.line_no IS NOT NULL AND v.status = c.status AND (c.status = 'accepted' OR v.label = c.label)
),
reach AS (
    SELECT DISTINCT a.review_key, a.status, a.label, a.text FROM agreeing a WHERE a.item = 'region'
    UNION
    SELECT DISTINCT a.review_key, a.status, a.label, m.text
    FROM agreeing a JOIN cluster_reviews c ON c.review_key = a.review_key
    JOIN cluster_members m ON m.item = 'text' AND m.cluster_id = c.cluster_id
    WHERE a.item = 'text'
)
SELECT r.image_id, r.region_id, NULL, CASE WHEN h.status = 'relabeled' THEN h.label ELSE r.caption END, h.review_key
FROM reach h JOIN cluster_reviews c ON c.review_key = h.review_key AND c.item = 'region'
JOIN regions r ON r.caption = h.text
WHERE NOT EXISTS (SELECT 1 FROM reviews v WHERE v.item_key = r.image_id || '/region/' || r.region_id)
UNION ALL
SELECT o.image_id, NULL, o.line_no, CASE WHEN h.status = 'relabeled' THEN h.label ELSE o.text END, h.review_key
FROM reach h JOIN cluster_reviews c ON c.review_key = h.review_key AND c.item = 'text'
JOIN ocr_lines o ON o.text = h.text
WHERE NOT EXISTS (SELECT 1 FROM reviews v WHERE v.item_key = o.image_id || '/line/' || o.line_no)
"""


def _key(image_id: str, region_id: int | None, line_no: int | None) -> str:
    return f"{image_id}/region/{region_id}" if region_id is not None else f"{image_id}/line/{line_no}"


def _cluster_rows(conn: sqlite3.Connection) -> dict[str, tuple]:
    """item_key -> row of rule 1 (and 2 for regions). An item in two reviewed clusters cannot
    happen (a text is in one cluster); the smaller review key wins all the same."""
    out: dict[str, tuple] = {}
    order = lambda r: (r[4], r[0], -1 if r[1] is None else r[1], -1 if r[2] is None else r[2])  # noqa: E731
    for image_id, region_id, line_no, label, review_key in sorted(conn.execute(_CLUSTER_SQL), key=order):
        if label is None:
            continue
        key = _key(image_id, region_id, line_no)
        out.setdefault(key, (key, image_id, region_id, line_no, label, review_key, "cluster", None))
    return out


def _decode(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4")


def _sources(conn: sqlite3.Connection) -> tuple[list[tuple[str, str]], np.ndarray]:
    """The reviewed OCR lines a label can come from, one per distinct text (the most recent
    review, then the smaller item key): [(item_key, label)] and their unit vectors (rows)."""
    rows = conn.execute(
        """
        SELECT v.item_key, o.text, v.label FROM reviews v
        JOIN ocr_lines o ON o.image_id = v.image_id AND o.line_no = v.line_no
        WHERE v.line_no IS NOT NULL AND v.status IN ('accepted', 'relabeled') AND v.label IS NOT NULL
        GROUP BY v.item_key
        ORDER BY o.text, v.reviewed_at DESC, v.item_key
        """
    ).fetchall()
    by_text: dict[str, tuple[str, str]] = {}
    for key, text, label in rows:
        by_text.setdefault(text, (key, label))
    if not by_text:
        return [], np.zeros((0, 0))
    vectors: dict[str, np.ndarray] = {}
    for text, vector in conn.execute(
        "SELECT text, vector FROM embeddings WHERE kind = 'ocr' AND text IN (SELECT value FROM json_each(?)) ORDER BY text, shard",
        (json.dumps(sorted(by_text)),),
    ):
        if text not in vectors:
            vectors[text] = _decode(vector)
    texts = [t for t in sorted(by_text) if t in vectors]
    dims = {vectors[t].shape[0] for t in texts}
    if len(dims) != 1:  # no embedding, or embeddings of several models: compare within the commonest
        if not dims:
            return [], np.zeros((0, 0))
        dim = max(sorted(dims), key=lambda d: sum(vectors[t].shape[0] == d for t in texts))
        texts = [t for t in texts if vectors[t].shape[0] == dim]
    matrix = np.stack([vectors[t] for t in texts]).astype(np.float64)
    matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    return [by_text[t] for t in texts], matrix


def _similar_texts(conn: sqlite3.Connection, sources: np.ndarray, threshold: float) -> dict[str, tuple[int, float]]:
    """OCR text -> (index of its most similar source, cosine) where the cosine >= threshold,
    comparing every embedded OCR text with the sources, :data:`BLOCK` texts at a time."""
    found: dict[str, tuple[int, float]] = {}
    cursor = conn.execute("SELECT text, vector FROM embeddings WHERE kind = 'ocr' ORDER BY text, shard")
    previous = None
    while batch := cursor.fetchmany(BLOCK):
        texts, vectors = [], []
        for text, vector in batch:
            if text == previous:  # the same text embedded in another shard
                continue
            previous = text
            decoded = _decode(vector)
            if decoded.shape[0] == sources.shape[1]:
                texts.append(text)
                vectors.append(decoded)
        if not texts:
            continue
        block = np.stack(vectors).astype(np.float64)
        block /= np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)
        sims = block @ sources.T
        best = sims.argmax(axis=1)  # the first of equals: sources are in text order
        score = sims[np.arange(len(texts)), best]
        for i in np.nonzero(score >= threshold)[0]:
            found[texts[i]] = (int(best[i]), float(score[i]))
    return found


def _similarity_rows(conn: sqlite3.Connection, threshold: float) -> list[tuple]:
    """Rows of rule 3 for every unreviewed OCR line whose text is similar enough to a source."""
    sources, matrix = _sources(conn)
    if not sources:
        return []
    found = _similar_texts(conn, matrix, threshold)
    if not found:
        return []
    out = []
    lines = conn.execute(
        """
        SELECT o.image_id, o.line_no, o.text FROM ocr_lines o
        WHERE o.text IN (SELECT value FROM json_each(?))
          AND NOT EXISTS (SELECT 1 FROM reviews v WHERE v.item_key = o.image_id || '/line/' || o.line_no)
        ORDER BY o.image_id, o.line_no
        """,
        (json.dumps(sorted(found)),),
    )
    for image_id, line_no, text in lines:
        index, score = found[text]
        source_key, label = sources[index]
        out.append((_key(image_id, None, line_no), image_id, None, line_no, label, source_key, "similarity", round(score, 6)))
    return out


def review_of_propagated(item: dict, status: str, reviewer: str | None = None) -> Review:
    """The human review that settles a propagated label (the dashboard's bulk actions): accepting
    it records the propagated label (``accepted`` when it is the item's machine label, else
    ``relabeled``); rejecting it records a rejection. ``item`` has image_id, region_id, line_no,
    machine_label and final_label (the propagated label), as the dashboard's item rows do."""
    if status == "rejected":
        return Review(item["image_id"], item.get("region_id"), item.get("line_no"), "rejected", None, reviewer)
    if status != "accepted":
        raise ValueError(f"a propagated label is accepted or rejected, not {status!r}")
    label = item["final_label"]
    verdict = "accepted" if label == item.get("machine_label") else "relabeled"
    return Review(item["image_id"], item.get("region_id"), item.get("line_no"), verdict, label, reviewer)
