"""Every SQL statement the review dashboard runs against the catalog.

All of them are parameterised and paged (``LIMIT``/``OFFSET``, or bounded by one image or one
cluster): the app never loads the whole catalog, so a page renders in the same time on 100
regions or 100,000 (``bench/dashboard_scale.py``). The catalog is opened read-only; writes
(reviews) only ever go through :func:`shardlens.reviews.record_reviews`.

Machine labels, confidences, item keys, review states and final labels come from the same SQL as
the catalog's views ``item_annotations`` / ``final_annotations`` (:mod:`shardlens.catalog_rules`;
the tests compare the rows), so the dashboard shows what the exports write.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..catalog_rules import (
    CLUSTER_ID,
    CONFIDENCE,
    IMAGE_COLUMNS,
    IS_CLUSTER,
    ITEM_GROUPS,
    ITEM_TABLES,
    LABEL_SOURCE,
    final_label_sql,
    final_select,
    first_path_sql,
    is_first_path_sql,
    item_select,
    member_items,
    member_join,
)  # fmt: skip
from ..near_duplicates import group_of, has_near_duplicates
from ..sqlite_connect import connect_reader
from ..vectors import decode_vector

# Orderings of the item list (the review queue). Every one ends in the item's key so pages
# never overlap or skip an item.
_ITEM_KEY = "image_id, item, region_id, line_no"
# "{a}" is the alias of the rows being ordered.
ITEM_ORDERS = {
    # riskiest first (shardlens.risk: the calibrated probability that the item's label is wrong;
    # an item without signals last): the order bench/review_effort.py measures as the cheapest
    "risk": f"(SELECT s.risk FROM item_signals s WHERE s.item_key = {{a}}.item_key) DESC NULLS LAST, {_ITEM_KEY}",
    "confidence": f"confidence ASC, {_ITEM_KEY}",  # least sure first
    "-confidence": f"confidence DESC, {_ITEM_KEY}",
    "image": _ITEM_KEY,
}


def open_catalog(db: str | Path) -> sqlite3.Connection:
    """Open the catalog read-only (it is rebuilt by the workflow and written by record_reviews)."""
    path = Path(db).resolve()
    if not path.exists():
        raise FileNotFoundError(f"catalog {path} does not exist: run `snakemake` first")
    conn = connect_reader(path, timeout=30, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA query_only=ON")
    return conn


def _bbox(text: str | None) -> list[float] | None:
    return json.loads(text) if text else None


# --------------------------------------------------------------------------------- summary


def summary(conn: sqlite3.Connection) -> dict[str, int]:
    """Counts shown in the sidebar: images, regions, OCR lines, clusters (:data:`IS_CLUSTER`),
    reviews, propagated labels."""
    row = conn.execute(
        f"""
        SELECT (SELECT COUNT(DISTINCT image_id) FROM paths WHERE image_id IS NOT NULL) AS images,
               (SELECT COUNT(*) FROM regions) AS regions,
               (SELECT COUNT(*) FROM ocr_lines) AS lines,
               (SELECT COUNT(*) FROM clusters WHERE {IS_CLUSTER}) AS clusters,
               (SELECT COUNT(*) FROM reviews) AS reviews,
               (SELECT COUNT(*) FROM propagated_labels) AS propagated
        """
    ).fetchone()
    return dict(row)


# -------------------------------------------------------------------------------- clusters


@dataclass(frozen=True)
class ClusterRow:
    cluster_id: int
    label: str
    keywords: list[str]
    size: int  # clusters.size: occurrences of its texts (captions, OCR lines, label candidates)
    items: int  # regions + OCR lines whose text is in the cluster: what a rename relabels
    texts: int  # distinct texts (cluster_members)
    reviewed: int  # items with a review


def count_clusters(conn: sqlite3.Connection) -> int:
    """HDBSCAN's clusters (:data:`IS_CLUSTER`): the number the sidebar and the heading show."""
    return conn.execute(f"SELECT COUNT(*) FROM clusters WHERE {IS_CLUSTER}").fetchone()[0]


