"""Risk scores: how likely a machine label is wrong, from signals the workflow already has.

Every item (a region or an OCR line) gets a risk in [0, 1]; every cluster the mean risk of its
items. The review dashboard opens on the riskiest clusters, and ``bench/review_effort.py``
orders its triage by them.

**Signals** (each turned into a component in [0, 1], higher = riskier):

=================  ============  ===========================================================
component          items         value
=================  ============  ===========================================================
``score``          regions       1 - the detector's score of the region
``margin``         regions       1 - (top-1 - top-2 candidate score); a lone candidate has
                                 top-2 = 0
``disagreement``   regions       when the candidates come from both the detector and the crop
                                 classifier: the other source's best candidate score / the
                                 top candidate's score (candidates are one per class, so the
                                 other source's best is a *different* class: a strong vote for
                                 another class is disagreement); 0 with one source
``ocr``            OCR lines     1 - the recogniser's confidence
``exemplar``       clustered     1 - cosine(item text, the cluster's name text), clipped to
                                 [0, 1]
``outlier``        clustered     the member's outlier score: HDBSCAN's GLOSH (``outlier_scores_``
                                 for a fitted text; for an assigned one the score of a new
                                 point against the fit, :mod:`shardlens.cluster_state`); for a
                                 clusters file written before outlier scores, 1 - membership
                                 probability
=================  ============  ===========================================================

The outlier part was 1 - membership probability until GLOSH replaced it: the probability is
relative to the densest point of the member's *cluster*, and an assigned member's was its cosine
similarity to its nearest fitted member, a different scale; GLOSH is one density-based measure for
both (BENCHMARKS.md, "Review effort", gives both runs).

**Formula**: an item's risk is an estimate of the probability that its machine label is wrong,
from its **own** parts (those that speak about the label itself: ``score`` and ``margin`` for a
region, ``ocr`` for a line), each turned into a calibrated probability and the probabilities
combined in log-odds:

    p_c = sigmoid(a_c + b_c * x_c)          (the part's calibration curve, per item kind)
    logit(risk) = logit(prior) + sum_c (logit(p_c) - logit(prior))

``prior`` is the kind's base rate of wrong labels; each part adds the evidence it carries over the
prior (Bayes' rule with the parts independent given right/wrong). Why this and not the plain mean
used before: the parts are on different scales (a wrong OCR line reads 1 - confidence 0.3, a
right region 1 - score 0.5), and averaging diluted the strongest part with weak ones; a part
without evidence (p_c = prior) adds nothing here instead of pulling the risk towards its own
value. The curves (``CALIBRATION``) were fitted on the quality set by
``bench/fit_risk_calibration.py`` (maximum likelihood, one curve per part; ADR 0011 gives the
values and the held-out check); every slope b_c is > 0, so a worse signal never lowers the risk.
They describe the default detector and OCR models: other models keep the order within a kind
but their items' probabilities are only approximate.

Not in the risk: ``disagreement`` (0 on the quality set, which has no crop classifier: nothing
to calibrate it on) and the cluster parts ``exemplar`` and ``outlier``. Those measure how well
an item fits its *cluster*, not whether its own label is right (a bulk accept accepts each
item's own label); measured on the quality set they carry no evidence about it on regions (area
under the ROC curve 0.51 and 0.50). They are kept and shown in ``item_risk``.

An unclustered item has the same risk as a clustered one with the same parts.

**Cluster risk**: the mean risk of the cluster's items (every occurrence, not every distinct
text): the expected share of wrong labels among items an audit draws.

**Where it is computed** (the catalog stays incremental, see :mod:`shardlens.catalog`):

- ``item_signals`` (per shard, written with the shard's rows at import): the item's own
  components and its ``risk``;
- ``text_risk`` (per distinct clustered text, written in the aggregate refresh): exemplar and
  outlier; recomputed only when the clusters' file changed (``risk_state`` records which one
  it was computed from), and then only the rows whose cluster, outlier score, probability or
  cluster name changed, so an import that changes no cluster decodes no vector;
- ``cluster_risk`` (per cluster, refreshed on every import: one GROUP BY);
- view ``item_risk``: item_signals joined with text_risk and the risk itself.
"""

