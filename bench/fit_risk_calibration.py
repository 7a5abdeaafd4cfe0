"""Fit the risk calibration (``shardlens.risk.CALIBRATION``) on the quality set, and measure it held out.

Reads the catalog of a ``bench/review_effort.py`` run (``--workdir``; that script runs the
workflow on ``tests/quality``) and its ground truth (the same item verdicts). For each item kind
(region, OCR line) and each of the item's **own** risk parts that ``shardlens.risk`` calibrates
(regions: ``score``, ``margin``; OCR lines: ``ocr``) it fits a one-parameter-pair logistic curve
P(wrong | part) = sigmoid(a + b x) by maximum likelihood (Newton's method, no penalty: nothing to
tune), and the kind's base rate of wrong labels. A fitted slope below 0 would break "a worse
signal never lowers the risk": the part then gets no curve (no evidence).

**Held out**: the images are split in two folds by their image id (sha256 of the file: the first
8 hex digits, even or odd); each fold's items get risks from the curves fitted on the other fold
only, and the simulated reviewer (``review_effort``'s strategies, the same code) is replayed on
those held-out risks. That is the figure to quote; the in-sample figure (curves fitted on all 96
images, what ``shardlens.risk.CALIBRATION`` holds and ``review_effort.py`` measures) is printed
beside it and is optimistic.

Also printed: each part's area under the ROC curve for "wrong" per item kind (all parts, also
the uncalibrated ones), and whether ``shardlens.risk.CALIBRATION`` equals the curves fitted on
all images (rounded as stored).

    python bench/fit_risk_calibration.py --workdir DIR     # DIR: a review_effort.py --workdir
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

import numpy as np
from quality import QUALITY, BenchError, sha256  # bench/ is the script's sys.path[0]
from review_effort import Item, one_by_one, read_items, triage

from shardlens.config import schema_default
from shardlens.quality_set import QualitySetError, load_ground_truth
from shardlens.risk import CALIBRATED_PARTS, CALIBRATION, item_risk

PARTS = ("score", "margin", "disagreement", "ocr", "exemplar", "outlier")


def fit_logistic(x: np.ndarray, y: np.ndarray, steps: int = 50) -> tuple[float, float] | None:
    """Maximum-likelihood (a, b) of P(y = 1 | x) = sigmoid(a + b x); None when x or y is constant."""
    if len(set(x.tolist())) < 2 or len(set(y.tolist())) < 2:
        return None
    X = np.column_stack([np.ones_like(x), x])
    w = np.zeros(2)
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(X @ w)))
        grad = X.T @ (y - p)
        hess = (X * (p * (1 - p))[:, None]).T @ X + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w += step
        if np.abs(step).max() < 1e-10:
            break
    return float(w[0]), float(w[1])


def fit(items: list[Item], parts: dict[tuple, dict[str, float]]) -> dict[str, dict]:
    """{kind: {"prior": base rate of wrong, part: (a, b), ...}} fitted on ``items``."""
    out = {}
    for kind, names in CALIBRATED_PARTS.items():
        mine = [i for i in items if i.item == kind]
        model: dict = {"prior": sum(not i.right for i in mine) / len(mine)}
        for name in names:
            pairs = [(parts[i.key][name], float(not i.right)) for i in mine if parts[i.key].get(name) is not None]
            curve = fit_logistic(np.array([p for p, _ in pairs]), np.array([y for _, y in pairs])) if pairs else None
            if curve is not None and curve[1] > 0:
                model[name] = curve
        out[kind] = model
    return out


def risk(model: dict[str, dict], kind: str, parts: dict[str, float | None]) -> float:
    """``shardlens.risk.item_risk`` with the given curves."""
    return item_risk(kind, {n: v for n, v in parts.items() if v is not None}, model)


def auc(pairs: list[tuple[float, bool]]) -> float:
    pos = [s for s, wrong in pairs if wrong]
    neg = [s for s, wrong in pairs if not wrong]
    if not pos or not neg:
        return float("nan")
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


def fold(item: Item) -> int:
    return int(item.key[0][:8], 16) % 2


def replay(items: list[Item], audit_size: int, target: float) -> dict[str, int]:
    clusters: dict[int, list[float]] = {}
    for i in items:
        if i.cluster_id >= 0:
            clusters.setdefault(i.cluster_id, []).append(i.risk)
    cluster_risk = {c: sum(r) / len(r) for c, r in clusters.items()}
    first = one_by_one(items, sorted(items, key=lambda i: (-i.risk, i.key[0], i.item, str(i.key))), target)
    tri, _ = triage(items, cluster_risk, audit_size, target, interleave=True)
    return {"risk first": first.actions, "triage (one queue)": tri.actions}


def rounded(model: dict[str, dict]) -> dict[str, dict]:
    return {k: {n: (round(v, 4) if n == "prior" else tuple(round(x, 4) for x in v)) for n, v in m.items()} for k, m in model.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True, help="the folder of a bench/review_effort.py run")
    parser.add_argument("--ground-truth", type=Path, default=QUALITY / "ground_truth.json")
    parser.add_argument("--audit-size", type=int, default=schema_default("reviews", "audit_size"))
    parser.add_argument("--target", type=float, default=0.98)
    args = parser.parse_args()
    try:
        images = args.ground_truth.parent / "images"
        gold = load_ground_truth(args.ground_truth, images)
        db = args.workdir / "results" / "annotations.sqlite"
        if not db.exists():
            raise BenchError(f"{db} does not exist: run bench/review_effort.py --workdir {args.workdir} first")
        items = read_items(db, gold, {g["file"]: sha256(images / g["file"]) for g in gold})
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        columns = "score_risk, margin_risk, disagreement, ocr_risk, exemplar, outlier"
        parts = {(r[0], r[1], r[2]): dict(zip(PARTS, r[3:])) for r in conn.execute(f"SELECT image_id, region_id, line_no, {columns} FROM item_risk")}
        conn.close()
    except (BenchError, QualitySetError) as exc:
        print(f"bench/fit_risk_calibration.py: {exc}", file=sys.stderr)
        sys.exit(2)

    print(f"{len(items)} items; folds by image id: {sum(fold(i) == 0 for i in items)} / {sum(fold(i) == 1 for i in items)} items, "
          f"{len({i.key[0] for i in items if fold(i) == 0})} / {len({i.key[0] for i in items if fold(i) == 1})} images")  # fmt: skip
    print("\nArea under the ROC curve for 'wrong', each part alone (all images; clustered items only for exemplar and outlier):")
    for kind in ("region", "text"):
        mine = [i for i in items if i.item == kind]
        cells = [f"{n} {auc([(parts[i.key][n], not i.right) for i in mine if parts[i.key][n] is not None]):.3f}" for n in PARTS
                 if any(parts[i.key][n] is not None for i in mine)]  # fmt: skip
        print(f"  {kind} ({len(mine)} items, {sum(not i.right for i in mine)} wrong): " + ", ".join(cells))

    everything = fit(items, parts)
    print(f"\nCurves fitted on all images (what shardlens.risk.CALIBRATION holds): {rounded(everything)}")
    print(f"shardlens.risk.CALIBRATION equals them: {rounded(everything) == CALIBRATION}")

    models = [fit([i for i in items if fold(i) != f], parts) for f in (0, 1)]
    for f, m in enumerate(models):
        print(f"Curves fitted on fold {1 - f} (applied to fold {f}): {rounded(m)}")
    for i in items:
        i.risk = risk(models[fold(i)], i.item, parts[i.key])
    held_auc = {kind: auc([(i.risk, not i.right) for i in items if kind in ("all", i.item)]) for kind in ("region", "text", "all")}
    held = replay(items, args.audit_size, args.target)
    for i in items:
        i.risk = risk(everything, i.item, parts[i.key])
    in_auc = {kind: auc([(i.risk, not i.right) for i in items if kind in ("all", i.item)]) for kind in ("region", "text", "all")}
    inside = replay(items, args.audit_size, args.target)
    print(f"\nActions to reach precision {args.target} (audits of {args.audit_size}):")
    print("| risks | " + " | ".join(held) + " | AUC regions | AUC OCR lines | AUC all |")
    print("|---|" + "---:|" * (len(held) + 3))
    print("| held out (2 folds by image) | " + " | ".join(str(v) for v in held.values()) + " | " + " | ".join(f"{v:.3f}" for v in held_auc.values()) + " |")
    print("| in sample (all images) | " + " | ".join(str(v) for v in inside.values()) + " | " + " | ".join(f"{v:.3f}" for v in in_auc.values()) + " |")


if __name__ == "__main__":
    main()
