"""People's reviews of machine labels: validated, all-or-nothing imports into a review store that
no workflow rule ever rewrites, mirrored into the catalog so exports show reviewed labels.

The store (``reviews/reviews.sqlite`` by default) is the source of truth; the catalog's
``reviews`` table is a copy refreshed on every catalog build and every import. The CSV
re-import, the Label Studio import (:mod:`shardlens.label_studio`), the dashboard and any other
front end validate with :func:`catalog_problems` and store with :func:`_store_reviews` (both in
:func:`record_reviews`).

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
from datetime import UTC, datetime
from pathlib import Path

from .catalog_rules import ITEM_TABLES, item_key, item_key_sql, member_items
from .spreadsheet import csv_value
from .sqlite_connect import connect_writer
from .table_sync import sync_table

STATUSES = ("accepted", "relabeled", "rejected")

STORE_DDL = """
CREATE TABLE IF NOT EXISTS reviews (
    item_key TEXT PRIMARY KEY,
    image_id TEXT NOT NULL,
    region_id INTEGER,
    line_no INTEGER,
    status TEXT NOT NULL CHECK (status IN ('accepted', 'relabeled', 'rejected')),
    label TEXT,
    reviewer TEXT,
    reviewed_at TEXT,
    source TEXT NOT NULL,
    imported_at TEXT NOT NULL
)
"""
COLUMNS = ("item_key", "image_id", "region_id", "line_no", "status", "label", "reviewer", "reviewed_at", "source", "imported_at")

CLUSTER_STATUSES = ("accepted", "relabeled")

# A person's verdict on a whole cluster. review_key is cluster_key(item, cluster_id), what a
# propagated label names as propagated_from; a newer verdict on the same cluster replaces it.
# label: the new label of a relabeled cluster (NULL when accepted: clusters never rename);
# cluster_label: the cluster's name when it was reviewed, for people reading the table.
CLUSTER_REVIEWS_DDL = """
CREATE TABLE IF NOT EXISTS cluster_reviews (
    review_key TEXT PRIMARY KEY,
    cluster_id INTEGER NOT NULL,
    item TEXT NOT NULL CHECK (item IN ('region', 'text')),
    status TEXT NOT NULL CHECK (status IN ('accepted', 'relabeled')),
    label TEXT,
    cluster_label TEXT,
    reviewer TEXT,
    reviewed_at TEXT,
    source TEXT NOT NULL,
    imported_at TEXT NOT NULL,
    CHECK ((status = 'relabeled') = (label IS NOT NULL))
)
"""
CLUSTER_COLUMNS = ("review_key", "cluster_id", "item", "status", "label", "cluster_label", "reviewer", "reviewed_at", "source", "imported_at")

# Audits before a cluster's bulk accept (shardlens/audits.py): one row per audit drawn, its
# sample in audit_items. An audit is 'open' until it is closed: 'failed' as soon as a sample item
# is rejected or relabeled, 'passed' when the cluster is accepted after every sample item was
# accepted. accepted / audited: the sample's verdicts counted when it closed (what precision
# estimates read); cluster_items: the cluster's items when it was drawn (the weight).
AUDITS_DDL = (
    """CREATE TABLE IF NOT EXISTS audits (
    audit_key TEXT PRIMARY KEY,
    cluster_id INTEGER NOT NULL,
    item TEXT NOT NULL CHECK (item IN ('region', 'text')),
    audit_no INTEGER NOT NULL,
    size INTEGER NOT NULL,
    cluster_items INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'passed', 'failed')),
    accepted INTEGER,
    audited INTEGER,
    reviewer TEXT,
    drawn_at TEXT NOT NULL,
    closed_at TEXT
)""",
    """CREATE TABLE IF NOT EXISTS audit_items (
    audit_key TEXT NOT NULL,
    item_key TEXT NOT NULL,
    image_id TEXT NOT NULL,
    region_id INTEGER,
    line_no INTEGER,
    PRIMARY KEY (audit_key, item_key)
)""",
)
AUDIT_COLUMNS = ("audit_key", "cluster_id", "item", "audit_no", "size", "cluster_items", "status", "accepted", "audited", "reviewer", "drawn_at", "closed_at")
AUDIT_ITEM_COLUMNS = ("audit_key", "item_key", "image_id", "region_id", "line_no")


class ReviewError(ValueError):
    """A review file or request with problems; ``problems`` lists each one (line and reason)."""

    def __init__(self, source: str, problems: list[str]):
        self.problems = problems
        shown = problems[:MAX_PROBLEMS]
        listing = "\n".join(f"  - {p}" for p in shown)
        if len(problems) > len(shown):
            listing += f"\n  - ... and {len(problems) - len(shown)} more"
        super().__init__(f"{source}: {len(problems)} problem(s), nothing was imported:\n{listing}")


@dataclass(frozen=True)
class Review:
    image_id: str
    region_id: int | None
    line_no: int | None
    status: str
    label: str | None
    reviewer: str | None = None
    reviewed_at: str | None = None
    where: str = ""  # e.g. "line 7", for messages

    @property
    def item_key(self) -> str:
        return item_key(self.image_id, self.region_id, self.line_no)


def cluster_key(item: str, cluster_id: int) -> str:
    """The key of a cluster review, e.g. ``cluster/text/3``: what propagated labels name."""
    return f"cluster/{item}/{cluster_id}"


def connect_store(path: str | Path) -> sqlite3.Connection:
    conn = connect_writer(path)
    conn.execute(STORE_DDL)
    conn.execute(CLUSTER_REVIEWS_DDL)  # added to stores written before cluster reviews existed
    for statement in AUDITS_DDL:  # and audits
        conn.execute(statement)
    return conn


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


MAX_PROBLEMS = 50  # listed one by one; the rest are counted
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
        if review.region_id is not None and catalog.execute(
            "SELECT 1 FROM regions WHERE image_id = ? AND region_id = ? LIMIT 1", (review.image_id, review.region_id)
        ).fetchone() is None:
            problems.append(f"{where}, column region_id: image {review.image_id[:12]} has no region {review.region_id}")
            continue
        if review.line_no is not None and catalog.execute(
            "SELECT 1 FROM ocr_lines WHERE image_id = ? AND line_no = ? LIMIT 1", (review.image_id, review.line_no)
        ).fetchone() is None:
            problems.append(f"{where}, column line_no: image {review.image_id[:12]} has no OCR line {review.line_no}")
            continue
        earlier = seen.get(review.item_key)
        if earlier is not None and (earlier.status, earlier.label) != (review.status, review.label):
            problems.append(
                f"{where}: conflicts with {earlier.where} for the same item "
                f"({earlier.status} {earlier.label!r} vs {review.status} {review.label!r})"
            )
        seen.setdefault(review.item_key, review)
    return problems


def record_reviews(reviews: list[Review], catalog_db: str | Path, store_db: str | Path, source: str) -> int:
    """Validate against the catalog and store all reviews in one transaction, or none.

    Returns the number of reviews written; raises :class:`ReviewError` listing every problem.
    """
    problems = catalog_problems(reviews, catalog_db, source)
    if problems:
        raise ReviewError(source, problems)
    return _store_reviews(reviews, catalog_db, store_db, source)


def catalog_problems(reviews: list[Review], catalog_db: str | Path, source: str) -> list[str]:
    """:func:`validate_reviews` against the catalog, opened read-only (a missing catalog is a
    ReviewError, never a new empty file)."""
    from .catalog import CatalogError, connect_readonly

    try:
        catalog = connect_readonly(catalog_db)
    except CatalogError as exc:
        raise ReviewError(source, [str(exc)]) from None
    try:
        return validate_reviews(reviews, catalog)
    finally:
        catalog.close()


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def _store_reviews(reviews: list[Review], catalog_db: str | Path, store_db: str | Path, source: str, cluster_rows: list[tuple] = ()) -> int:
    """Write item reviews (and cluster reviews, rows of :data:`CLUSTER_COLUMNS`) in one store
    transaction, then mirror the store into the catalog."""
    now = _now()
    unique = {r.item_key: r for r in reviews}
    rows = [
        (key, r.image_id, r.region_id, r.line_no, r.status, r.label, r.reviewer, r.reviewed_at or now, source, now)
        for key, r in sorted(unique.items())
    ]
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
    from .catalog import CatalogError, connect_readonly

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
    now = _now()
    row = (key, int(cluster_id), item, status, label if status == "relabeled" else None, cluster_label, reviewer, now, source, now)
    return ClusterReviewResult(key, _store_reviews(reviews, catalog_db, store_db, source, cluster_rows=[row]))


def import_review_csv(csv_path: str | Path, catalog_db: str | Path, store_db: str | Path) -> int:
    """Import a reviewed sheet: all of it or nothing. Format and catalog checks both run, so
    :class:`ReviewError` lists every problem at once."""
    source = f"csv:{Path(csv_path).name}"
    reviews, problems = read_review_csv(csv_path)
    problems += catalog_problems(reviews, catalog_db, str(csv_path))
    if problems:
        raise ReviewError(str(csv_path), sorted(problems, key=_line_order))
    return _store_reviews(reviews, catalog_db, store_db, source)


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
        from .label_studio import import_label_studio

        return import_label_studio(path, catalog_db, store_db)
    return import_review_csv(path, catalog_db, store_db)


def _line_order(problem: str) -> tuple[int, str]:
    head = problem.split(":", 1)[0].split(",", 1)[0]
    return (int(head[5:]) if head.startswith("line ") and head[5:].isdigit() else 0, problem)


def _store_rows(store_db: str | Path, *tables: tuple[str, tuple[str, ...]]) -> tuple[list[tuple], ...]:
    """Every row of each (table, columns) of the store (none when the store does not exist)."""
    if not Path(store_db).exists():
        return tuple([] for _ in tables)
    store = connect_store(store_db)
    try:
        return tuple(store.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall() for table, columns in tables)
    finally:
        store.close()


def read_store(store_db: str | Path) -> tuple[list[tuple], list[tuple]]:
    """Every row of the store's ``reviews`` and ``cluster_reviews`` (none when it does not exist)."""
    return _store_rows(store_db, ("reviews", COLUMNS), ("cluster_reviews", CLUSTER_COLUMNS))