from __future__ import annotations

import base64
import json
import math
import sqlite3

import numpy as np

from .catalog_rules import item_key
from .table_sync import sync_table

REGION_COMPONENTS = ("score", "margin", "disagreement", "exemplar", "outlier")
TEXT_COMPONENTS = ("ocr", "exemplar", "outlier")

# The parts with a calibration curve, per item kind, and the curves: {"prior": base rate of wrong
# labels, part: (a, b) of P(wrong | part x) = sigmoid(a + b x)}. Written by
# bench/fit_risk_calibration.py (fitted on all 96 images of tests/quality, default models); see
# the module's docstring and ADR 0011 (values, and the figures held out by image).
CALIBRATED_PARTS = {"region": ("score", "margin"), "text": ("ocr",)}
CALIBRATION: dict[str, dict] = {
    "region": {"prior": 0.5462, "score": (-5.324, 10.6667), "margin": (-4.3362, 6.261)},
    "text": {"prior": 0.1168, "ocr": (-3.7683, 20.9822)},
}

RISK_DDL = (
    """CREATE TABLE IF NOT EXISTS item_signals (
    shard TEXT NOT NULL,
    item_key TEXT NOT NULL,
    image_id TEXT NOT NULL,
    item TEXT NOT NULL CHECK (item IN ('region', 'text')),
    region_id INTEGER,
    line_no INTEGER,
    text TEXT NOT NULL,
    score_risk REAL,
    margin_risk REAL,
    disagreement REAL,
    ocr_risk REAL,
    risk REAL NOT NULL,
    PRIMARY KEY (shard, item_key)
)""",
    "CREATE INDEX IF NOT EXISTS item_signals_text ON item_signals(item, text)",
    # the review queue's riskiest-first order looks up each item's risk by its key
    "CREATE INDEX IF NOT EXISTS item_signals_key ON item_signals(item_key, risk)",
    # outlier_score, probability and name: what the row was computed from, so a refresh
    # recomputes only rows whose cluster, outlier score, membership probability (the outlier part
    # of a member without a score) or cluster name changed (or whose text was loaded again)
    """CREATE TABLE IF NOT EXISTS text_risk (
    item TEXT NOT NULL,
    text TEXT NOT NULL,
    cluster_id INTEGER NOT NULL,
    exemplar REAL NOT NULL,
    outlier REAL NOT NULL,
    probability REAL NOT NULL,
    name TEXT NOT NULL,
    outlier_score REAL,
    PRIMARY KEY (item, text)
)""",
    """CREATE TABLE IF NOT EXISTS cluster_risk (
    cluster_id INTEGER PRIMARY KEY,
    items INTEGER NOT NULL,
    risk REAL NOT NULL
)""",
    "CREATE TABLE IF NOT EXISTS risk_state (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # an item's parts, its cluster's parts when its text is clustered (a text_risk row; NULL
    # otherwise) and its risk (from its own parts: item_signals.risk)
    """CREATE VIEW IF NOT EXISTS item_risk AS
    SELECT s.item_key, s.image_id, s.item, s.region_id, s.line_no, s.text,
           COALESCE(t.cluster_id, -1) AS cluster_id,
           s.score_risk, s.margin_risk, s.disagreement, s.ocr_risk,
           t.exemplar, t.outlier, s.risk
    FROM item_signals s LEFT JOIN text_risk t ON t.item = s.item AND t.text = s.text""",
)
SIGNAL_COLUMNS = ("shard", "item_key", "image_id", "item", "region_id", "line_no", "text", "score_risk", "margin_risk", "disagreement", "ocr_risk", "risk")


def _clip(value: float) -> float:
    return float(min(1.0, max(0.0, value)))