def count_cluster_rows(conn: sqlite3.Connection) -> int:
    """Cards of the cluster list: the clusters and, when there is one, the 'unclustered' bucket."""
    return conn.execute("SELECT COUNT(*) FROM clusters").fetchone()[0]


def cluster_page(conn: sqlite3.Connection, offset: int = 0, limit: int = 10) -> list[ClusterRow]:
    """Clusters by size (largest first; the 'unclustered' bucket last), one page."""
    rows = conn.execute(
        """
        SELECT p.cluster_id, p.label, p.keywords, p.size,
               (SELECT COUNT(*) FROM cluster_members m WHERE m.cluster_id = p.cluster_id) AS texts
        FROM (SELECT cluster_id, label, keywords, size FROM clusters
              ORDER BY cluster_id < 0, size DESC, cluster_id LIMIT ? OFFSET ?) p
        ORDER BY p.cluster_id < 0, p.size DESC, p.cluster_id
        """,
        (int(limit), int(offset)),
    ).fetchall()
    ids = [r["cluster_id"] for r in rows]
    items = items_per_cluster(conn, ids)
    reviewed = reviewed_per_cluster(conn, ids)
    return [
        ClusterRow(
            r["cluster_id"],
            r["label"],
            json.loads(r["keywords"] or "[]"),
            r["size"],
            items.get(r["cluster_id"], 0),
            r["texts"],
            reviewed.get(r["cluster_id"], 0),
        )  # fmt: skip
        for r in rows
    ]


def items_per_cluster(conn: sqlite3.Connection, cluster_ids: list[int]) -> dict[int, int]:
    """Regions + OCR lines per cluster (item_annotations' cluster_id), for some clusters: through
    the member texts (an index lookup per text: the catalog indexes texts); the unclustered bucket,
    which also holds texts that were never clustered, needs one pass over the items."""
    out: dict[int, int] = {}
    wanted = [c for c in cluster_ids if c >= 0]
    if wanted:
        for cid, n in conn.execute(
            f"""
            SELECT cid, SUM(n) FROM (
                SELECT m.cluster_id AS cid, COUNT(*) AS n FROM {member_items("region")}
                WHERE m.cluster_id IN (SELECT value FROM json_each(?)) GROUP BY m.cluster_id
                UNION ALL
                SELECT m.cluster_id, COUNT(*) FROM {member_items("text")}
                WHERE m.cluster_id IN (SELECT value FROM json_each(?)) GROUP BY m.cluster_id
            ) GROUP BY cid
            """,
            (json.dumps(wanted), json.dumps(wanted)),
        ):
            out[cid] = n
    for cid in {c for c in cluster_ids if c < 0}:
        counts = [f"(SELECT COUNT(*) FROM {t.table} {t.alias} {member_join(item)} WHERE {CLUSTER_ID} = ?)" for item, t in ITEM_TABLES.items()]
        out[cid] = conn.execute(f"SELECT {' + '.join(counts)}", (cid,) * len(counts)).fetchone()[0]
    return out


def reviewed_per_cluster(conn: sqlite3.Connection, cluster_ids: list[int]) -> dict[int, int]:
    """Reviewed items per cluster; walks the reviews (few), not the items (many)."""
    if not cluster_ids:
        return {}
    rows = conn.execute(
        f"""
        SELECT cid, COUNT(*) FROM (
            SELECT {CLUSTER_ID} AS cid
            FROM reviews v JOIN regions r ON r.image_id = v.image_id AND r.region_id = v.region_id
            {member_join("region")}
            WHERE v.region_id IS NOT NULL
            UNION ALL
            SELECT {CLUSTER_ID}
            FROM reviews v JOIN ocr_lines o ON o.image_id = v.image_id AND o.line_no = v.line_no
            {member_join("text")}
            WHERE v.line_no IS NOT NULL
        ) WHERE cid IN (SELECT value FROM json_each(?)) GROUP BY cid
        """,
        (json.dumps(cluster_ids),),
    ).fetchall()
    return {cid: n for cid, n in rows}


