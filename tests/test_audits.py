"""Audited cluster accepts (shardlens/audits.py) on a real catalog built by the real importer
from a synthetic cache (tests/test_propagation.py's ``write_cache``): reproducible samples, a
rejected sample item blocking the bulk accept, a passing audit accepting the cluster, and the
precision estimates with their Wilson intervals."""

from __future__ import annotations

import random
import sqlite3

import pytest
from test_propagation import image_id, write_cache

from shardlens.audits import (
    accept_after_audit,
    audit_saves_actions,
    audit_seed,
    draw_audit,
    open_audit,
    precision_estimates,
    review_audit_item,
    wilson,
)
from shardlens.catalog import build_catalog
from shardlens.review_store import ReviewError, connect_store

QUIET = {"log": lambda message: None}


@pytest.fixture()
def run(tmp_path):
    """Cluster 0: 12 OCR lines 'OPEN ...'; cluster 1: 6 'EXIT' lines; one line unclustered."""
    images = {f"open{n:02d}.png": {"lines": [f"OPEN {n % 3}"]} for n in range(12)}
    images |= {f"exit{n}.png": {"lines": ["EXIT"]} for n in range(6)}
    images["lone.png"] = {"lines": ["lonely"]}
    cache = write_cache(tmp_path / "cache", images, [(0, "text", ["OPEN 0", "OPEN 1", "OPEN 2"]), (1, "text", ["EXIT"])], {})
    db, store = tmp_path / "results" / "annotations.sqlite", tmp_path / "reviews" / "reviews.sqlite"
    build_catalog(cache, db, reviews_db=store, **QUIET)
    return {"db": db, "store": store, "tmp": tmp_path}


def unreviewed_keys(db, store, cluster_id: int) -> list[str]:
    conn = sqlite3.connect(db)
    keys = [k for (k,) in conn.execute(
        "SELECT o.image_id || '/line/' || o.line_no FROM ocr_lines o JOIN cluster_members m ON m.item = 'text' AND m.text = o.text "
        "WHERE m.cluster_id = ? AND NOT EXISTS (SELECT 1 FROM reviews v WHERE v.item_key = o.image_id || '/line/' || o.line_no)", (cluster_id,))]  # fmt: skip
    conn.close()
    return sorted(keys)


def test_the_sample_is_seeded_by_cluster_and_audit_number(run, tmp_path):
    expected_pool = unreviewed_keys(run["db"], run["store"], 0)
    assert len(expected_pool) == 12
    audit = draw_audit(run["db"], run["store"], 0, size=5)
    assert (audit.audit_no, audit.size, audit.cluster_items, audit.status) == (1, 5, 12, "open")
    rng = random.Random(audit_seed("text", 0, 1))
    assert [i.item_key for i in audit.items] == sorted(rng.sample(expected_pool, 5))
    assert all(i.verdict is None and i.machine_label.startswith("OPEN ") for i in audit.items)
    # asking again returns the open audit, not a new draw
    assert draw_audit(run["db"], run["store"], 0, size=5) == audit
    assert open_audit(run["store"], "text", 0).audit_key == audit.audit_key
    # the default size is reviews.audit_size (5): cluster 1's 6 items are too few for an audit to
    # save actions (5 + 1 = 6), so it is refused; an audit of 4 draws 4 of the 6
    with pytest.raises(ReviewError, match=r"cluster 1: 6 unreviewed item\(s\); an audit of 5 and the bulk accept would cost 6 actions"):
        draw_audit(run["db"], run["store"], 1)
    assert open_audit(run["store"], "text", 1) is None
    small = draw_audit(run["db"], run["store"], 1, size=4)
    assert len(small.items) == 4 and small.cluster_items == 6
    with pytest.raises(ReviewError, match="no cluster to audit"):
        draw_audit(run["db"], run["store"], -1)


def test_a_rejected_sample_item_blocks_the_bulk_accept(run):
    db, store = run["db"], run["store"]
    audit = draw_audit(db, store, 0, size=5)
    with pytest.raises(ReviewError, match="5 of 5 sample items are not reviewed yet"):
        accept_after_audit(db, store, audit.audit_key)
    first, *rest = audit.items
    for item in rest:
        audit = review_audit_item(db, store, audit.audit_key, item.item_key, "accepted", reviewer="ann")
    assert audit.status == "open" and audit.pending == 1
    audit = review_audit_item(db, store, audit.audit_key, first.item_key, "rejected", reviewer="ann")
    assert audit.status == "failed" and not audit.can_accept
    with pytest.raises(ReviewError, match=r"bulk accept refused: 1 of 5 sample items were rejected or relabeled"):
        accept_after_audit(db, store, audit.audit_key)
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM cluster_reviews").fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM reviews").fetchone()[0] == 5  # only the sample's own reviews
    assert conn.execute("SELECT status, accepted, audited FROM audits").fetchall() == [("failed", 4, 5)]  # mirrored
    conn.close()
    # the failed cluster's precision: 4 of 5, not an accepted cluster
    per, overall = precision_estimates(connect_store(store))
    assert per[("text", 0)].estimate == pytest.approx(0.8) and overall is None


