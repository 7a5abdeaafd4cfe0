"""Risk scores (shardlens/risk.py): the formula's values (calibrated parts in log-odds), its monotonicity, and the catalog's
``item_risk`` / ``cluster_risk`` against the formula recomputed from a real run's cache."""

from __future__ import annotations

import base64
import json
import math
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from shardlens.catalog import import_cache
from shardlens.reviews import item_key
from shardlens.risk import CALIBRATION, cluster_components, item_risk, line_components, region_components


def region(score: float, labels: list[tuple[str, float, str]]) -> dict:
    return {"score": score, "labels": [{"label": l, "score": s, "source": src} for l, s, src in labels]}


def test_component_values():
    assert region_components(region(0.8, [("dog", 0.8, "detector"), ("cat", 0.3, "detector")])) == pytest.approx(
        {"score": 0.2, "margin": 0.5, "disagreement": 0.0}
    )
    # a lone candidate: top-2 is 0
    assert region_components(region(0.9, [("dog", 0.9, "detector")]))["margin"] == pytest.approx(0.1)
    # the classifier votes 0.6 for another class than the detector's 0.8: disagreement 0.75
    assert region_components(region(0.8, [("dog", 0.8, "detector"), ("cat", 0.6, "classifier")]))["disagreement"] == pytest.approx(0.75)
    assert line_components({"confidence": 0.93}) == pytest.approx({"ocr": 0.07})
    assert cluster_components(0.9, 0.3, 0.95) == pytest.approx({"exemplar": 0.1, "outlier": 0.3})  # the outlier score itself
    assert cluster_components(0.9, None, 0.75) == pytest.approx({"exemplar": 0.1, "outlier": 0.25})  # no score (an older file): 1 - probability
    assert cluster_components(None, 1.0) == {"exemplar": 1.0, "outlier": 1.0}  # a name without embedding
    assert cluster_components(-0.2, 0.0) == {"exemplar": 1.0, "outlier": 0.0}  # clipped to [0, 1]


def test_the_risk_combines_calibrated_parts_in_log_odds():
    # one curve: logit(risk) = a + b x; prior 0.5 (logit 0): sigmoid(2 * 0.5)
    one = {"region": {"prior": 0.5, "score": (0.0, 2.0)}}
    assert item_risk("region", {"score": 0.5, "margin": 0.9}, one) == pytest.approx(0.7310585786)  # margin has no curve: no evidence
    assert item_risk("region", {}, one) == pytest.approx(0.5)  # no part: the base rate
    # two parts: each adds its log-odds over the prior, logit 0.2 = -1.386294
    two = {"region": {"prior": 0.2, "score": (-1.386294, 0.0), "margin": (0.0, 1.0)}}
    assert item_risk("region", {"score": 0.7, "margin": 0.5}, two) == pytest.approx(1 / (1 + math.exp(-(-1.386294 + 0.0 + 0.5 + 1.386294))))
    # the shipped curves (CALIBRATION, bench/fit_risk_calibration.py)
    assert item_risk("text", {"ocr": 0.0}) == pytest.approx(0.0225701, abs=1e-6)
    assert item_risk("text", {"ocr": 0.3}) == pytest.approx(0.9259692, abs=1e-6)
    assert item_risk("region", {"score": 0.5, "margin": 0.6}) == pytest.approx(0.3196070, abs=1e-6)
    assert item_risk("region", {}) == pytest.approx(CALIBRATION["region"]["prior"])
    # not in the risk: disagreement (no curve) and the cluster parts
    base = item_risk("region", {"score": 0.2, "margin": 0.5})
    assert item_risk("region", {"score": 0.2, "margin": 0.5, "disagreement": 0.9, "exemplar": 1.0, "outlier": 1.0}) == base
    assert all(b > 0 for model in CALIBRATION.values() for name, v in model.items() if name != "prior" for b in v[1:])


