"""People's reviews of machine labels: validated, all-or-nothing imports into a review store that
no workflow rule ever rewrites, mirrored into the catalog so exports show reviewed labels.

The store (``reviews/reviews.sqlite`` by default) is the source of truth; the catalog's
``reviews`` table is a copy refreshed on every catalog build and every import. The CSV
re-import, the Label Studio import (:mod:`shardlens.label_studio`), the dashboard and any other
front end validate with :func:`~shardlens.review_writer.catalog_problems` and store with
:func:`~shardlens.review_writer.store_reviews` (both in :func:`record_reviews`). The store's
tables and the :class:`~shardlens.review_store.Review` a row holds are :mod:`shardlens.review_store`'s.

A person's verdict on a whole cluster (accept it, or relabel it) is stored twice: as one review
per current member item (human reviews, like any other) and as a **cluster review** in the
store's ``cluster_reviews`` table (:func:`record_cluster_review`), which the catalog copies like
the reviews; :mod:`shardlens.propagation` carries it to members that appear later. The table is
created when missing, and code that knows only ``reviews`` reads a store that has it unchanged.
"""

from __future__ import annotations

import csv
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from .catalog import CatalogError, connect_readonly
from .catalog_rules import ITEM_TABLES, item_key, item_key_sql, member_items
from .label_studio import import_label_studio
from .review_store import CLUSTER_STATUSES, STATUSES, Review, ReviewError, cluster_key
from .review_writer import catalog_problems, store_reviews, utc_now
from .spreadsheet import csv_value


def _int_or_none(value: str, column: str, where: str, problems: list[str]) -> int | None:
    value = (value or "").strip()
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not number.is_integer():  # spreadsheets write 3 as "3.0"; "x" or 2.5 is an error
        problems.append(f"{where}, column {column}: {value!r} is not a whole number")
        return None
    number = int(number)
    if number < 0:
        problems.append(f"{where}, column {column}: {value!r} must not be negative")
    return number


MAX_CELL_BYTES = 1 << 20  # a cell over 1 MiB is a problem of its own (a label is a few words)
DELIMITERS = ",;\t"  # comma, and what spreadsheets in other locales write


def read_review_csv(path: str | Path) -> tuple[list[Review], list[str]]:
    """Every review the sheet holds and every problem with its format (line and column): rows
    with a review_status become reviews, rows without are ignored. Never raises for content."""
    path = Path(path)
    problems: list[str] = []
    reviews: list[Review] = []
    try:
        handle = path.open(newline="", encoding="utf-8-sig")  # a BOM (spreadsheets write one) is dropped
    except OSError as exc:
        return [], [f"cannot read the file: {exc.strerror}"]
    with handle:
        try:
            header = handle.readline()
        except UnicodeDecodeError as exc:
            return [], [f"line 1: not UTF-8 text ({exc.reason} at byte {exc.start})"]
        handle.seek(0)
        delimiter = max(DELIMITERS, key=header.count) if any(d in header for d in DELIMITERS) else ","
        previous_limit = csv.field_size_limit()
        csv.field_size_limit(max(previous_limit, 64 * MAX_CELL_BYTES))
        try:
            reader = csv.DictReader(handle, delimiter=delimiter)
            missing = {"image_id", "review_status"} - set(reader.fieldnames or [])
            if missing:
                named = {",": "commas", ";": "semicolons", "\t": "tabs"}[delimiter]
                return [], [f"line 1: missing column(s) {', '.join(sorted(missing))} (header read as separated by {named}: {header.strip()[:120]!r})"]
            rows = iter(reader)
            while True:
                try:
                    raw = next(rows)
                except StopIteration:
                    break
                except (csv.Error, UnicodeDecodeError) as exc:
                    problems.append(f"line {reader.line_num}: cannot be read as CSV ({exc})")
                    break
                review = _review_from_row(raw, f"line {reader.line_num}", problems)
                if review is not None:
                    reviews.append(review)
        finally:
            csv.field_size_limit(previous_limit)
    return reviews, problems