def cluster_options(conn: sqlite3.Connection, limit: int = 1000) -> list[tuple[int, str, int]]:
    """(cluster_id, label, size) of the largest clusters, for the filter's drop-down."""
    return [
        tuple(r) for r in conn.execute("SELECT cluster_id, label, size FROM clusters ORDER BY cluster_id < 0, size DESC, cluster_id LIMIT ?", (int(limit),))
    ]


def cluster_info(conn: sqlite3.Connection, cluster_id: int) -> dict | None:
    row = conn.execute("SELECT cluster_id, label, keywords, size FROM clusters WHERE cluster_id = ?", (int(cluster_id),)).fetchone()
    return None if row is None else {**dict(row), "keywords": json.loads(row["keywords"] or "[]")}


def cluster_reviews(conn: sqlite3.Connection, cluster_ids: list[int]) -> dict[int, dict]:
    """The cluster reviews (a person's accept or relabel of the whole cluster) of some clusters."""
    rows = conn.execute(
        "SELECT cluster_id, review_key, status, label, reviewer, reviewed_at FROM cluster_reviews WHERE cluster_id IN (SELECT value FROM json_each(?))",
        (json.dumps([int(c) for c in cluster_ids]),),
    )
    return {r["cluster_id"]: dict(r) for r in rows}


def cluster_texts(conn: sqlite3.Connection, cluster_id: int, limit: int = 20) -> list[dict]:
    """The cluster's most frequent texts."""
    return [
        dict(r)
        for r in conn.execute(
            "SELECT text, kinds, count, probability FROM cluster_members WHERE cluster_id = ? ORDER BY count DESC, text LIMIT ?",
            (int(cluster_id), int(limit)),
        )
    ]


def cluster_samples(conn: sqlite3.Connection, cluster_ids: list[int], per_cluster: int = 6, look_at: int = 60) -> dict[int, list[dict]]:
    """Up to ``per_cluster`` distinct images per cluster, with the box and text of the item that
    put the image there: the thumbnail grid of one cluster page.

    Per cluster, the first ``look_at`` items found through its member texts are read (an index
    lookup per text: the catalog indexes regions' captions and OCR lines' texts) and the
    best-scoring item of each image is kept; the whole cluster is never read."""
    out: dict[int, list[dict]] = {}
    for cid in cluster_ids:
        if cid < 0:  # the unclustered bucket: texts HDBSCAN left alone
            member = "m.cluster_id < 0"
            params: tuple = ()
        else:
            member = "m.cluster_id = ?"
            params = (int(cid),)
        rows = conn.execute(
            f"""
            SELECT image_id, bbox, text, score FROM (
                SELECT r.image_id, r.bbox, r.caption AS text, r.score AS score FROM {member_items("region")} WHERE {member}
                UNION ALL
                SELECT o.image_id, o.bbox, o.text, o.confidence FROM {member_items("text")} WHERE {member}
            ) LIMIT ?
            """,
            (*params, *params, int(look_at)),
        ).fetchall()
        best: dict[str, sqlite3.Row] = {}
        for r in rows:
            if r["image_id"] not in best or (r["score"] or 0) > (best[r["image_id"]]["score"] or 0):
                best[r["image_id"]] = r
        picked = sorted(best.values(), key=lambda r: (-(r["score"] or 0), r["image_id"]))[:per_cluster]
        out[cid] = [{"image_id": r["image_id"], "bbox": _bbox(r["bbox"]), "text": r["text"], "score": r["score"]} for r in picked]
    images = image_paths(conn, sorted({s["image_id"] for samples in out.values() for s in samples}))
    for samples in out.values():
        for sample in samples:
            sample.update({k: v for k, v in images.get(sample["image_id"], {}).items() if k != "image_id"})
    return out


# ----------------------------------------------------------------------------------- items


