"""Propagated labels: people's reviews carried to items nobody reviewed.

The catalog's ``propagated_labels`` table holds, for items without a review of their own, the
label a person's decision about similar items implies, with ``propagated_from`` naming that
decision. It is derived, never edited: :func:`refresh_propagation` recomputes it from the
catalog's tables inside the caller's transaction, on every catalog build or update
(:func:`shardlens.catalog.import_cache`) and every time reviews are recorded or imported
(:func:`shardlens.review_writer.mirror_reviews`). ``final_annotations`` reads it: a human review
wins, then a propagated label, then the machine label (``label_source`` 'review' | 'propagated' |
'machine').

Rules, in this order (an item gets at most one propagated label, from the first that applies):

0. **A reviewed item of a near-duplicate image** (:mod:`shardlens.near_duplicates`: images whose
   perceptual hashes are within ``dedupe.max_distance`` bits, grouped in the catalog's
   ``near_duplicates`` table): an item of image B with no review of its own takes the label of
   the **matching** item of an image A of B's group that a person **accepted or relabeled**
   (the accepted label, or the new one); ``propagated_from`` is that review's item key,
   ``similarity`` the two boxes' IoU. Matching means the same place in the picture: the two
   boxes, each divided by its image's width and height (a resized copy has other pixel
   coordinates), overlap with IoU >= :data:`NEAR_DUPLICATE_IOU` (0.5); a region must also have
   the **same machine label** (regions never cross classes, as rule 2 says); an OCR line needs no
   equal text, since a copy's OCR may read the same line differently, and the line's reviewed
   label is what that line says. Of several matching reviewed items, the largest IoU wins, then
   the most recent review, then the smaller item key. It comes first: a person's decision on
   this very object in this very picture says more than one on a cluster or a look-alike text.
   Rejections do not propagate (see rule 3), nor do image-level reviews.
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
   similar reviewed text wins (then the smaller text); of the reviewed lines of that text, the
   most recent review (then the smaller item key). An identical text is similarity 1.
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

Cost: rule 0 starts from the accepted and relabeled reviews of images in a group and reads only
the items of their groups' other images (an index on ``near_duplicates.group_id``). Rule 3 keeps its pairs of similar texts (``similar_texts``) between refreshes, so a
refresh compares only what is new: a newly reviewed text with every OCR text (one pass over the
embeddings, in blocks of :data:`BLOCK`), the texts of newly loaded shards with the reviewed
texts. A review of a region, or a new label for a text already reviewed, costs no vector work
(``bench/propagation_scale.py`` prints the figures).
"""

from __future__ import annotations

import base64
import json
import sqlite3

import numpy as np

from .catalog_rules import item_key, item_key_sql
from .near_duplicates import has_near_duplicates
from .review_store import Review
from .table_sync import sync_table

RECORDED = "recorded"  # use the threshold the catalog recorded (or the schema's default)
NEAR_DUPLICATE_IOU = 0.5  # rule 0: the least IoU of two items' normalised boxes to match
BLOCK = 4096  # OCR texts compared per block

PROPAGATION_DDL = (
    """CREATE TABLE IF NOT EXISTS propagated_labels (
    item_key TEXT PRIMARY KEY,
    image_id TEXT NOT NULL,
    region_id INTEGER,
    line_no INTEGER,
    label TEXT NOT NULL,
    propagated_from TEXT NOT NULL,
    rule TEXT NOT NULL CHECK (rule IN ('near_duplicate', 'cluster', 'similarity')),
    similarity REAL
)""",
    """CREATE TABLE IF NOT EXISTS propagation_settings (
    name TEXT PRIMARY KEY,
    value REAL
)""",
    # rule 3's working set, kept between refreshes (see _update_similar_texts): each pair of an
    # embedded OCR text and a reviewed line's text at or above the threshold, and the reviewed
    # texts already compared with every text
    """CREATE TABLE IF NOT EXISTS similar_texts (
    text TEXT NOT NULL,
    source_text TEXT NOT NULL,
    similarity REAL NOT NULL,
    PRIMARY KEY (text, source_text)
)""",
    "CREATE INDEX IF NOT EXISTS similar_texts_source ON similar_texts(source_text)",
    "CREATE TABLE IF NOT EXISTS similarity_sources (source_text TEXT PRIMARY KEY)",
    "CREATE INDEX IF NOT EXISTS embeddings_text ON embeddings(kind, text, shard)",
)
COLUMNS = ("item_key", "image_id", "region_id", "line_no", "label", "propagated_from", "rule", "similarity")


