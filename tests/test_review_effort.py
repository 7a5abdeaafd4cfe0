"""The simulated reviewer of bench/review_effort.py on hand-made items: the actions each strategy
counts, the precision it stops at, and the audit sample it shares with the dashboard."""

from __future__ import annotations

import importlib

import pytest

from shardlens.audits import draw_sample

from conftest import REPO


@pytest.fixture()
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    return importlib.import_module("review_effort")


def items(bench) -> list:
    """Cluster 0: 6 right items; cluster 1: 4 items, 2 wrong; 10 unclustered items, 1 wrong (risky)."""
    out = []
    for n in range(6):
        out.append(bench.Item((f"a{n}", None, 0), "text", f"a{n}.png", "OPEN", 0.9, 0.2, 0, True))
    for n in range(4):
        out.append(bench.Item((f"b{n}", 0, None), "region", f"b{n}.png", "dog", 0.5, 0.6, 1, n >= 2))
    for n in range(10):
        out.append(bench.Item((f"c{n}", None, 0), "text", f"c{n}.png", f"t{n}", 0.8, 0.9 if n == 0 else 0.1, -1, n != 0))
    return out


def test_one_by_one_stops_at_the_target(bench):
    its = items(bench)  # 20 items, 3 wrong: precision 0.85
    full = bench.one_by_one(its, bench.file_order(its), 2.0)
    assert (full.actions, full.precision) == (20, 1.0)
    # file order: a0..a5, b0, b1 (wrong), b2, b3, c0 (wrong): all 3 fixed after 11 actions
    r = bench.one_by_one(its, bench.file_order(its), 0.98)
    assert (r.actions, r.precision) == (11, 1.0)
    # 0.9 needs 18 of 20 right: b0 fixed at the 7th action
    r = bench.one_by_one(its, bench.file_order(its), 0.9)
    assert (r.actions, r.precision) == (7, 0.9)
    risky = bench.one_by_one(its, sorted(its, key=lambda i: -i.risk), 0.98)
    assert risky.actions == 3 and risky.precision == 1.0  # c0, then cluster 1's b0 and b1


def test_triage_audits_bulk_accepts_and_reviews_failed_clusters(bench):
    its = items(bench)
    cluster_risk = {0: 0.2, 1: 0.6}
    # audits of 3 pay off only on more than 4 items (shardlens.audits.audit_saves_actions):
    # cluster 0 (6) is audited, cluster 1 (4) is not: its items join the item queue
    r, accepted = bench.triage(its, cluster_risk, 3, 0.98, interleave=True)
    # one queue: c0 (risk 0.9), then cluster 1's items by their own risk 0.6 and key: b0, b1 (the
    # wrong ones): precision 1.0 after 3 actions, cluster 0 never audited
    assert (r.actions, r.precision, accepted) == (3, 1.0, [])
    # audited clusters first: cluster 0 audited (3) and bulk-accepted (1), then c0, b0, b1
    r, accepted = bench.triage(its, cluster_risk, 3, 0.98)
    assert (r.actions, r.precision) == (7, 1.0)
    assert accepted == [{"cluster": 0, "items": 6, "sample": 3, "right": 6}]
    # audits of 1 pay off on more than 2 items: both clusters are audited. Cluster 1's sample is
    # b2, a right item: the bulk accept takes the wrong b0 and b1 along and nothing fixes them, so
    # the reviewer runs out of work at precision 0.9 (18 of 20 right): 2 actions for cluster 1,
    # c0 to c9 (10), cluster 0's audit and bulk accept (2)
    assert draw_sample("region", 1, 1, [i.key for i in its if i.cluster_id == 1], 1) == [("b2", 0, None)]
    r, accepted = bench.triage(its, {1: 0.95}, 1, 0.98, interleave=True)
    assert (r.actions, r.precision) == (14, pytest.approx(0.9))
    assert accepted == [{"cluster": 1, "items": 4, "sample": 1, "right": 2}, {"cluster": 0, "items": 6, "sample": 1, "right": 6}]
    # the bench draws the same sample as the dashboard's first audit of the cluster
    keys = [i.key for i in its if i.cluster_id == 0]
    assert len(draw_sample("text", 0, 1, keys, 3)) == 3 and draw_sample("text", 0, 1, keys, 3) == draw_sample("text", 0, 1, list(reversed(keys)), 3)


def test_a_bulk_accept_fixes_nothing(bench):
    its = [bench.Item((f"x{n}", None, 0), "text", f"x{n}.png", "x", 0.9, 0.1, 0, n != 5) for n in range(20)]
    sample = set(draw_sample("text", 0, 1, [i.key for i in its], 3))
    assert ("x5", None, 0) not in sample, "the wrong item must escape the audit for this test"
    r, accepted = bench.triage(its, {0: 0.1}, 3, 0.999, interleave=True)
    assert r.actions == 4 and r.precision == pytest.approx(0.95) and accepted[0]["right"] == 19


def test_the_calibration_curves_are_maximum_likelihood_fits(monkeypatch):
    """bench/fit_risk_calibration.py, which writes shardlens.risk.CALIBRATION: with a two-valued
    part the maximum-likelihood curve passes through the two observed rates of wrong labels."""
    import numpy as np

    monkeypatch.syspath_prepend(str(REPO / "bench"))
    fit = importlib.import_module("fit_risk_calibration")
    # x = 0: 1 of 2 wrong (logit 0); x = 1: 3 of 4 wrong (logit ln 3)
    a, b = fit.fit_logistic(np.array([0, 0, 1, 1, 1, 1.0]), np.array([0, 1, 0, 1, 1, 1.0]))
    assert (a, b) == pytest.approx((0.0, np.log(3)), abs=1e-9)
    assert fit.fit_logistic(np.array([0.5, 0.5]), np.array([0, 1.0])) is None  # a constant part: no curve
    # a part whose slope comes out < 0 gets no curve (a worse signal must never lower the risk)
    bench = importlib.import_module("review_effort")
    its = [bench.Item((f"i{n}", None, n), "text", "p", "t", 0.5, 0.0, -1, right) for n, right in enumerate([True, False, False, True])]
    parts = {i.key: {"ocr": x} for i, x in zip(its, [0.9, 0.1, 0.2, 0.8])}  # the wrong ones read *higher* confidence
    its.append(bench.Item(("r", 0, None), "region", "p", "dog", 0.5, 0.0, -1, False))
    parts[("r", 0, None)] = {"score": 0.5, "margin": 0.5}
    model = fit.fit(its, parts)
    assert model["text"] == {"prior": 0.5} and model["region"] == {"prior": 1.0}