@dataclass(frozen=True)
class ItemFilter:
    """What the review queue shows. ``None`` means 'any'."""

    cluster_id: int | None = None
    label: str | None = None  # machine or final label, case-insensitive, exact
    has_text: bool | None = None  # the item's image has OCR lines (or has none)
    unreviewed_only: bool = False
    min_confidence: float = 0.0
    max_confidence: float = 1.0
    text_search: str | None = None  # substring (case-insensitive) of an OCR line of the item's image
    item: str | None = None  # 'region' or 'text'
    image_id: str | None = None
    label_source: str | None = None  # final_annotations' label_source: 'machine', 'propagated' or 'review'
    near_duplicates_only: bool = False  # the item's image is in a near-duplicate group


LABEL_SOURCES = ("machine", "propagated", "review")


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# The catalog's item_annotations / final_annotations views, built here from the same SQL
# (shardlens/catalog_rules.py) with each filter inside each item group's arm of the UNION ALL, where
# it can use an index (SQLite does not push these terms into the view). tests/test_dashboard.py
# checks that the rows are exactly the views' rows.


def _arm(item: str, f: ItemFilter) -> tuple[str, list]:
    t = ITEM_TABLES[item]
    x, text = t.alias, f"{t.alias}.{t.text}"
    clauses, params = [], []
    if f.cluster_id is not None:
        if f.cluster_id >= 0:  # members' texts: an index lookup per text
            clauses.append(f"{text} IN (SELECT cm.text FROM cluster_members cm WHERE cm.item = '{item}' AND cm.cluster_id = ?)")
        else:
            clauses.append(f"{CLUSTER_ID} = ?")
        params.append(int(f.cluster_id))
    if f.image_id:
        clauses.append(f"{x}.image_id = ?")
        params.append(f.image_id)
    if f.has_text is not None:
        clauses.append(("" if f.has_text else "NOT ") + f"EXISTS (SELECT 1 FROM ocr_lines t WHERE t.image_id = {x}.image_id)")
    if f.min_confidence > 0.0:
        clauses.append(f"{CONFIDENCE} >= ?")
        params.append(float(f.min_confidence))
    if f.max_confidence < 1.0:
        clauses.append(f"{CONFIDENCE} <= ?")
        params.append(float(f.max_confidence))
    if f.text_search and f.text_search.strip():
        clauses.append(f"{x}.image_id IN (SELECT s.image_id FROM ocr_lines s WHERE s.text LIKE ? ESCAPE '\\')")
        params.append(_like(f.text_search.strip()))
    if f.label and f.label.strip():
        # a superset of 'machine or final label is LABEL', cheap to test; the exact test is outside
        clauses.append(
            f"(lower({text}) = lower(?) OR {x}.image_id IN (SELECT lv.image_id FROM reviews lv WHERE lower(lv.label) = lower(?))"
            f" OR {x}.image_id IN (SELECT lp.image_id FROM propagated_labels lp WHERE lower(lp.label) = lower(?)))"
        )
        params += [f.label.strip()] * 3
    if f.near_duplicates_only:
        clauses.append(f"{x}.image_id IN (SELECT nd.image_id FROM near_duplicates nd)")
    if f.label_source in ("propagated", "review"):  # a superset again: images with such an item
        holding = "propagated_labels" if f.label_source == "propagated" else "reviews"
        clauses.append(f"{x}.image_id IN (SELECT ls.image_id FROM {holding} ls)")
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    return item_select(item, where), params


def _needs_reviews(f: ItemFilter) -> bool:
    """Whether the filter looks at review state or propagated labels (so they must be joined
    before paging)."""
    return f.unreviewed_only or bool(f.label and f.label.strip()) or f.label_source is not None


def _arms_sql(f: ItemFilter) -> tuple[str, list]:
    """The items matching ``f`` with item_annotations' columns: the UNION ALL of the arms."""
    arms, params = [], []
    for item in ITEM_GROUPS:
        if f.item in (None, item):
            sql, p = _arm(item, f)
            arms.append(sql)
            params += p
    return " UNION ALL ".join(arms), params