def has_propagation(conn: sqlite3.Connection) -> bool:
    """Whether the catalog has the propagation tables (one written before them gets them, and
    views that read them, at its next build, which rebuilds a catalog of another layout)."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'propagated_labels'").fetchone() is not None


def similarity_setting(conn: sqlite3.Connection, given: float | None | str = RECORDED) -> float | None:
    """The similarity threshold to propagate with: ``given``, or with :data:`RECORDED` the one
    the catalog recorded, else the schema's default; recorded in the catalog for later refreshes."""
    if given == RECORDED:
        row = conn.execute("SELECT value FROM propagation_settings WHERE name = 'similarity'").fetchone()
        if row is not None:
            return row[0]
        from .config import schema_default

        given = schema_default("reviews", "propagate_similarity")
    conn.execute("INSERT OR REPLACE INTO propagation_settings (name, value) VALUES ('similarity', ?)", (given,))
    return None if given is None else float(given)


def refresh_propagation(conn: sqlite3.Connection, similarity: float | None | str = RECORDED, changed_shards: list[str] | None = None) -> dict[str, int]:
    """Recompute ``propagated_labels`` (inside the caller's transaction); return how many items
    each rule labelled. ``changed_shards``: the shards whose rows were loaded since the last
    refresh (the catalog import passes them; a review import changes none). A catalog without
    the table (an older layout) is left as it is."""
    if not has_propagation(conn):
        return {"near_duplicate": 0, "cluster": 0, "similarity": 0}
    threshold = similarity_setting(conn, similarity)
    rows = _near_duplicate_rows(conn)
    by_near_duplicate = len(rows)
    for key, row in _cluster_rows(conn).items():
        rows.setdefault(key, row)
    by_cluster = len(rows) - by_near_duplicate
    if threshold is None:
        conn.execute("DELETE FROM similar_texts")
        conn.execute("DELETE FROM similarity_sources")
        conn.execute("DELETE FROM propagation_settings WHERE name = 'similar_texts_threshold'")
    else:
        for row in _similarity_rows(conn, threshold, changed_shards):
            rows.setdefault(row[0], row)
    sync_table(conn, "propagated_labels", (rows[key] for key in sorted(rows)))
    return {"near_duplicate": by_near_duplicate, "cluster": by_cluster, "similarity": len(rows) - by_cluster - by_near_duplicate}


