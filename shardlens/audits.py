"""Audited cluster accepts, and the precision of accepted labels they estimate.

A cluster can be accepted in one action (:func:`shardlens.reviews.record_cluster_review`) only
after an **audit**: k of its unreviewed items (``reviews.audit_size``, default 5) are drawn at
random and reviewed one by one first, as normal item reviews.

**When an audit is offered** (:func:`audit_saves_actions`, the one place for the rule; the
dashboard and ``bench/review_effort.py`` follow it): only when the cluster has more than k + 1
unreviewed items. An audit and its bulk accept cost k + 1 actions where reviewing the n
unreviewed items one by one costs n, so the expected saving is P(pass) x (n - k - 1), never
positive for n <= k + 1; a failed audit saves nothing (its k reviews are item reviews, the rest
is reviewed item by item). A smaller cluster is reviewed item by item.

- :func:`draw_audit` draws the sample: ``random.Random(seed)`` over the unreviewed member items in
  key order, the seed derived from the cluster (item group and id) and the audit's number, so the
  same catalog and store give the same sample. A cluster has at most one open audit; asking again
  returns it.
- :func:`review_audit_item` stores one sample item's verdict (an item review). A rejected or
  relabeled sample item **fails** the audit at once: the bulk accept is refused; review the
  cluster item by item (or fix what is wrong and draw a new audit).
- :func:`accept_after_audit` accepts the cluster when every sample item was accepted (the audit
  **passes**), and refuses with a one-line reason otherwise.

**Precision estimates** (:func:`precision_estimates`): per cluster, p = accepted sample items /
audited sample items over all its closed audits (failed ones included: they are evidence about
the machine labels too), with a 95 % **Wilson score interval** (z = 1.96; it stays inside [0, 1]
and is sensible for the small samples audits are). Overall: the mean of the estimates of the
accepted clusters (those with a passed audit) **weighted by cluster size** (items when the
audit was drawn); its interval is the same weighted mean of the clusters' Wilson bounds (a
conservative envelope, not a pooled interval).

Audits live in the review store (``audits``, ``audit_items``; schema in
:mod:`shardlens.review_store`), which no workflow rule rewrites, and are mirrored into the catalog
with the reviews.
"""

from __future__ import annotations

import hashlib
import math
import random
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from .catalog_rules import item_key
from .review_store import (
    AUDIT_COLUMNS,
    Review,
    ReviewError,
    connect_store,
)
from .review_writer import mirror_reviews, utc_now
from .reviews import (
    ClusterReviewResult,
    cluster_member_items,
    record_cluster_review,
    record_reviews,
)
from .sqlite_connect import connect_reader

Z95 = 1.959964


@dataclass(frozen=True)
class AuditItem:
    item_key: str
    image_id: str
    region_id: int | None
    line_no: int | None
    machine_label: str | None
    verdict: str | None  # the store's review status of the item (None: not reviewed yet)


@dataclass(frozen=True)
class Audit:
    audit_key: str
    cluster_id: int
    item: str
    audit_no: int
    size: int
    cluster_items: int
    status: str  # open | passed | failed
    items: tuple[AuditItem, ...]

    @property
    def pending(self) -> int:
        return sum(i.verdict is None for i in self.items)

    @property
    def failed_items(self) -> list[AuditItem]:
        return [i for i in self.items if i.verdict in ("rejected", "relabeled")]

    @property
    def can_accept(self) -> bool:
        """Every sample item was accepted (the bulk accept may proceed)."""
        return self.status != "failed" and all(i.verdict == "accepted" for i in self.items)


@dataclass(frozen=True)
class Precision:
    accepted: int
    audited: int
    estimate: float | None
    low: float | None
    high: float | None


def audit_key(item: str, cluster_id: int, audit_no: int) -> str:
    return f"audit/{item}/{cluster_id}/{audit_no}"