def replace_copies(catalog: sqlite3.Connection, rows: list[tuple], cluster_rows: list[tuple]) -> None:
    """Make the catalog's copies of the store's tables equal the store's (inside the caller's
    transaction), writing only the rows that differ."""
    sync_table(catalog, "reviews", rows)
    sync_table(catalog, "cluster_reviews", cluster_rows)


def read_audit_rows(store_db: str | Path) -> tuple[list[tuple], list[tuple]]:
    """Every row of the store's ``audits`` and ``audit_items`` (none when it does not exist)."""
    return _store_rows(store_db, ("audits", AUDIT_COLUMNS), ("audit_items", AUDIT_ITEM_COLUMNS))


def replace_audit_copies(catalog: sqlite3.Connection, audits: list[tuple], items: list[tuple]) -> None:
    """Make the catalog's copies of the store's audits equal the store's (inside the caller's
    transaction), writing only the rows that differ."""
    for statement in AUDITS_DDL:
        catalog.execute(statement)
    sync_table(catalog, "audits", audits)
    sync_table(catalog, "audit_items", items)


def mirror_reviews(store_db: str | Path, catalog_db: str | Path) -> int:
    """Copy the review store into the catalog's ``reviews`` and ``cluster_reviews`` tables
    (replacing the old copies) and refresh the propagated labels, in one transaction."""
    from .propagation import refresh_propagation

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