def _items_sql(f: ItemFilter) -> tuple[str, list]:
    """SELECT of the items matching ``f`` with final_annotations' columns (no order, no limit)."""
    arms, params = _arms_sql(f)
    outer = []
    if f.unreviewed_only:
        outer.append("v.status IS NULL")
    if f.label and f.label.strip():
        outer.append(f"(lower(i.machine_label) = lower(?) OR lower({final_label_sql('i')}) = lower(?))")
        params += [f.label.strip()] * 2
    if f.label_source is not None:
        outer.append(f"{LABEL_SOURCE} = ?")
        params.append(f.label_source)
    where = (" WHERE " + " AND ".join(outer)) if outer else ""
    return final_select(f"({arms})", "i") + where, params


def item_page(conn: sqlite3.Connection, f: ItemFilter, offset: int = 0, limit: int = 20, order: str = "risk") -> list[dict]:
    """One page of items (regions and OCR lines) matching the filter, with their image's path, in
    ``order`` (:data:`ITEM_ORDERS`; by default riskiest first, as the review queue opens).

    When the filter does not look at reviews, the items are ordered and cut to the page first and
    only the page's items are looked up in the reviews."""
    order_sql = ITEM_ORDERS[order]
    if _needs_reviews(f):
        sql, params = _items_sql(f)
        page_sql = f"SELECT * FROM ({sql}) o ORDER BY {order_sql.format(a='o')} LIMIT ? OFFSET ?"
    else:
        arms, params = _arms_sql(f)
        page_sql = final_select(f"(SELECT * FROM ({arms}) o ORDER BY {order_sql.format(a='o')} LIMIT ? OFFSET ?)", "i")
    rows = conn.execute(
        f"""
        SELECT p.*, {first_path_sql("p.image_id")} AS path
        FROM ({page_sql}) p ORDER BY {order_sql.format(a="p")}
        """,
        (*params, int(limit), int(offset)),
    ).fetchall()
    return [{**dict(r), "bbox": _bbox(r["bbox"])} for r in rows]


def count_items(conn: sqlite3.Connection, f: ItemFilter) -> int:
    """How many items match (each arm counted on its own when reviews do not matter, so SQLite
    can drop the joins nothing filters on)."""
    if _needs_reviews(f):
        sql, params = _items_sql(f)
        return conn.execute(f"SELECT COUNT(*) FROM ({sql})", params).fetchone()[0]
    total = 0
    for item in ITEM_GROUPS:
        if f.item in (None, item):
            sql, params = _arm(item, f)
            total += conn.execute(f"SELECT COUNT(*) FROM ({sql})", params).fetchone()[0]
    return total


def cluster_item_keys(conn: sqlite3.Connection, cluster_id: int) -> list[dict]:
    """Every item of one cluster (for the cluster-wide accept/rename), with its review state."""
    sql, params = _items_sql(ItemFilter(cluster_id=cluster_id))
    rows = conn.execute(f"SELECT image_id, region_id, line_no, machine_label, review_status FROM ({sql}) ORDER BY {_ITEM_KEY}", params)
    return [dict(r) for r in rows]


def propagated_items(conn: sqlite3.Connection, f: ItemFilter) -> list[dict]:
    """Every item matching ``f`` whose label is propagated (the bulk actions' items), with its
    machine and propagated (final) label, once per item key."""
    sql, params = _items_sql(replace(f, label_source="propagated"))
    rows = conn.execute(f"SELECT image_id, item, region_id, line_no, machine_label, final_label, propagated_from FROM ({sql}) ORDER BY {_ITEM_KEY}", params)
    unique = {(r["image_id"], r["item"], r["region_id"], r["line_no"]): dict(r) for r in rows}
    return list(unique.values())


# ---------------------------------------------------------------------------------- images


def image_paths(conn: sqlite3.Connection, image_ids: list[str]) -> dict[str, dict]:
    """path (the first of its copies), width, height, status of some images."""
    if not image_ids:
        return {}
    rows = conn.execute(
        f"""
        SELECT image_id, path, width, height, status FROM (
            SELECT image_id, {IMAGE_COLUMNS} FROM paths WHERE image_id IN (SELECT value FROM json_each(?)) GROUP BY image_id
        )
        """,
        (json.dumps(image_ids),),
    ).fetchall()
    return {r["image_id"]: dict(r) for r in rows}