# Rule 0's candidates: each accepted or relabeled item of an image in a near-duplicate group with
# each unreviewed item of another image of its group (regions: of the same machine label), both
# with their boxes and their images' sizes; the IoU test is in Python. Found from the reviews
# (few) outwards through the group index, never by scanning the items of every group.
_NEAR_DUPLICATE_SQL = f"""
WITH sources AS (
    SELECT v.item_key, v.label, v.reviewed_at, v.image_id, 'region' AS item, r.caption AS caption, r.bbox
    FROM reviews v JOIN regions r ON r.image_id = v.image_id AND r.region_id = v.region_id
    WHERE v.region_id IS NOT NULL AND v.status IN ('accepted', 'relabeled') AND v.label IS NOT NULL
      AND v.image_id IN (SELECT image_id FROM near_duplicates)
    UNION
    SELECT v.item_key, v.label, v.reviewed_at, v.image_id, 'text', NULL, o.bbox
    FROM reviews v JOIN ocr_lines o ON o.image_id = v.image_id AND o.line_no = v.line_no
    WHERE v.line_no IS NOT NULL AND v.status IN ('accepted', 'relabeled') AND v.label IS NOT NULL
      AND v.image_id IN (SELECT image_id FROM near_duplicates)
),
reach AS (
    SELECT s.*, b.image_id AS target
    FROM sources s JOIN near_duplicates a ON a.image_id = s.image_id
    JOIN near_duplicates b ON b.group_id = a.group_id AND b.image_id != s.image_id
),
sizes AS (
    SELECT image_id, MAX(width) AS width, MAX(height) AS height FROM paths
    WHERE image_id IN (SELECT image_id FROM reach UNION SELECT target FROM reach) GROUP BY image_id
)
SELECT h.item_key, h.label, h.reviewed_at, h.bbox, hs.width, hs.height, t.image_id, t.region_id, NULL, t.bbox, ts.width, ts.height
FROM reach h JOIN regions t ON t.image_id = h.target AND t.caption = h.caption
JOIN sizes hs ON hs.image_id = h.image_id JOIN sizes ts ON ts.image_id = t.image_id
WHERE h.item = 'region' AND NOT EXISTS (SELECT 1 FROM reviews w WHERE w.item_key = {item_key_sql("region", "t")})
UNION ALL
SELECT h.item_key, h.label, h.reviewed_at, h.bbox, hs.width, hs.height, t.image_id, NULL, t.line_no, t.bbox, ts.width, ts.height
FROM reach h JOIN ocr_lines t ON t.image_id = h.target
JOIN sizes hs ON hs.image_id = h.image_id JOIN sizes ts ON ts.image_id = t.image_id
WHERE h.item = 'text' AND NOT EXISTS (SELECT 1 FROM reviews w WHERE w.item_key = {item_key_sql("text", "t")})
"""


def normalised_iou(a: list[float], a_size: tuple[int, int], b: list[float], b_size: tuple[int, int]) -> float:
    """IoU of two boxes ``[x0, y0, x1, y1]``, each divided by its image's (width, height)."""
    (aw, ah), (bw, bh) = a_size, b_size
    ax0, ay0, ax1, ay1 = a[0] / aw, a[1] / ah, a[2] / aw, a[3] / ah
    bx0, by0, bx1, by1 = b[0] / bw, b[1] / bh, b[2] / bw, b[3] / bh
    iw, ih = min(ax1, bx1) - max(ax0, bx0), min(ay1, by1) - max(ay0, by0)
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return inter / union if union > 0 else 0.0


def _near_duplicate_rows(conn: sqlite3.Connection) -> dict[str, tuple]:
    """item_key -> row of rule 0 (a catalog without the near_duplicates table has none)."""
    if not has_near_duplicates(conn):
        return {}
    best: dict[str, tuple] = {}
    for source_key, label, reviewed_at, source_box, sw, sh, image_id, region_id, line_no, box, w, h in conn.execute(_NEAR_DUPLICATE_SQL):
        if not (source_box and box and sw and sh and w and h):
            continue
        iou = normalised_iou(json.loads(source_box), (sw, sh), json.loads(box), (w, h))
        if iou < NEAR_DUPLICATE_IOU:
            continue
        key = item_key(image_id, region_id, line_no)
        # the largest IoU, then the most recent review, then the smaller item key
        rank = (-iou, _negated(reviewed_at or ""), source_key)
        if key not in best or rank < best[key][0]:
            best[key] = (rank, (key, image_id, region_id, line_no, label, source_key, "near_duplicate", round(iou, 6)))
    return {key: best[key][1] for key in sorted(best)}


def _negated(text: str) -> tuple[int, ...]:
    """A key that sorts strings in reverse (the most recent ISO time first)."""
    return tuple(-ord(c) for c in text) + (1,)


# Cluster verdicts with the texts they may reach: for a text cluster every member text, for a
# region cluster only the classes (captions) a person reviewed the same way in it. The evidence
# is found from the reviews (few) outwards, never by scanning a cluster's items per item.
_CLUSTER_SQL = f"""
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
WHERE NOT EXISTS (SELECT 1 FROM reviews v WHERE v.item_key = {item_key_sql("region")})
UNION ALL
SELECT o.image_id, NULL, o.line_no, CASE WHEN h.status = 'relabeled' THEN h.label ELSE o.text END, h.review_key
FROM reach h JOIN cluster_reviews c ON c.review_key = h.review_key AND c.item = 'text'
JOIN ocr_lines o ON o.text = h.text
WHERE NOT EXISTS (SELECT 1 FROM reviews v WHERE v.item_key = {item_key_sql("text")})
"""