def region_components(region: dict) -> dict[str, float]:
    """The region's own components (score, margin, disagreement) from its record."""
    labels = region["labels"]
    top = labels[0]["score"]
    second = labels[1]["score"] if len(labels) > 1 else 0.0
    other = [c["score"] for c in labels if c["source"] != labels[0]["source"]]
    disagreement = _clip(max(other) / top) if other and top > 0 else (1.0 if other else 0.0)
    return {"score": _clip(1.0 - region["score"]), "margin": _clip(1.0 - (top - second)), "disagreement": disagreement}


def line_components(line: dict) -> dict[str, float]:
    """The OCR line's own component (recogniser confidence)."""
    return {"ocr": _clip(1.0 - line["confidence"])}


def cluster_components(exemplar_cosine: float | None, outlier_score: float | None, probability: float = 0.0) -> dict[str, float]:
    """Exemplar distance and outlier part of a clustered item (``exemplar_cosine`` None: its
    cluster's name has no embedding, the distance counts as 1; ``outlier_score`` None: a member
    of a clusters file written before outlier scores, the part is 1 - ``probability``)."""
    exemplar = 1.0 if exemplar_cosine is None else _clip(1.0 - exemplar_cosine)
    return {"exemplar": exemplar, "outlier": _clip(1.0 - probability if outlier_score is None else outlier_score)}


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def item_risk(item: str, components: dict[str, float], calibration: dict[str, dict] | None = None) -> float:
    """The risk of one item (``item``: region | text): its calibrated own parts combined in
    log-odds (the module's docstring); parts without a curve in ``calibration`` (default
    ``CALIBRATION``) add nothing, and an item without any has its kind's base rate."""
    model = (CALIBRATION if calibration is None else calibration)[item]
    prior = _logit(model["prior"])
    z = prior
    for name in CALIBRATED_PARTS[item]:
        if name in model and components.get(name) is not None:
            a, b = model[name]
            z += a + b * components[name] - prior
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def signal_rows(shard: str, regions: list[dict], lines: list[dict]) -> list[tuple]:
    """Rows of ``item_signals`` for one shard's region and OCR records (per-item parts)."""
    rows = []
    for r in regions:
        c = region_components(r)
        c = {k: round(v, 6) for k, v in c.items()}
        rows.append((shard, item_key(r["image_id"], r["region_id"], None), r["image_id"], "region", r["region_id"], None, r["caption"],
                     c["score"], c["margin"], c["disagreement"], None, round(item_risk("region", c), 6)))  # fmt: skip
    for o in lines:
        c = {k: round(v, 6) for k, v in line_components(o).items()}
        rows.append((shard, item_key(o["image_id"], None, o["line_no"]), o["image_id"], "text", None, o["line_no"], o["text"],
                     None, None, None, c["ocr"], round(item_risk("text", c), 6)))  # fmt: skip
    return rows


def replace_shard_signals(conn: sqlite3.Connection, shard: str, rows: list[tuple]) -> None:
    """Swap one shard's ``item_signals`` rows (inside the caller's savepoint)."""
    conn.execute("DELETE FROM item_signals WHERE shard = ?", (shard,))
    conn.executemany(f"INSERT INTO item_signals ({', '.join(SIGNAL_COLUMNS)}) VALUES ({', '.join('?' * len(SIGNAL_COLUMNS))})", rows)