def image_info(conn: sqlite3.Connection, image_id: str) -> dict | None:
    """One image: its paths, size, status and error, and its text-gate decision."""
    row = conn.execute(
        f"""
        SELECT i.image_id, i.path, i.n_paths, i.width, i.height, i.format, i.bytes, i.status, i.error,
               g.has_text, g.score AS gate_score, g.decision AS gate_decision, g.skip_reason, g.text_regions
        FROM (SELECT image_id, {IMAGE_COLUMNS} FROM paths WHERE image_id = ? GROUP BY image_id) i
        LEFT JOIN gate g ON g.image_id = i.image_id
        """,
        (image_id,),
    ).fetchone()
    if row is None:
        return None
    out = dict(row)
    out["paths"] = [p for (p,) in conn.execute("SELECT path FROM paths WHERE image_id = ? ORDER BY path LIMIT 20", (image_id,))]
    return out


def image_regions(conn: sqlite3.Connection, image_id: str) -> list[dict]:
    """The image's detection regions with label candidates, machine label and review state."""
    sql, params = _items_sql(ItemFilter(image_id=image_id, item="region"))
    rows = conn.execute(
        f"""
        SELECT f.*, r.labels, r.detector_label
        FROM ({sql}) f JOIN regions r ON r.image_id = f.image_id AND r.region_id = f.region_id
        ORDER BY f.region_id
        """,
        params,
    ).fetchall()
    return [{**dict(r), "bbox": _bbox(r["bbox"]), "labels": json.loads(r["labels"] or "[]")} for r in rows]


def image_lines(conn: sqlite3.Connection, image_id: str) -> list[dict]:
    """The image's OCR lines with language, the region holding them and their review state."""
    sql, params = _items_sql(ItemFilter(image_id=image_id, item="text"))
    rows = conn.execute(
        f"""
        SELECT f.*, o.language, o.region_id AS in_region
        FROM ({sql}) f JOIN ocr_lines o ON o.image_id = f.image_id AND o.line_no = f.line_no
        ORDER BY f.line_no
        """,
        params,
    ).fetchall()
    return [{**dict(r), "bbox": _bbox(r["bbox"])} for r in rows]


def first_image(conn: sqlite3.Connection) -> str | None:
    row = conn.execute(f"SELECT p.image_id FROM paths p WHERE {is_first_path_sql('p')} ORDER BY p.path LIMIT 1").fetchone()
    return row[0] if row else None


def neighbour_image(conn: sqlite3.Connection, image_id: str, step: int = 1) -> str | None:
    """The next (step > 0) or previous image in path order, or None at either end."""
    row = conn.execute(f"SELECT {first_path_sql('?')}", (image_id,)).fetchone()
    if row is None or row[0] is None:
        return first_image(conn)
    op, direction = (">", "ASC") if step > 0 else ("<", "DESC")
    found = conn.execute(
        f"SELECT p.image_id FROM paths p WHERE p.path {op} ? AND {is_first_path_sql('p')} ORDER BY p.path {direction} LIMIT 1", (row[0],)
    ).fetchone()
    return found[0] if found else None


def find_image(conn: sqlite3.Connection, query: str) -> str | None:
    """An image by id (or id prefix), exact path, or the first path containing ``query``."""
    query = query.strip()
    if not query:
        return None
    row = conn.execute("SELECT image_id FROM paths WHERE path = ? AND image_id IS NOT NULL", (query,)).fetchone()
    if row is None and len(query) >= 6 and all(c in "0123456789abcdef" for c in query.lower()):
        row = conn.execute(
            "SELECT image_id FROM paths WHERE image_id >= ? AND image_id < ? ORDER BY image_id LIMIT 1",
            (query.lower(), query.lower() + "g"),
        ).fetchone()
    if row is None:
        row = conn.execute(
            "SELECT image_id FROM paths WHERE path LIKE ? ESCAPE '\\' AND image_id IS NOT NULL ORDER BY path LIMIT 1", (_like(query),)
        ).fetchone()
    return row[0] if row else None