def _cluster_rows(conn: sqlite3.Connection) -> dict[str, tuple]:
    """item_key -> row of rule 1 (and 2 for regions). An item in two reviewed clusters cannot
    happen (a text is in one cluster); the smaller review key wins all the same."""
    out: dict[str, tuple] = {}
    order = lambda r: (r[4], r[0], -1 if r[1] is None else r[1], -1 if r[2] is None else r[2])  # noqa: E731
    for image_id, region_id, line_no, label, review_key in sorted(conn.execute(_CLUSTER_SQL), key=order):
        if label is None:
            continue
        key = item_key(image_id, region_id, line_no)
        out.setdefault(key, (key, image_id, region_id, line_no, label, review_key, "cluster", None))
    return out


def _decode(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4")


def _source_reviews(conn: sqlite3.Connection) -> dict[str, tuple[str, str]]:
    """The reviewed OCR lines a label can come from, one per distinct text (the most recent
    review, then the smaller item key): text -> (item_key, label)."""
    rows = conn.execute(
        """
        SELECT v.item_key, o.text, v.label FROM reviews v
        JOIN ocr_lines o ON o.image_id = v.image_id AND o.line_no = v.line_no
        WHERE v.line_no IS NOT NULL AND v.status IN ('accepted', 'relabeled') AND v.label IS NOT NULL
        GROUP BY v.item_key
        ORDER BY o.text, v.reviewed_at DESC, v.item_key
        """
    ).fetchall()
    out: dict[str, tuple[str, str]] = {}
    for key, text, label in rows:
        out.setdefault(text, (key, label))
    return out


# One vector per OCR text: the first shard's (the same text has the same vector in a cache
# embedded with one model); MIN() makes SQLite take the other columns from that row.
_VECTORS = "SELECT text, MIN(shard), vector FROM embeddings WHERE kind = 'ocr'"


def _vectors(conn: sqlite3.Connection, texts: list[str] | None = None):
    """(texts, unit vectors as rows) of some OCR texts (None: all), :data:`BLOCK` at a time."""
    if texts is None:
        cursor = conn.execute(f"{_VECTORS} GROUP BY text ORDER BY text")
    else:
        cursor = conn.execute(f"{_VECTORS} AND text IN (SELECT value FROM json_each(?)) GROUP BY text ORDER BY text", (json.dumps(texts),))
    while batch := cursor.fetchmany(BLOCK):
        encoded = [vector for _, _, vector in batch]
        if len({len(e) for e in encoded}) == 1 and not encoded[0].endswith("="):  # one decode for the block
            matrix = np.frombuffer(base64.b64decode("".join(encoded)), dtype="<f4").reshape(len(batch), -1).astype(np.float32)
        else:
            vectors = [_decode(e) for e in encoded]
            dims = {v.shape[0] for v in vectors}
            if len(dims) > 1:  # embeddings of several models: compare the commonest dimension only
                dim = max(sorted(dims), key=lambda d: sum(v.shape[0] == d for v in vectors))
                batch, vectors = zip(*[(b, v) for b, v in zip(batch, vectors) if v.shape[0] == dim])
            matrix = np.stack(vectors).astype(np.float32)
        matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
        yield [text for text, _, _ in batch], matrix


# Every OCR text's unit vector in float16, kept in this process between refreshes of one catalog
# while its embeddings are unchanged (the dashboard records review after review): a newly
# reviewed text is then compared with every text in memory, and only the texts within
# SKETCH_MARGIN of the threshold are read again and compared exactly (float16 moves a cosine of
# unit vectors by less than 0.001). Catalogs with more than SKETCH_LIMIT values are streamed.
_SKETCHES: dict[str, tuple[tuple, list[str], np.ndarray]] = {}
SKETCH_LIMIT = 100_000_000  # float16 values (200 MB), e.g. 260,000 texts of 384 dimensions
SKETCH_MARGIN = 0.01


def _embeddings_signature(conn: sqlite3.Connection) -> tuple:
    """Changes whenever the catalog's embeddings do: the embed files loaded, the rows."""
    files = conn.execute(
        "SELECT group_concat(shard || ':' || sha256, ',') FROM (SELECT shard, sha256 FROM shard_files WHERE stage = 'embed' ORDER BY shard)"
    ).fetchone()[0]
    return (files, *conn.execute("SELECT COUNT(*), MAX(rowid) FROM embeddings").fetchone())


def _sketch(conn: sqlite3.Connection) -> tuple[list[str], np.ndarray] | None:
    """(every OCR text, their unit vectors in float16) from this process's memo, read once per
    state of the embeddings; None when the catalog is too large or has no file."""
    path = next((file for _, name, file in conn.execute("PRAGMA database_list") if name == "main"), "")
    if not path:
        return None
    signature = _embeddings_signature(conn)
    known = _SKETCHES.get(path)
    if known is not None and known[0] == signature:
        return known[1], known[2]
    row = conn.execute("SELECT COUNT(DISTINCT text), MAX(dim) FROM embeddings WHERE kind = 'ocr'").fetchone()
    if not row[0] or row[0] * row[1] > SKETCH_LIMIT:
        return None
    texts, parts = [], []
    for names, matrix in _vectors(conn):
        texts += names
        parts.append(matrix.astype(np.float16))
    if len({m.shape[1] for m in parts}) != 1:  # several models' dimensions: stream instead
        return None
    _SKETCHES.clear()  # one catalog at a time
    _SKETCHES[path] = (signature, texts, np.concatenate(parts))
    return texts, _SKETCHES[path][2]


def _near(conn: sqlite3.Connection, source_matrix: np.ndarray, threshold: float) -> list[str] | None:
    """The OCR texts whose float16 cosine with a source is within SKETCH_MARGIN of the
    threshold (candidates to compare exactly); None without a sketch."""
    sketch = _sketch(conn)
    if sketch is None or sketch[1].shape[1] != source_matrix.shape[1]:
        return None
    texts, matrix = sketch
    found = []
    for start in range(0, len(texts), 8 * BLOCK):
        sims = matrix[start : start + 8 * BLOCK].astype(np.float32) @ source_matrix.T
        found += [texts[start + i] for i in np.nonzero((sims >= threshold - SKETCH_MARGIN).any(axis=1))[0]]
    return found


def _matches(conn: sqlite3.Connection, texts: list[str] | None, sources: list[str], threshold: float) -> list[tuple]:
    """(text, source_text, cosine) of every pair of ``texts`` (None: all OCR texts) and
    ``sources`` whose cosine is at least ``threshold``, in blocks (all texts: the candidates
    :func:`_near` finds in memory, when it can)."""
    source_texts, source_matrix = [], []
    for names, matrix in _vectors(conn, sources):
        source_texts += names
        source_matrix.append(matrix)
    if not source_texts:
        return []
    source_matrix = np.concatenate(source_matrix)
    if texts is None:
        texts = _near(conn, source_matrix, threshold)
        if texts == []:
            return []
    out = []
    for names, block in _vectors(conn, texts):
        if block.shape[1] != source_matrix.shape[1]:
            continue
        sims = block @ source_matrix.T
        for i, j in zip(*np.nonzero(sims >= threshold)):
            out.append((names[i], source_texts[j], round(float(sims[i, j]), 6)))
    return out


def _update_similar_texts(conn: sqlite3.Connection, threshold: float, changed_shards: list[str] | None) -> None:
    """Bring ``similar_texts`` up to date: every pair (embedded OCR text, source text) with a
    cosine >= ``threshold``, for the current source texts (reviewed lines) only.

    Incremental, so that recording one review does not compare every text with every reviewed
    one again: a new source text is compared with every text (one pass over the embeddings); the
    texts of ``changed_shards`` (shards whose embeddings were loaded since the last refresh:
    new texts, or new vectors) with the older source texts; pairs of texts or sources that are
    gone are dropped. Another threshold starts over. The table is then what a full computation
    gives (cosines rounded to 6 decimals), so a catalog updated in place equals a rebuilt one."""
    recorded = conn.execute("SELECT value FROM propagation_settings WHERE name = 'similar_texts_threshold'").fetchone()
    if recorded is None or recorded[0] != threshold:
        conn.execute("DELETE FROM similar_texts")
        conn.execute("DELETE FROM similarity_sources")
        conn.execute("INSERT OR REPLACE INTO propagation_settings (name, value) VALUES ('similar_texts_threshold', ?)", (threshold,))
    new_texts: list[str] = []
    if changed_shards:
        new_texts = [
            t for (t,) in conn.execute(
                "SELECT DISTINCT text FROM embeddings WHERE kind = 'ocr' AND shard IN (SELECT value FROM json_each(?)) ORDER BY text",
                (json.dumps(sorted(changed_shards)),),
            )
        ]  # fmt: skip
        touched = json.dumps(new_texts)
        conn.execute("DELETE FROM similar_texts WHERE text IN (SELECT value FROM json_each(?))", (touched,))
        conn.execute("DELETE FROM similar_texts WHERE source_text IN (SELECT value FROM json_each(?))", (touched,))
        conn.execute("DELETE FROM similarity_sources WHERE source_text IN (SELECT value FROM json_each(?))", (touched,))
    embedded = "SELECT 1 FROM embeddings e WHERE e.kind = 'ocr' AND e.text = {}"
    wanted = sorted(t for t in _source_reviews(conn) if conn.execute(embedded.format("?"), (t,)).fetchone())
    known = {t for (t,) in conn.execute("SELECT source_text FROM similarity_sources")}
    gone = sorted(known - set(wanted))
    conn.execute("DELETE FROM similarity_sources WHERE source_text IN (SELECT value FROM json_each(?))", (json.dumps(gone),))
    conn.execute("DELETE FROM similar_texts WHERE source_text IN (SELECT value FROM json_each(?))", (json.dumps(gone),))
    conn.execute(f"DELETE FROM similar_texts WHERE NOT EXISTS ({embedded.format('similar_texts.text')})")
    new_sources = [t for t in wanted if t not in known]
    older = [t for t in wanted if t in known]
    pairs = _matches(conn, None, new_sources, threshold) if new_sources else []
    if new_texts and older:
        pairs += _matches(conn, new_texts, older, threshold)
    conn.executemany("INSERT OR REPLACE INTO similar_texts (text, source_text, similarity) VALUES (?, ?, ?)", pairs)
    conn.executemany("INSERT INTO similarity_sources (source_text) VALUES (?)", [(t,) for t in new_sources])


def _similarity_rows(conn: sqlite3.Connection, threshold: float, changed_shards: list[str] | None = None) -> list[tuple]:
    """Rows of rule 3 for every unreviewed OCR line whose text is similar enough to a source:
    the most similar source text (then the smaller one), whose latest review gives the label."""
    _update_similar_texts(conn, threshold, changed_shards)
    sources = _source_reviews(conn)
    best: dict[str, tuple[str, float]] = {}
    for text, source_text, similarity in conn.execute("SELECT text, source_text, similarity FROM similar_texts ORDER BY text, similarity DESC, source_text"):
        if text not in best and source_text in sources:
            best[text] = (source_text, similarity)
    if not best:
        return []
    out = []
    lines = conn.execute(
        f"""
        SELECT o.image_id, o.line_no, o.text FROM ocr_lines o
        WHERE o.text IN (SELECT value FROM json_each(?))
          AND NOT EXISTS (SELECT 1 FROM reviews v WHERE v.item_key = {item_key_sql("text")})
        ORDER BY o.image_id, o.line_no
        """,
        (json.dumps(sorted(best)),),
    )
    for image_id, line_no, text in lines:
        source_text, similarity = best[text]
        source_key, label = sources[source_text]
        out.append((item_key(image_id, None, line_no), image_id, None, line_no, label, source_key, "similarity", similarity))
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