def _review_from_row(raw: dict, where: str, problems: list[str]) -> Review | None:
    too_big = [key for key, cell in raw.items() if isinstance(cell, str) and len(cell) > MAX_CELL_BYTES]
    if too_big:
        problems.append(f"{where}, column {too_big[0]}: a cell of {len(raw[too_big[0]]):,} characters (at most {MAX_CELL_BYTES:,})")
        return None
    row = {key: csv_value(cell) if isinstance(cell, str) else cell for key, cell in raw.items()}
    status = (row.get("review_status") or "").strip().lower()
    if not status:
        return None
    if status not in STATUSES:
        problems.append(f"{where}, column review_status: {status!r} is not one of {', '.join(STATUSES)}")
        return None
    label = (row.get("review_label") or "").strip() or None
    if status == "accepted" and label is None:
        label = (row.get("machine_label") or "").strip() or None
    if status == "relabeled" and label is None:
        problems.append(f"{where}, column review_label: review_status 'relabeled' needs a review_label")
        return None
    return Review(
        image_id=(row.get("image_id") or "").strip(),
        region_id=_int_or_none(row.get("region_id", ""), "region_id", where, problems),
        line_no=_int_or_none(row.get("line_no", ""), "line_no", where, problems),
        status=status,
        label=label,
        reviewer=(row.get("reviewer") or "").strip() or None,
        reviewed_at=(row.get("reviewed_at") or "").strip() or None,
        where=where,
    )


def parse_review_csv(path: str | Path) -> list[Review]:
    """The sheet's reviews; raises :class:`ReviewError` listing every format problem."""
    reviews, problems = read_review_csv(path)
    if problems:
        raise ReviewError(str(path), problems)
    return reviews


def record_reviews(reviews: list[Review], catalog_db: str | Path, store_db: str | Path, source: str) -> int:
    """Validate against the catalog and store all reviews in one transaction, or none.

    Returns the number of reviews written; raises :class:`ReviewError` listing every problem.
    """
    problems = catalog_problems(reviews, catalog_db, source)
    if problems:
        raise ReviewError(source, problems)
    return store_reviews(reviews, catalog_db, store_db, source)


@dataclass(frozen=True)
class ClusterReviewResult:
    review_key: str  # cluster_key(item, cluster_id)
    items: int  # item reviews written for the cluster's current members


def cluster_member_items(catalog: sqlite3.Connection, cluster_id: int, item: str) -> list[tuple]:
    """(image_id, region_id, line_no, machine_label, review_status) of every item of one cluster
    (its member texts' regions or OCR lines), once per item key, in key order."""
    numbers = "r.region_id, NULL, r.caption" if item == "region" else "NULL, o.line_no, o.text"
    sql = f"""SELECT {ITEM_TABLES[item].alias}.image_id, {numbers}, v.status
              FROM {member_items(item)} LEFT JOIN reviews v ON v.item_key = {item_key_sql(item)}
              WHERE m.cluster_id = ?"""
    unique = {item_key(r[0], r[1], r[2]): r for r in catalog.execute(sql, (int(cluster_id),))}
    return [unique[k] for k in sorted(unique)]