def test_a_passing_audit_accepts_the_cluster_and_estimates_precision(run):
    db, store = run["db"], run["store"]
    failed = draw_audit(db, store, 0, size=5)
    for n, item in enumerate(failed.items):
        review_audit_item(db, store, failed.audit_key, item.item_key, "rejected" if n == 0 else "accepted")
    second = draw_audit(db, store, 0, size=5)
    assert second.audit_no == 2 and not {i.item_key for i in second.items} & {i.item_key for i in failed.items}
    for item in second.items:
        second = review_audit_item(db, store, second.audit_key, item.item_key, "accepted")
    assert second.can_accept
    result = accept_after_audit(db, store, second.audit_key, reviewer="ann")
    assert result.review_key == "cluster/text/0" and result.items == 2  # the 2 items no audit drew
    with pytest.raises(ReviewError, match="already accepted"):
        accept_after_audit(db, store, second.audit_key)
    exit_audit = draw_audit(db, store, 1, size=3)
    for item in exit_audit.items:
        review_audit_item(db, store, exit_audit.audit_key, item.item_key, "accepted")
    accept_after_audit(db, store, exit_audit.audit_key)

    conn = sqlite3.connect(db)
    assert conn.execute("SELECT review_key, status FROM cluster_reviews ORDER BY review_key").fetchall() == [
        ("cluster/text/0", "accepted"),
        ("cluster/text/1", "accepted"),
    ]
    statuses = dict(conn.execute("SELECT image_id, review_status FROM final_annotations"))
    assert statuses[image_id("lone.png")] is None
    assert sum(s == "accepted" for s in statuses.values()) == 17  # every member but the one rejected
    per, overall = precision_estimates(conn)  # from the catalog's copy
    conn.close()
    store_per, store_overall = precision_estimates(connect_store(store))
    assert (per, overall) == (store_per, store_overall)
    # cluster 0: 4 + 5 accepted of 10 audited; cluster 1: 3 of 3
    assert (per[("text", 0)].accepted, per[("text", 0)].audited) == (9, 10)
    assert per[("text", 0)].estimate == pytest.approx(0.9)
    assert (per[("text", 0)].low, per[("text", 0)].high) == pytest.approx((0.59585, 0.98212), abs=1e-5)
    assert per[("text", 1)].estimate == 1.0 and per[("text", 1)].low == pytest.approx(wilson(3, 3)[0])
    # overall: weighted by cluster size (12 and 6 items)
    assert overall.estimate == pytest.approx((0.9 * 12 + 1.0 * 6) / 18)
    assert overall.low == pytest.approx((wilson(9, 10)[0] * 12 + wilson(3, 3)[0] * 6) / 18)
    assert (overall.accepted, overall.audited) == (12, 13)


def test_an_audit_is_offered_only_where_it_can_save_actions():
    # an audit of k and a bulk accept cost k + 1 actions; reviewing n items one by one costs n
    assert [n for n in range(10) if audit_saves_actions(n, 5)] == [7, 8, 9]
    assert not audit_saves_actions(4, 3) and audit_saves_actions(5, 3)
    assert not audit_saves_actions(2, 1) and audit_saves_actions(3, 1)


def test_a_cluster_reviewed_down_to_k_plus_one_items_is_no_longer_audited(run):
    db, store = run["db"], run["store"]
    first = draw_audit(db, store, 0, size=5)  # 12 unreviewed
    for n, item in enumerate(first.items):
        review_audit_item(db, store, first.audit_key, item.item_key, "rejected" if n == 0 else "accepted")
    assert len(unreviewed_keys(db, store, 0)) == 7
    second = draw_audit(db, store, 0, size=5)  # 7 > 6: still worth an audit
    for item in second.items:
        review_audit_item(db, store, second.audit_key, item.item_key, "rejected")
    assert len(unreviewed_keys(db, store, 0)) == 2
    with pytest.raises(ReviewError, match=r"cluster 0: 2 unreviewed item\(s\).*review its items one by one"):
        draw_audit(db, store, 0, size=1)  # 2 = 1 + 1: no saving either


def test_wilson_interval_values():
    assert wilson(0, 0) == (None, None)
    assert wilson(9, 10) == pytest.approx((0.595850, 0.982124), abs=1e-6)
    assert wilson(5, 5) == pytest.approx((0.565518, 1.0), abs=1e-6)
    assert wilson(0, 3) == pytest.approx((0.0, 0.561497), abs=1e-6)
