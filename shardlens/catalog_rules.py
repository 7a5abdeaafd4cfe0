"""The catalog's rules, each written once: what an item's key is, what labels it carries, and which
path stands for an image. SQL fragments (and the one Python twin, :func:`item_key`), from which the
catalog's views are made (:mod:`shardlens.catalog`: ``images``, ``item_annotations``,
``final_annotations``, ``image_labels``) and so are the queries that spell a view out over the
base tables to keep an index: the dashboard's filtered item arms, a cluster's members
(:mod:`shardlens.reviews`), the propagation rules, the exports' partitions and the change
tracking (:mod:`shardlens.shard_versions`).

- **Items** are the regions and the OCR lines (:data:`ITEM_GROUPS`). An item's *machine label* is
  its own text (a region's top candidate, its caption; an OCR line's text): clusters group, they
  never rename. Its *cluster* is the cluster of that text in its item group (-1: unclustered), its
  *confidence* the text's membership probability (0.0 without one): :func:`item_select`.
- **The item key**, the key of the review store: ``{image_id}/region/{region_id}``,
  ``{image_id}/line/{line_no}``, ``{image_id}/image`` (:func:`item_key`, :func:`item_key_sql`,
  :func:`image_key_sql`).
- **The final label**: a person's review always wins (accepted or relabeled: its label; rejected:
  none), then a label propagated from a reviewed cluster or look-alike
  (:mod:`shardlens.propagation`), then the machine label; ``label_source`` says which
  (:func:`final_select`).
- **An image's first path**: the smallest of the paths listing it. It is the image's ``path``, and
  the shard listing it is where the image's rows are exported (:func:`first_path_sql`).

This module imports nothing of shardlens: every other module may use it.
"""

from __future__ import annotations

from dataclasses import dataclass

ITEM_GROUPS = ("region", "text")  # item_annotations' ``item``, in the order of its rows


@dataclass(frozen=True)
class ItemTable:
    """Where the items of one group live: the table, its usual alias, the column holding the
    item's text (its machine label), the one holding its score, and the column and word of its key."""

    table: str
    alias: str
    text: str
    score: str
    number: str  # region_id or line_no: the item's number within its image
    key_word: str  # the item key's middle part


ITEM_TABLES = {
    "region": ItemTable("regions", "r", "caption", "score", "region_id", "region"),
    "text": ItemTable("ocr_lines", "o", "text", "confidence", "line_no", "line"),
}


def item_key(image_id: str, region_id: int | None, line_no: int | None) -> str:
    """An item's key in the review store (a region's, an OCR line's or, with neither, the image's)."""
    if region_id is not None:
        return f"{image_id}/region/{region_id}"
    if line_no is not None:
        return f"{image_id}/line/{line_no}"
    return f"{image_id}/image"


def item_key_sql(item: str, row: str | None = None) -> str:
    """SQL: the key of the ``item`` ('region' or 'text') in the row of ``row`` (an alias of its
    table; the table's usual alias by default), as :func:`item_key` makes it."""
    t = ITEM_TABLES[item]
    row = row or t.alias
    return f"{row}.image_id || '/{t.key_word}/' || {row}.{t.number}"


def image_key_sql(row: str) -> str:
    """SQL: the key of an image-level review of the image of ``row``."""
    return f"{row}.image_id || '/image'"


# An item's cluster and confidence, from its cluster member row ``m`` (joined by :func:`member_join`).
CLUSTER_ID = "COALESCE(m.cluster_id, -1)"
CONFIDENCE = "COALESCE(m.probability, 0.0)"

# What counts as a cluster, everywhere a number of clusters is shown (the dashboard's sidebar, its
# Clusters heading and map, ``shardlens stats``, the run report): HDBSCAN's clusters, cluster_id >= 0.
# The 'unclustered' bucket (cluster_id -1: texts HDBSCAN left alone, its noise) is a row of the
# clusters table and a card of the dashboard's list, but not a cluster.
IS_CLUSTER = "cluster_id >= 0"


def member_join(item: str, row: str | None = None) -> str:
    """SQL: the LEFT JOIN of the cluster member ``m`` holding the text of the item in ``row``."""
    t = ITEM_TABLES[item]
    return f"LEFT JOIN cluster_members m ON m.item = '{item}' AND m.text = {row or t.alias}.{t.text}"