def test_risk_never_falls_when_a_signal_gets_worse():
    def risk(score=0.8, second=0.3, other_source=None, cosine=0.9, outlier=0.1) -> float:
        labels = [("dog", 0.8, "detector"), ("cat", second, "detector")]
        if other_source is not None:
            labels.append(("wolf", other_source, "classifier"))
        return item_risk("region", {**region_components(region(score, labels)), **cluster_components(cosine, outlier)})

    base = risk()
    assert risk(score=0.5) > base
    assert risk(second=0.7) > base  # smaller margin
    # no evidence on the quality set: the classifier's vote and the cluster parts leave it as it is
    assert risk(other_source=0.2) == risk(cosine=0.5) == risk(outlier=0.6) == base
    scores = [risk(score=s) for s in np.linspace(1.0, 0.0, 11)]
    assert scores == sorted(scores) and scores[0] < scores[-1]
    texts = [item_risk("text", {**line_components({"confidence": c}), **cluster_components(0.9, 0.1)}) for c in np.linspace(1.0, 0.0, 11)]
    assert texts == sorted(texts) and texts[0] < texts[-1]


def records(folder: Path, pattern: str = "*.jsonl") -> list[dict]:
    return [json.loads(line) for path in sorted(folder.glob(pattern)) for line in path.read_text().splitlines() if line.strip()]


def vectors(cache: Path) -> dict[tuple[str, str], np.ndarray]:
    out = {}
    for r in records(cache / "embed"):
        item = "text" if r["kind"] == "ocr" else "region"
        out.setdefault((item, r["text"]), np.frombuffer(base64.b64decode(r["vector"]), dtype="<f4"))
    return out


@pytest.mark.slow
def test_catalog_risk_is_the_formula_on_the_run(demo_run, tmp_path):
    """Every item's risk in the catalog equals the formula on its cache record, its cluster's
    name and its member's outlier score (the outlier part is that score); each cluster's risk is
    its items' mean."""
    cache = demo_run / "cache"
    db = tmp_path / "catalog.sqlite"
    stats = import_cache(cache, db, log=lambda m: None)
    assert stats["risk"]["texts"] > 0
    conn = sqlite3.connect(db)
    members = {(i, t): (c, s) for i, t, c, s in conn.execute("SELECT item, text, cluster_id, outlier_score FROM cluster_members")}
    assert members and all(s is not None and 0.0 <= s <= 1.0 for _, s in members.values())
    in_file = {(m["item"], m["text"]): m["outlier_score"] for r in records(cache, "clusters.jsonl") for m in r["members"]}
    assert {k: s for k, (_, s) in members.items()} == in_file
    names = {c: (i, n) for c, i, n in conn.execute("SELECT cluster_id, item, label FROM clusters WHERE cluster_id >= 0")}
    vec = vectors(cache)
    expected: dict[str, tuple[int, float]] = {}
    parts: dict[str, dict[str, float]] = {}
    for item, recs in (("region", records(cache / "regions")), ("text", records(cache / "ocr"))):
        for r in recs:
            own = region_components(r) if item == "region" else line_components(r)
            text = r["caption"] if item == "region" else r["text"]
            cluster, score = members.get((item, text), (-1, None))
            key = item_key(r["image_id"], r.get("region_id") if item == "region" else None, r.get("line_no") if item == "text" else None)
            expected[key] = (cluster, item_risk(item, own))
            if cluster >= 0:  # the cluster parts are shown, not part of the risk
                parts[key] = cluster_components(float(vec[item, text] @ vec[item, names[cluster][1]]), score)
    got = {k: (c, r) for k, c, r in conn.execute("SELECT item_key, cluster_id, risk FROM item_risk")}
    shown = {k: {"exemplar": e, "outlier": o} for k, e, o in conn.execute("SELECT item_key, exemplar, outlier FROM item_risk WHERE cluster_id >= 0")}
    assert shown.keys() == parts.keys() and all(shown[k] == pytest.approx(parts[k], abs=1e-5) for k in parts)
    assert got.keys() == expected.keys()
    assert {k: c for k, (c, _) in got.items()} == {k: c for k, (c, _) in expected.items()}
    assert [got[k][1] for k in sorted(got)] == pytest.approx([expected[k][1] for k in sorted(expected)], abs=1e-5)
    # the outlier part is the member's stored score
    parts = conn.execute(
        "SELECT r.outlier, m.outlier_score FROM item_risk r JOIN cluster_members m ON m.item = r.item AND m.text = r.text WHERE r.cluster_id >= 0"
    ).fetchall()
    assert parts and all(part == pytest.approx(score, abs=1e-6) for part, score in parts)
    clustered = [c for c, _ in expected.values() if c >= 0]
    assert clustered, "the demo run clusters nothing"
    for cluster_id, items, risk in conn.execute("SELECT cluster_id, items, risk FROM cluster_risk"):
        mine = [r for c, r in expected.values() if c == cluster_id]
        assert items == len(mine) and risk == pytest.approx(sum(mine) / len(mine), abs=1e-5)
    assert {c for (c,) in conn.execute("SELECT cluster_id FROM cluster_risk")} == set(clustered)
    before = conn.execute("SELECT * FROM text_risk ORDER BY item, text").fetchall()
    conn.close()
    # an import that changes no cluster computes no text part again, and keeps the same figures
    again = import_cache(cache, db, log=lambda m: None)
    assert again["mode"] == "incremental" and again["risk"]["texts"] == 0
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT * FROM text_risk ORDER BY item, text").fetchall() == before
    conn.close()