# ------------------------------------------------------------------------------------- map


def embedding_sample(conn: sqlite3.Connection, limit: int = 3000, cluster_id: int | None = None) -> list[dict]:
    """At most ``limit`` distinct embedded texts, a deterministic spread sample (a multiplicative
    hash of the rowid), with their cluster and decoded vector."""
    where, params = "", []
    if cluster_id is not None:
        where, params = "WHERE COALESCE(m.cluster_id, -1) = ?", [int(cluster_id)]
    rows = conn.execute(
        f"""
        SELECT e.kind, e.text, e.vector, COALESCE(m.cluster_id, -1) AS cluster_id,
               COALESCE(c.label, 'unclustered') AS label, COALESCE(m.count, 0) AS count
        FROM embeddings e
        LEFT JOIN cluster_members m ON m.item = (CASE e.kind WHEN 'ocr' THEN 'text' ELSE 'region' END) AND m.text = e.text
        LEFT JOIN clusters c ON c.cluster_id = m.cluster_id AND m.cluster_id >= 0
        WHERE e.rowid IN (
            SELECT e2.rowid FROM embeddings e2 LEFT JOIN cluster_members m ON m.item = (CASE e2.kind WHEN 'ocr' THEN 'text' ELSE 'region' END) AND m.text = e2.text {where.replace("e.", "e2.")}
            ORDER BY (e2.rowid * 2654435761) % 4294967311 LIMIT ?)
        """,
        (*params, int(limit) * 2),
    ).fetchall()
    seen: set[str] = set()
    out = []
    for r in rows:
        if r["text"] in seen:  # the same text embedded in several shards
            continue
        seen.add(r["text"])
        out.append(
            {
                "kind": r["kind"],
                "text": r["text"],
                "cluster_id": r["cluster_id"],
                "label": r["label"],
                "count": r["count"],
                "vector": decode_vector(r["vector"]),
            }
        )
        if len(out) >= limit:
            break
    return out


