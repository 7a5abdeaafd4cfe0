"""Writing reviews: validated against the catalog, stored in the review store in one transaction,
then mirrored into the catalog with the propagated labels refreshed.

Every front end (the CSV re-import and :func:`shardlens.reviews.record_reviews`, the Label Studio
import :mod:`shardlens.label_studio`, the dashboard) validates with :func:`catalog_problems` and
stores with :func:`store_reviews`.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from .catalog import CatalogError, connect_readonly
from .propagation import refresh_propagation
from .review_store import (
    CLUSTER_COLUMNS,
    CLUSTER_REVIEWS_DDL,
    COLUMNS,
    STORE_DDL,
    Review,
    ReviewError,
    connect_store,
    read_audit_rows,
    read_store,
    replace_audit_copies,
    replace_copies,
)
from .sqlite_connect import connect_writer


def validate_reviews(reviews: list[Review], catalog: sqlite3.Connection) -> list[str]:
    """Problems with reviews against the catalog: unknown items, conflicting duplicates."""
    problems: list[str] = []
    seen: dict[str, Review] = {}
    for review in reviews:
        where = review.where or review.item_key
        if catalog.execute("SELECT 1 FROM paths WHERE image_id = ? LIMIT 1", (review.image_id,)).fetchone() is None:
            problems.append(f"{where}, column image_id: {review.image_id[:16]!r}... is not in the catalog")
            continue
        if review.region_id is not None and review.line_no is not None:
            problems.append(f"{where}: give region_id or line_no, not both")
            continue
        if (
            review.region_id is not None
            and catalog.execute("SELECT 1 FROM regions WHERE image_id = ? AND region_id = ? LIMIT 1", (review.image_id, review.region_id)).fetchone() is None
        ):
            problems.append(f"{where}, column region_id: image {review.image_id[:12]} has no region {review.region_id}")
            continue
        if (
            review.line_no is not None
            and catalog.execute("SELECT 1 FROM ocr_lines WHERE image_id = ? AND line_no = ? LIMIT 1", (review.image_id, review.line_no)).fetchone() is None
        ):
            problems.append(f"{where}, column line_no: image {review.image_id[:12]} has no OCR line {review.line_no}")
            continue
        earlier = seen.get(review.item_key)
        if earlier is not None and (earlier.status, earlier.label) != (review.status, review.label):
            problems.append(
                f"{where}: conflicts with {earlier.where} for the same item ({earlier.status} {earlier.label!r} vs {review.status} {review.label!r})"
            )
        seen.setdefault(review.item_key, review)
    return problems


def catalog_problems(reviews: list[Review], catalog_db: str | Path, source: str) -> list[str]:
    """:func:`validate_reviews` against the catalog, opened read-only (a missing catalog is a
    ReviewError, never a new empty file)."""
    try:
        catalog = connect_readonly(catalog_db)
    except CatalogError as exc:
        raise ReviewError(source, [str(exc)]) from None
    try:
        return validate_reviews(reviews, catalog)
    finally:
        catalog.close()


def utc_now() -> str:
    """Now, as the store records times: UTC, ISO 8601, to the second."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def store_reviews(reviews: list[Review], catalog_db: str | Path, store_db: str | Path, source: str, cluster_rows: list[tuple] = ()) -> int:
    """Write item reviews (and cluster reviews, rows of :data:`CLUSTER_COLUMNS`) in one store
    transaction, then mirror the store into the catalog."""
    now = utc_now()
    unique = {r.item_key: r for r in reviews}
    rows = [(key, r.image_id, r.region_id, r.line_no, r.status, r.label, r.reviewer, r.reviewed_at or now, source, now) for key, r in sorted(unique.items())]
    store = connect_store(store_db)
    try:
        store.execute("BEGIN IMMEDIATE")
        store.executemany(f"INSERT OR REPLACE INTO reviews ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})", rows)
        store.executemany(
            f"INSERT OR REPLACE INTO cluster_reviews ({', '.join(CLUSTER_COLUMNS)}) VALUES ({', '.join('?' * len(CLUSTER_COLUMNS))})", cluster_rows
        )
        store.execute("COMMIT")
    except BaseException:
        store.execute("ROLLBACK")
        raise
    finally:
        store.close()
    mirror_reviews(store_db, catalog_db)
    return len(rows)


def mirror_reviews(store_db: str | Path, catalog_db: str | Path) -> int:
    """Copy the review store into the catalog's ``reviews`` and ``cluster_reviews`` tables
    (replacing the old copies) and refresh the propagated labels, in one transaction."""
    catalog = connect_writer(catalog_db, wal=False)  # the catalog's own journal mode stays
    try:
        catalog.execute(STORE_DDL)
        catalog.execute(CLUSTER_REVIEWS_DDL)
        rows, cluster_rows = read_store(store_db)
        catalog.execute("BEGIN IMMEDIATE")
        try:
            replace_copies(catalog, rows, cluster_rows)
            replace_audit_copies(catalog, *read_audit_rows(store_db))
            refresh_propagation(catalog)
            catalog.execute("COMMIT")
        except BaseException:
            if catalog.in_transaction:
                catalog.execute("ROLLBACK")
            raise
        return len(rows)
    finally:
        catalog.close()