def audit_seed(item: str, cluster_id: int, audit_no: int) -> int:
    """The sample's seed: from the cluster and the audit's number only (reproducible draws)."""
    return int.from_bytes(hashlib.sha256(audit_key(item, cluster_id, audit_no).encode()).digest()[:8], "big")


def draw_sample(item: str, cluster_id: int, audit_no: int, unreviewed: list, size: int) -> list:
    """The audit's sample: ``size`` of ``unreviewed`` (sorted first), drawn with
    :func:`audit_seed`'s generator; the whole list when it is shorter. Sorted."""
    pool = sorted(unreviewed)
    return sorted(random.Random(audit_seed(item, cluster_id, audit_no)).sample(pool, min(int(size), len(pool))))


def audit_saves_actions(unreviewed: int, size: int) -> bool:
    """Whether an audit of ``size`` items and a bulk accept (size + 1 actions) can cost fewer
    actions than reviewing the cluster's ``unreviewed`` items one by one: unreviewed > size + 1."""
    return int(unreviewed) > int(size) + 1


def wilson(accepted: int, audited: int, z: float = Z95) -> tuple[float | None, float | None]:
    """The Wilson score interval of a proportion (None, None without observations)."""
    if audited == 0:
        return None, None
    p = accepted / audited
    denom = 1 + z * z / audited
    centre = (p + z * z / (2 * audited)) / denom
    half = z * math.sqrt(p * (1 - p) / audited + z * z / (4 * audited * audited)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _precision(accepted: int, audited: int) -> Precision:
    low, high = wilson(accepted, audited)
    return Precision(accepted, audited, accepted / audited if audited else None, low, high)


def _cluster(catalog_db: str | Path, cluster_id: int, source: str) -> tuple[str, list[tuple]]:
    """(item group, member items) of a real cluster; ReviewError otherwise."""
    from .catalog import CatalogError, connect_readonly

    try:
        catalog = connect_readonly(catalog_db)
    except CatalogError as exc:
        raise ReviewError(source, [str(exc)]) from None
    try:
        found = catalog.execute("SELECT item FROM clusters WHERE cluster_id = ?", (int(cluster_id),)).fetchone()
        if found is None or int(cluster_id) < 0 or found[0] is None:
            raise ReviewError(source, [f"cluster {cluster_id}: no cluster to audit; review its items one by one"])
        return found[0], cluster_member_items(catalog, cluster_id, found[0])
    finally:
        catalog.close()


def _load(store: sqlite3.Connection, key: str, labels: dict[str, str | None] | None = None) -> Audit | None:
    row = store.execute(f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audits WHERE audit_key = ?", (key,)).fetchone()
    if row is None:
        return None
    a = dict(zip(AUDIT_COLUMNS, row))
    items = []
    for k, image_id, region_id, line_no in store.execute(
        "SELECT item_key, image_id, region_id, line_no FROM audit_items WHERE audit_key = ? ORDER BY item_key", (key,)
    ):
        verdict = store.execute("SELECT status FROM reviews WHERE item_key = ?", (k,)).fetchone()
        items.append(AuditItem(k, image_id, region_id, line_no, (labels or {}).get(k), verdict[0] if verdict else None))
    return Audit(key, a["cluster_id"], a["item"], a["audit_no"], a["size"], a["cluster_items"], a["status"], tuple(items))


def open_audit(store_db: str | Path, item: str, cluster_id: int) -> Audit | None:
    """The cluster's open audit, if any (with the store's current verdicts)."""
    if not Path(store_db).exists():
        return None
    store = connect_store(store_db)
    try:
        row = store.execute("SELECT audit_key FROM audits WHERE item = ? AND cluster_id = ? AND status = 'open'", (item, int(cluster_id))).fetchone()
        return _load(store, row[0]) if row else None
    finally:
        store.close()


def draw_audit(
    catalog_db: str | Path, store_db: str | Path, cluster_id: int, size: int | None = None, reviewer: str | None = None, source: str = "api"
) -> Audit:
    """Draw (or return the open) audit of a cluster: ``size`` (default ``reviews.audit_size``)
    of its unreviewed items at random, seeded by :func:`audit_seed`. Refused (ReviewError) when
    the cluster has no more than size + 1 unreviewed items (:func:`audit_saves_actions`)."""
    if size is None:
        from .config import schema_default

        size = schema_default("reviews", "audit_size")
    if int(size) < 1:
        raise ReviewError(source, [f"cluster {cluster_id}: an audit needs at least one item (reviews.audit_size is {size})"])
    item, members = _cluster(catalog_db, cluster_id, source)
    labels = {item_key(i, r, n): machine for i, r, n, machine, _ in members}
    existing = open_audit(store_db, item, cluster_id)
    if existing is not None:
        return _with_labels(existing, labels)
    unreviewed = [(i, r, n) for i, r, n, _, reviewed in members if reviewed is None]
    if not unreviewed:
        raise ReviewError(source, [f"cluster {cluster_id}: every item is reviewed already; nothing to audit"])
    if not audit_saves_actions(len(unreviewed), size):
        why = (
            f"cluster {cluster_id}: {len(unreviewed)} unreviewed item(s); an audit of {int(size)} and the bulk accept would cost "
            f"{int(size) + 1} actions, no fewer than reviewing them: review its items one by one"
        )
        raise ReviewError(source, [why])
    store = connect_store(store_db)
    try:
        store.execute("BEGIN IMMEDIATE")
        number = store.execute("SELECT COALESCE(MAX(audit_no), 0) + 1 FROM audits WHERE item = ? AND cluster_id = ?", (item, int(cluster_id))).fetchone()[0]
        key = audit_key(item, int(cluster_id), number)
        sample = draw_sample(item, int(cluster_id), number, unreviewed, size)
        store.execute(
            "INSERT INTO audits (audit_key, cluster_id, item, audit_no, size, cluster_items, status, reviewer, drawn_at) VALUES (?, ?, ?, ?, ?, ?, 'open', ?, ?)",
            (key, int(cluster_id), item, number, int(size), len(members), reviewer, utc_now()),
        )
        store.executemany("INSERT INTO audit_items VALUES (?, ?, ?, ?, ?)", [(key, item_key(i, r, n), i, r, n) for i, r, n in sample])
        store.execute("COMMIT")
        audit = _load(store, key, labels)
    except BaseException:
        if store.in_transaction:
            store.execute("ROLLBACK")
        raise
    finally:
        store.close()
    mirror_reviews(store_db, catalog_db)
    return audit


def _with_labels(audit: Audit, labels: dict[str, str | None]) -> Audit:
    items = tuple(AuditItem(i.item_key, i.image_id, i.region_id, i.line_no, labels.get(i.item_key), i.verdict) for i in audit.items)
    return Audit(audit.audit_key, audit.cluster_id, audit.item, audit.audit_no, audit.size, audit.cluster_items, audit.status, items)


def _close(store_db: str | Path, audit: Audit, status: str) -> None:
    accepted = sum(i.verdict == "accepted" for i in audit.items)
    audited = sum(i.verdict is not None for i in audit.items)
    store = connect_store(store_db)
    try:
        store.execute(
            "UPDATE audits SET status = ?, accepted = ?, audited = ?, closed_at = COALESCE(closed_at, ?) WHERE audit_key = ? AND status IN ('open', ?)",
            (status, accepted, audited, utc_now(), audit.audit_key, status),
        )
    finally:
        store.close()


def get_audit(store_db: str | Path, key: str) -> Audit:
    store = connect_store(store_db)
    try:
        audit = _load(store, key)
    finally:
        store.close()
    if audit is None:
        raise ReviewError("audit", [f"{key}: no such audit"])
    return audit


def review_audit_item(
    catalog_db: str | Path, store_db: str | Path, key: str, item: str, status: str, label: str | None = None, reviewer: str | None = None, source: str = "api"
) -> Audit:
    """Store one sample item's verdict (a normal item review); a rejected or relabeled item fails
    the open audit at once (the verdicts given after that still count in its figures). Returns
    the audit as it is now."""
    if status == "relabeled" and not (label or "").strip():
        raise ReviewError(source, [f"{key}: relabeling {item} needs its new label"])
    audit = get_audit(store_db, key)
    found = next((i for i in audit.items if i.item_key == item), None)
    if found is None:
        raise ReviewError(source, [f"{key}: {item} is not in the audit's sample"])
    if status == "accepted" and label is None:
        catalog = connect_reader(catalog_db)
        try:
            row = catalog.execute(
                "SELECT machine_label FROM item_annotations WHERE image_id = ? AND region_id IS ? AND line_no IS ?",
                (found.image_id, found.region_id, found.line_no),
            ).fetchone()
        finally:
            catalog.close()
        label = row[0] if row else None
    record_reviews([Review(found.image_id, found.region_id, found.line_no, status, label, reviewer)], catalog_db, store_db, source)
    audit = get_audit(store_db, key)
    if audit.status == "failed" or audit.failed_items:  # a failed audit's later verdicts count too
        _close(store_db, audit, "failed")
        mirror_reviews(store_db, catalog_db)
        audit = get_audit(store_db, key)
    return audit


def accept_after_audit(catalog_db: str | Path, store_db: str | Path, key: str, reviewer: str | None = None, source: str = "api") -> ClusterReviewResult:
    """Accept the audited cluster in one action, when every sample item was accepted; otherwise
    refuse (ReviewError, one line saying why; a rejected item fails the audit)."""
    audit = get_audit(store_db, key)
    where = f"cluster {audit.cluster_id}"
    if audit.status == "passed":
        raise ReviewError(source, [f"{where}: this audit has already accepted the cluster"])
    bad = audit.failed_items
    if bad or audit.status == "failed":
        if audit.status == "open":
            _close(store_db, audit, "failed")
            mirror_reviews(store_db, catalog_db)
        what = f"{len(bad)} of {len(audit.items)} sample items were rejected or relabeled" if bad else "the audit failed"
        raise ReviewError(source, [f"{where}: bulk accept refused: {what}; review the cluster item by item, or draw a new audit"])
    if audit.pending:
        raise ReviewError(source, [f"{where}: bulk accept refused: {audit.pending} of {len(audit.items)} sample items are not reviewed yet"])
    result = record_cluster_review(catalog_db, store_db, audit.cluster_id, "accepted", reviewer=reviewer, source=source)
    _close(store_db, audit, "passed")
    mirror_reviews(store_db, catalog_db)
    return result


def precision_estimates(conn: sqlite3.Connection) -> tuple[dict[tuple[str, int], Precision], Precision | None]:
    """(per cluster (item, cluster_id): its estimate over its closed audits; overall: the
    size-weighted estimate over accepted clusters, None when none is). ``conn``: the store or
    the catalog (its copy); a database without audits gives ({}, None)."""
    try:
        rows = conn.execute(
            "SELECT item, cluster_id, SUM(accepted), SUM(audited), MAX(CASE WHEN status = 'passed' THEN cluster_items END) "
            "FROM audits WHERE status != 'open' GROUP BY item, cluster_id ORDER BY item, cluster_id"
        ).fetchall()
    except sqlite3.OperationalError:  # no audits table (a catalog or store written before audits)
        return {}, None
    per = {(item, cid): _precision(int(acc), int(aud)) for item, cid, acc, aud, _ in rows}
    accepted = [(per[item, cid], weight) for item, cid, _, _, weight in rows if weight is not None and per[item, cid].audited > 0]
    total = sum(w for _, w in accepted)
    if not total:
        return per, None

    def mean(values) -> float:
        return sum(v * w for v, (_, w) in zip(values, accepted)) / total

    overall = Precision(
        sum(p.accepted for p, _ in accepted), sum(p.audited for p, _ in accepted),
        mean(p.estimate for p, _ in accepted), mean(p.low for p, _ in accepted), mean(p.high for p, _ in accepted),
    )  # fmt: skip
    return per, overall