def has_risk(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'item_signals'").fetchone() is not None


_EMBEDDING_KINDS = {"region": ("caption", "label"), "text": ("ocr",)}


def _vectors(conn: sqlite3.Connection, item: str, texts: set[str]) -> dict[str, np.ndarray]:
    """One vector per text of the item group (any shard's copy: the same model gives the same),
    looked up through the embeddings' (kind, text) index."""
    kinds = _EMBEDDING_KINDS[item]
    out: dict[str, np.ndarray] = {}
    marks = ", ".join("?" * len(kinds))
    wanted = sorted(texts)
    for start in range(0, len(wanted), 5000):
        chunk = json.dumps(wanted[start : start + 5000], ensure_ascii=False)
        for text, vector in conn.execute(
            f"SELECT text, MIN(vector) FROM embeddings WHERE kind IN ({marks}) AND text IN (SELECT value FROM json_each(?)) GROUP BY text", (*kinds, chunk)
        ):
            if vector is not None:
                out[text] = np.frombuffer(base64.b64decode(vector), dtype="<f4")
    return out


def _text_risk_rows(conn: sqlite3.Connection, changed_shards: list[str]) -> tuple[list[tuple], int]:
    """Every clustered text's row, and how many were computed: a row is kept when its cluster,
    outlier score, probability and cluster name are those it was computed from and neither its
    text nor the name was loaded again (``changed_shards``: a new embedding model changes vectors)."""
    names = {cid: (item, name) for cid, item, name in conn.execute("SELECT cluster_id, item, label FROM clusters WHERE cluster_id >= 0")}
    kept = {(row[0], row[1]): row for row in conn.execute("SELECT item, text, cluster_id, exemplar, outlier, probability, name, outlier_score FROM text_risk")}
    reloaded: set[tuple[str, str]] = set()
    if changed_shards:
        kinds = {kind: item for item, group in _EMBEDDING_KINDS.items() for kind in group}
        for kind, text in conn.execute("SELECT kind, text FROM embeddings WHERE shard IN (SELECT value FROM json_each(?))", (json.dumps(changed_shards),)):
            if kind in kinds:
                reloaded.add((kinds[kind], text))
    rows: dict[tuple[str, str], tuple] = {}
    todo: list[tuple] = []
    for item, text, cluster_id, probability, score in conn.execute(
        "SELECT item, text, cluster_id, probability, outlier_score FROM cluster_members WHERE cluster_id >= 0"
    ):
        if cluster_id not in names:
            continue
        name = names[cluster_id][1]
        old = kept.get((item, text))
        if (
            old is not None
            and (old[2], old[5], old[6], old[7]) == (cluster_id, probability, name, score)
            and (item, text) not in reloaded
            and (item, name) not in reloaded
        ):
            rows[(item, text)] = old
        else:
            todo.append((item, text, cluster_id, probability, name, score))
    for item in ("region", "text"):
        group = [t for t in todo if t[0] == item]
        if not group:
            continue
        vectors = _vectors(conn, item, {t[1] for t in group} | {t[4] for t in group})
        for _, text, cluster_id, probability, name, score in group:
            a, b = vectors.get(text), vectors.get(name)
            c = cluster_components(float(a @ b) if a is not None and b is not None else None, score, probability)
            rows[(item, text)] = (item, text, cluster_id, round(c["exemplar"], 6), round(c["outlier"], 6), probability, name, score)
    return [rows[key] for key in sorted(rows)], len(todo)


def refresh_risk(conn: sqlite3.Connection, changed_shards: list[str] | None = None) -> dict[str, int]:
    """The aggregate part (inside the caller's transaction): ``text_risk`` when the clusters
    changed since it was computed or shards were loaded (``changed_shards``), recomputing only the
    rows whose inputs changed; then ``cluster_risk``. Returns the text rows computed and the
    clusters."""
    if not has_risk(conn):
        return {"texts": 0, "clusters": 0}
    source = conn.execute("SELECT COALESCE(group_concat(sha256), '') FROM (SELECT sha256 FROM aggregate_files ORDER BY name)").fetchone()[0]
    known = conn.execute("SELECT value FROM risk_state WHERE name = 'clusters'").fetchone()
    texts = 0
    if known is None or known[0] != source or changed_shards:
        rows, texts = _text_risk_rows(conn, list(changed_shards or ()))
        sync_table(conn, "text_risk", rows)
        conn.execute("INSERT OR REPLACE INTO risk_state (name, value) VALUES ('clusters', ?)", (source,))
    conn.execute("DELETE FROM cluster_risk")
    conn.execute(
        "INSERT INTO cluster_risk (cluster_id, items, risk) "
        "SELECT cluster_id, COUNT(*), ROUND(AVG(risk), 6) FROM item_risk WHERE cluster_id >= 0 GROUP BY cluster_id"
    )
    return {"texts": texts, "clusters": conn.execute("SELECT COUNT(*) FROM cluster_risk").fetchone()[0]}