def project_2d(vectors: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """2-D coordinates of row vectors: PCA (numpy SVD) or UMAP when ``umap-learn`` is installed."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        return np.zeros((0, 2))
    if method == "umap" and x.shape[0] > 15:
        import umap  # optional; the app only offers it when importable

        return np.asarray(umap.UMAP(n_components=2, random_state=seed).fit_transform(x))
    x = x - x.mean(axis=0)
    if x.shape[0] == 1:
        return np.zeros((1, 2))
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    coords = x @ vt[:2].T
    if coords.shape[1] < 2:
        coords = np.hstack([coords, np.zeros((coords.shape[0], 2 - coords.shape[1]))])
    # a stable orientation: the largest-magnitude coordinate of each axis is positive
    signs = np.sign(coords[np.abs(coords).argmax(axis=0), range(2)])
    return coords * np.where(signs == 0, 1, signs)


# ------------------------------------------------------------------- triage: risk and audits

CLUSTER_ORDERS = ("risk", "size")


def triage_cluster_page(conn: sqlite3.Connection, offset: int = 0, limit: int = 10, order: str = "risk") -> list[ClusterRow]:
    """One page of clusters, riskiest first (``order='risk'``: the catalog's ``cluster_risk``,
    see :mod:`shardlens.risk`; clusters without a risk, then by size) or largest first
    (``'size'``: :func:`cluster_page`). The 'unclustered' bucket comes last either way. A catalog
    written before risk scores is shown by size."""
    if order not in CLUSTER_ORDERS:
        raise ValueError(f"order must be one of {CLUSTER_ORDERS}, not {order!r}")
    if order == "size" or not _has_table(conn, "cluster_risk"):
        return cluster_page(conn, offset, limit)
    ids = [
        r[0]
        for r in conn.execute(
            """SELECT c.cluster_id FROM clusters c LEFT JOIN cluster_risk k ON k.cluster_id = c.cluster_id
               ORDER BY c.cluster_id < 0, k.risk IS NULL, k.risk DESC, c.size DESC, c.cluster_id LIMIT ? OFFSET ?""",
            (int(limit), int(offset)),
        )
    ]
    rows = conn.execute(
        "SELECT cluster_id, label, keywords, size, (SELECT COUNT(*) FROM cluster_members m WHERE m.cluster_id = c.cluster_id) AS texts "
        "FROM clusters c WHERE cluster_id IN (SELECT value FROM json_each(?))",
        (json.dumps(ids),),
    ).fetchall()
    by_id = {r["cluster_id"]: r for r in rows}
    items = items_per_cluster(conn, ids)
    reviewed = reviewed_per_cluster(conn, ids)
    return [
        ClusterRow(
            cid,
            by_id[cid]["label"],
            json.loads(by_id[cid]["keywords"] or "[]"),
            by_id[cid]["size"],
            items.get(cid, 0),
            by_id[cid]["texts"],
            reviewed.get(cid, 0),
        )
        for cid in ids
    ]


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def cluster_risks(conn: sqlite3.Connection, cluster_ids: list[int]) -> dict[int, float]:
    """Each cluster's risk (the mean risk of its items; none for a catalog without risk scores)."""
    if not cluster_ids or not _has_table(conn, "cluster_risk"):
        return {}
    return dict(conn.execute("SELECT cluster_id, risk FROM cluster_risk WHERE cluster_id IN (SELECT value FROM json_each(?))", (json.dumps(cluster_ids),)))


def precision(conn: sqlite3.Connection):
    """Audit precision estimates from the catalog's copy of the audits: ({cluster_id: Precision},
    overall Precision or None); see :func:`shardlens.audits.precision_estimates`."""
    from ..audits import precision_estimates

    per, overall = precision_estimates(conn)
    return {cid: p for (_, cid), p in per.items()}, overall


def items_by_key(conn: sqlite3.Connection, keys: list[tuple]) -> dict[tuple, dict]:
    """(image_id, region_id, line_no) -> the item's machine label, box and image (path, size):
    what an audit shows of each sample item."""
    out = {}
    for image_id, region_id, line_no in keys:
        if region_id is not None:
            row = conn.execute("SELECT caption AS text, bbox FROM regions WHERE image_id = ? AND region_id = ? LIMIT 1", (image_id, region_id)).fetchone()
        else:
            row = conn.execute("SELECT text, bbox FROM ocr_lines WHERE image_id = ? AND line_no = ? LIMIT 1", (image_id, line_no)).fetchone()
        if row is not None:
            out[(image_id, region_id, line_no)] = {"image_id": image_id, "text": row["text"], "bbox": _bbox(row["bbox"])}
    images = image_paths(conn, sorted({k[0] for k in out}))
    for item in out.values():
        item.update({k: v for k, v in images.get(item["image_id"], {}).items() if k != "image_id"})
    return out


def cluster_item(conn: sqlite3.Connection, cluster_id: int) -> str | None:
    """The item group of a cluster ('region' or 'text'; None for the bucket or an unknown id)."""
    row = conn.execute("SELECT item FROM clusters WHERE cluster_id = ?", (int(cluster_id),)).fetchone()
    return row[0] if row else None


# --------------------------------------------------------------------------- near-duplicates


def near_duplicate_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """How many near-duplicate groups there are and how many images they hold (0, 0 without the table)."""
    if not has_near_duplicates(conn):
        return {"groups": 0, "images": 0}
    row = conn.execute("SELECT COUNT(DISTINCT group_id), COUNT(*) FROM near_duplicates").fetchone()
    return {"groups": row[0], "images": row[1]}


def near_duplicate_group(conn: sqlite3.Connection, image_id: str, limit: int = 24) -> list[dict]:
    """The near-duplicate group of one image (:func:`shardlens.near_duplicates.group_of`: the
    representative first), each member with its path and size; at most ``limit`` members
    (``group_size`` says how many there are); [] when the image is in none."""
    members = group_of(conn, image_id, limit)
    info = image_paths(conn, [m["image_id"] for m in members])
    for m in members:
        m.update({k: v for k, v in info.get(m["image_id"], {}).items() if k != "image_id"})
    return members
