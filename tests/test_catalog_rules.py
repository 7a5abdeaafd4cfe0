"""The catalog's rules are written once (shardlens/catalog_rules.py, issue #20 item 2): the item
key, the first path of an image, and the item rows that the views and the dashboard's, exports' and
reviews' queries are built from. These tests check that the SQL and the Python agree on a real
catalog, that the queries spelled out over the base tables still use the catalog's indexes (a
catalog as the workflow builds it: no ANALYZE statistics), and that the dashboard only reads."""

from __future__ import annotations

import sqlite3

from shardlens.catalog import connect_readonly
from shardlens.catalog_rules import ITEM_TABLES, first_path_sql, is_first_path_sql, item_key, item_key_sql
from shardlens.dashboard import queries as q
from shardlens.exports import SHARD_IMAGES_SQL, _image_rows_sql


def test_item_keys_in_sql_are_the_review_store_keys(small_catalog):
    conn = connect_readonly(small_catalog)
    try:
        rows = conn.execute("SELECT image_id, item, region_id, line_no, item_key FROM final_annotations").fetchall()
        assert {r[1] for r in rows} == {"region", "text"}
        for image_id, item, region_id, line_no, key in rows:
            assert key == item_key(image_id, region_id, line_no)
            t = ITEM_TABLES[item]
            number = region_id if item == "region" else line_no
            found = conn.execute(f"SELECT {item_key_sql(item, 'x')} FROM {t.table} x WHERE x.image_id = ? AND x.{t.number} = ?", (image_id, number)).fetchall()
            assert {k for (k,) in found} == {key}
        assert item_key("abc", None, None) == "abc/image"
    finally:
        conn.close()


def test_first_path_is_the_images_path(small_catalog):
    """One first path per image, the ``images`` view's ``path``; an image listed twice (a copy)
    has one."""
    conn = connect_readonly(small_catalog)
    try:
        images = dict(conn.execute("SELECT image_id, path FROM images"))
        copies = conn.execute("SELECT COUNT(*) FROM (SELECT image_id FROM paths WHERE image_id IS NOT NULL GROUP BY image_id HAVING COUNT(*) > 1)").fetchone()[
            0
        ]
        assert copies >= 1  # tests/small_catalog.py lists a copy of cat.jpg
        firsts = conn.execute(f"SELECT p.image_id, p.path FROM paths p WHERE {is_first_path_sql('p')}").fetchall()
        assert dict(firsts) == images and len(firsts) == len(images)
        for image_id, path in images.items():
            assert conn.execute(f"SELECT {first_path_sql('?')}", (image_id,)).fetchone()[0] == path
    finally:
        conn.close()


def _plan(conn: sqlite3.Connection, sql: str, params=()) -> str:
    return "\n".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))


def test_queries_built_from_the_rules_keep_their_indexes(small_catalog):
    conn = connect_readonly(small_catalog)
    try:
        # the dashboard's arms: a cluster through the caption/text index, an image through the image index
        sql, params = q._items_sql(q.ItemFilter(cluster_id=0, item="region"))
        assert "USING INDEX regions_caption" in _plan(conn, sql, params)
        sql, params = q._items_sql(q.ItemFilter(image_id="x"))
        plan = _plan(conn, sql, params)
        assert "USING INDEX regions_image" in plan and "USING INDEX ocr_image" in plan
        assert "USING INDEX sqlite_autoindex_reviews_1 (item_key=?)" in plan
        assert "USING INDEX sqlite_autoindex_propagated_labels_1 (item_key=?)" in plan
        # the views, filtered by image (Label Studio's tasks, the exports' chunks of images)
        plan = _plan(conn, "SELECT * FROM final_annotations WHERE image_id = ?", ("x",))
        assert "USING INDEX regions_image" in plan and "USING INDEX ocr_image" in plan
        assert "USING INDEX sqlite_autoindex_reviews_1 (item_key=?)" in plan
        plan = _plan(conn, _image_rows_sql(2), ("a", "b") * 3)
        assert "SCAN r\n" not in plan + "\n" and "SCAN o\n" not in plan + "\n" and "USING INDEX regions_image" in plan
        # a shard's images: the shard index, then each image's first path through the image index
        plan = _plan(conn, SHARD_IMAGES_SQL, ("0000",))
        assert "USING INDEX paths_shard" in plan and "USING INDEX paths_image" in plan
    finally:
        conn.close()