def test_a_removed_shard_takes_its_signals_along(small_catalog, tmp_path):
    run = shutil.copytree(small_catalog.parent.parent, tmp_path / "run")
    db = run / "results" / "annotations.sqlite"
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM item_risk").fetchone()[0] == conn.execute("SELECT COUNT(*) FROM item_annotations").fetchone()[0] > 0
    # small_catalog has no clusters: every item is unclustered, its risk the formula on its own parts
    assert conn.execute("SELECT COUNT(*) FROM item_risk WHERE cluster_id != -1 OR exemplar IS NOT NULL OR outlier IS NOT NULL").fetchone()[0] == 0
    rows = conn.execute("SELECT item, score_risk, margin_risk, disagreement, ocr_risk, risk FROM item_risk").fetchall()
    assert {item for item, *_ in rows} == {"region", "text"}
    for item, score, margin, disagreement, ocr, risk in rows:
        own = {"score": score, "margin": margin, "disagreement": disagreement} if item == "region" else {"ocr": ocr}
        assert risk == pytest.approx(item_risk(item, own), abs=1e-6)
    shard = conn.execute("SELECT shard FROM item_signals ORDER BY shard LIMIT 1").fetchone()[0]
    conn.close()
    manifest = json.loads((run / "cache" / "manifest.json").read_text())
    del manifest["shards"][shard]
    (run / "cache" / "manifest.json").write_text(json.dumps(manifest))
    stats = import_cache(run / "cache", db, log=lambda m: None)
    assert stats["removed"] == [shard]
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM item_signals WHERE shard = ?", (shard,)).fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM item_risk").fetchone()[0] == conn.execute("SELECT COUNT(*) FROM item_annotations").fetchone()[0]
    conn.close()


@pytest.mark.slow
def test_a_cache_written_before_outlier_scores_loads_with_the_probability_as_outlier_part(demo_run, tmp_path):
    """A cache of the release before outlier scores (its schema hash, clusters without
    ``outlier_score``) is read through its adapter: the members load with a NULL score, and
    their outlier part is 1 - membership probability, as it was then."""
    from shardlens.adapters.pre_outlier_scores import PRE_OUTLIER_SCORES_SCHEMA_HASH
    from shardlens.records import file_digest

    cache = shutil.copytree(demo_run / "cache", tmp_path / "cache")
    clusters = records(cache, "clusters.jsonl")
    for record in clusters:
        for member in record["members"]:
            del member["outlier_score"]
    (cache / "clusters.jsonl").write_text("".join(json.dumps(r) + "\n" for r in clusters))
    manifest = json.loads((cache / "manifest.json").read_text())
    sha, lines = file_digest(cache / "clusters.jsonl")
    manifest["aggregates"]["clusters"].update(sha256=sha, records=lines)
    manifest["schema_hash"] = PRE_OUTLIER_SCORES_SCHEMA_HASH
    (cache / "manifest.json").write_text(json.dumps(manifest))
    db = tmp_path / "catalog.sqlite"
    stats = import_cache(cache, db, log=lambda m: None)
    assert stats["mode"] == "new" and stats["risk"]["texts"] > 0
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*), COUNT(outlier_score) FROM cluster_members").fetchone()[1] == 0
    parts = conn.execute(
        "SELECT r.outlier, m.probability FROM item_risk r JOIN cluster_members m ON m.item = r.item AND m.text = r.text WHERE r.cluster_id >= 0"
    ).fetchall()
    conn.close()
    assert parts and all(part == pytest.approx(1.0 - probability, abs=1e-6) for part, probability in parts)