def record_cluster_review(
    catalog_db: str | Path,
    store_db: str | Path,
    cluster_id: int,
    status: str,
    label: str | None = None,
    reviewer: str | None = None,
    source: str = "api",
) -> ClusterReviewResult:
    """A person accepts or relabels a whole cluster.

    ``accepted``: each member item nobody reviewed yet gets an ``accepted`` review of its own
    machine label (people's decisions stand; clusters group, they never rename).
    ``relabeled``: every member item gets a ``relabeled`` review with ``label``.
    Besides these item reviews (validated like any import), the verdict itself is stored as a
    cluster review, all in one store transaction; the catalog's copy and its propagated labels
    follow (:func:`mirror_reviews`). Raises :class:`ReviewError` for an unknown cluster, the
    'unclustered' bucket, another status, or a relabel without a label."""
    where = f"cluster {cluster_id}"
    label = (label or "").strip() or None
    if status not in CLUSTER_STATUSES:
        raise ReviewError(source, [f"{where}: status {status!r} is not one of {', '.join(CLUSTER_STATUSES)}"])
    if status == "relabeled" and label is None:
        raise ReviewError(source, [f"{where}: relabeling a cluster needs its new label"])
    try:
        catalog = connect_readonly(catalog_db)
    except CatalogError as exc:
        raise ReviewError(source, [str(exc)]) from None
    try:
        found = catalog.execute("SELECT item, label FROM clusters WHERE cluster_id = ?", (int(cluster_id),)).fetchone()
        if found is None or int(cluster_id) < 0 or found[0] is None:
            what = "the 'unclustered' bucket is no cluster" if found is not None else "no such cluster in the catalog"
            raise ReviewError(source, [f"{where}: {what}; review its items one by one"])
        item, cluster_label = found
        members = cluster_member_items(catalog, cluster_id, item)
    finally:
        catalog.close()
    if status == "accepted":
        reviews = [Review(i, r, n, "accepted", machine, reviewer) for i, r, n, machine, reviewed in members if reviewed is None]
    else:
        reviews = [Review(i, r, n, "relabeled", label, reviewer) for i, r, n, _, _ in members]
    problems = catalog_problems(reviews, catalog_db, source)
    if problems:
        raise ReviewError(source, problems)
    key = cluster_key(item, cluster_id)
    now = utc_now()
    row = (key, int(cluster_id), item, status, label if status == "relabeled" else None, cluster_label, reviewer, now, source, now)
    return ClusterReviewResult(key, store_reviews(reviews, catalog_db, store_db, source, cluster_rows=[row]))


def import_review_csv(csv_path: str | Path, catalog_db: str | Path, store_db: str | Path) -> int:
    """Import a reviewed sheet: all of it or nothing. Format and catalog checks both run, so
    :class:`ReviewError` lists every problem at once."""
    source = f"csv:{Path(csv_path).name}"
    reviews, problems = read_review_csv(csv_path)
    problems += catalog_problems(reviews, catalog_db, str(csv_path))
    if problems:
        raise ReviewError(str(csv_path), sorted(problems, key=_line_order))
    return store_reviews(reviews, catalog_db, store_db, source)


def run_import_reviews(path: str | Path, catalog_db: str | Path, store_db: str | Path, receipt: str | Path) -> int:
    """The workflow's import_reviews job: :func:`import_reviews`, then its receipt (JSON: the
    file, the count, the store; written atomically) and one line on stderr."""
    import json
    import sys

    from .atomic import atomic_open

    count = import_reviews(path, catalog_db, store_db)
    with atomic_open(receipt, "w") as handle:
        json.dump({"csv": path, "reviews": count, "store": store_db}, handle, indent=2)
    print(f"import_reviews: {count} reviews from {path}", file=sys.stderr)
    return count


def import_reviews(path: str | Path, catalog_db: str | Path, store_db: str | Path) -> int:
    """Import a review file, the format picked by its suffix: ``.json`` is a Label Studio JSON
    export (:func:`shardlens.label_studio.import_label_studio`), anything else the annotation
    sheet (:func:`import_review_csv`: .csv, .tsv, ...). All or nothing, every problem listed."""
    if Path(path).suffix.lower() == ".json":
        return import_label_studio(path, catalog_db, store_db)
    return import_review_csv(path, catalog_db, store_db)


def _line_order(problem: str) -> tuple[int, str]:
    head = problem.split(":", 1)[0].split(",", 1)[0]
    return (int(head[5:]) if head.startswith("line ") and head[5:].isdigit() else 0, problem)