def item_select(item: str, where: str = "") -> str:
    """SQL: one item group's rows with ``item_annotations``' columns (image_id, item, region_id,
    line_no, bbox, text, score, cluster_id, machine_label, confidence, item_key). ``where``
    (``""`` or ``" WHERE ..."``, over the table's usual alias and ``m``) filters the rows inside,
    where the terms can use the table's indexes."""
    t = ITEM_TABLES[item]
    x = t.alias
    numbers = f"{x}.region_id AS region_id, NULL AS line_no" if item == "region" else f"NULL AS region_id, {x}.line_no AS line_no"
    return (
        f"SELECT {x}.image_id AS image_id, '{item}' AS item, {numbers}, {x}.bbox AS bbox, {x}.{t.text} AS text,\n"
        f"           {x}.{t.score} AS score, {CLUSTER_ID} AS cluster_id, {x}.{t.text} AS machine_label,\n"
        f"           {CONFIDENCE} AS confidence, {item_key_sql(item)} AS item_key\n"
        f"    FROM {t.table} {x} {member_join(item)}{where}"
    )


def final_label_sql(items: str) -> str:
    """SQL: the final label of the item row ``items``, its review ``v`` and its propagated label
    ``p`` (joined as :func:`final_select` joins them)."""
    return (
        "CASE WHEN v.status IN ('accepted', 'relabeled') THEN v.label WHEN v.status = 'rejected' THEN NULL "
        f"WHEN p.label IS NOT NULL THEN p.label ELSE {items}.machine_label END"
    )


LABEL_SOURCE = "CASE WHEN v.status IS NOT NULL THEN 'review' WHEN p.label IS NOT NULL THEN 'propagated' ELSE 'machine' END"
PROPAGATED_FROM = "CASE WHEN v.status IS NULL THEN p.propagated_from END"  # the review a propagated label comes from


def final_select(items: str, alias: str = "a") -> str:
    """SQL: ``final_annotations``' rows over ``items`` (a table, view or parenthesised subquery
    with ``item_annotations``' columns, named ``alias``): its columns, then the review's
    (review_status, review_label, reviewer, reviewed_at) and final_label, label_source,
    propagated_from. A WHERE may follow, over ``alias``, ``v`` (the review) and ``p`` (the
    propagated label)."""
    return (
        f"SELECT {alias}.*, v.status AS review_status, v.label AS review_label, v.reviewer AS reviewer,\n"
        f"           v.reviewed_at AS reviewed_at, {final_label_sql(alias)} AS final_label,\n"
        f"           {LABEL_SOURCE} AS label_source, {PROPAGATED_FROM} AS propagated_from\n"
        f"    FROM {items} {alias}\n"
        f"    LEFT JOIN reviews v ON v.item_key = {alias}.item_key\n"
        f"    LEFT JOIN propagated_labels p ON p.item_key = {alias}.item_key"
    )


# An image's columns from its rows of ``paths`` (grouped by image_id): the ``images`` view's,
# and the dashboard's for some images. ``path`` is the first path.
IMAGE_COLUMNS = """MIN(path) AS path,
           COUNT(*) AS n_paths,
           MAX(bytes) AS bytes,
           MAX(width) AS width,
           MAX(height) AS height,
           MAX(format) AS format,
           CASE WHEN SUM(status = 'ok') > 0 THEN 'ok' ELSE 'error' END AS status,
           MAX(error) AS error"""


def first_path_sql(image_id: str) -> str:
    """SQL: the first path of the image ``image_id`` (an expression), through paths' image index."""
    return f"(SELECT MIN(fp.path) FROM paths fp WHERE fp.image_id = {image_id})"


def is_first_path_sql(row: str) -> str:
    """SQL: the row ``row`` of ``paths`` lists an image and is its first path (one row per image)."""
    return f"{row}.image_id IS NOT NULL AND {row}.path = {first_path_sql(f'{row}.image_id')}"


def member_items(item: str) -> str:
    """SQL for a FROM clause: the cluster members ``m`` of one item group joined to their items
    (the table's usual alias), an index lookup per member text: a cluster's items, read from its
    members."""
    t = ITEM_TABLES[item]
    return f"cluster_members m JOIN {t.table} {t.alias} ON m.item = '{item}' AND {t.alias}.{t.text} = m.text"
