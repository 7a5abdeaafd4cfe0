"""A simulated reviewer on the real-image quality set: how many actions reach 0.98 precision.

The real workflow runs on ``tests/quality`` (as ``bench/quality.py`` runs it: 2 shards, default
config), and the catalog is brought up to this shardlens (``import_cache``: the risk scores).
An **item** is one machine label: a region (its caption) or an OCR line (its text). Whether it
is right follows ``shardlens.evaluation.region_verdicts`` and ``line_verdicts`` (the detection
rules of quality-metrics.md for regions; an OCR line is right within 0.25 edits per character of
a gold line, or as a piece of one).

The reviewer accepts a right label and fixes (relabels or rejects) a wrong one: one **action**
each; a bulk accept of a cluster is one action. After its review an item is right. **Precision
over all items** = (reviewed items + right unreviewed items) / items. Each strategy stops as
soon as precision reaches ``--target`` (0.98):

- ``file order``: item by item, by image path (regions, then lines);
- ``least confident first``: item by item by the dashboard queue's order ``confidence``
  (ascending: the cluster membership probability), what shardlens offered before risk scores;
- ``risk first``: item by item by item risk (``shardlens.risk``), riskiest first;
- ``triage``: clusters by cluster risk, riskiest first; each is audited with k of its items drawn
  as the dashboard draws them (``shardlens.audits.draw_sample``, audit 1): k actions, then 1 bulk
  accept when all k were right (the cluster's wrong items that were not drawn stay wrong), else
  the rest of the cluster item by item, riskiest first. Only a cluster the dashboard offers an
  audit for is audited (``shardlens.audits.audit_saves_actions``: more than k + 1 items); a
  smaller cluster's items are reviewed item by item like unclustered ones. Those items, item by
  item by risk, come either after the audited clusters, or in the same queue as the clusters (a
  cluster ranks by its risk, an item by its own): both are printed, the second is the triage the
  target is checked on.

Also printed: the full pass (every item once) and, for triage, the audits' precision estimate of
the bulk-accepted clusters next to their true precision.

    python bench/review_effort.py [--workdir DIR] [--no-run] [--audit-size K] [--target 0.98]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from quality import QUALITY, BenchError, run_workflow, sha256, write_workdir_config

from shardlens.audits import audit_saves_actions, draw_sample, wilson
from shardlens.catalog import import_cache
from shardlens.config import schema_default
from shardlens.evaluation import line_verdicts, region_verdicts
from shardlens.quality_set import QualitySetError, load_ground_truth

from _common import command_line, fmt_load, git_commit, load_average, log  # bench/ is the script's sys.path[0]


@dataclass
class Item:
    key: tuple  # (image_id, region_id, line_no): what an audit samples
    item: str  # region | text
    path: str
    label: str
    confidence: float
    risk: float
    cluster_id: int
    right: bool = False


class Reviewer:
    """The simulated reviewer's state: which items are reviewed, and the actions spent."""

    def __init__(self, items: list[Item], target: float):
        self.items, self.target = items, target
        self.reviewed: set[tuple] = set()
        self.wrong_left = sum(not i.right for i in items)
        self.actions = 0

    @property
    def precision(self) -> float:
        return (len(self.items) - self.wrong_left) / len(self.items) if self.items else 1.0

    @property
    def done(self) -> bool:
        return self.precision >= self.target

    def review(self, item: Item) -> None:
        """Accept (right) or fix (wrong) one item: one action."""
        if item.key in self.reviewed:
            return
        self.actions += 1
        self.reviewed.add(item.key)
        if not item.right:
            self.wrong_left -= 1

    def bulk_accept(self, items: list[Item]) -> None:
        """Accept the machine labels of ``items`` in one action: nothing is fixed."""
        self.actions += 1
        self.reviewed |= {i.key for i in items}


def one_by_one(items: list[Item], order: list[Item], target: float) -> Reviewer:
    reviewer = Reviewer(items, target)
    for item in order:
        if reviewer.done:
            break
        reviewer.review(item)
    return reviewer


def triage(items: list[Item], cluster_risk: dict[int, float], audit_size: int, target: float, interleave: bool = False) -> tuple[Reviewer, list[dict]]:
    """Clusters riskiest first, each audited, then bulk-accepted or reviewed item by item
    (riskiest first); a cluster too small for an audit to save actions (the dashboard's rule,
    ``audit_saves_actions``) and the unclustered items go item by item by risk, after the audited
    clusters, or with ``interleave`` in the same queue (a cluster ranks by its risk, an item by
    its own). Returns the reviewer and one row per bulk-accepted cluster (audit figures)."""
    reviewer = Reviewer(items, target)
    members: dict[int, list[Item]] = {}
    for item in items:
        members.setdefault(item.cluster_id, []).append(item)
    audited = {c for c, group in members.items() if c >= 0 and audit_saves_actions(len(group), audit_size)}
    units = [(cluster_risk.get(c, 0.0), 0, c, None) for c in sorted(audited)]
    singles = [(i.risk, 1, -1, i) for c, group in members.items() if c not in audited for i in group]
    if interleave:
        queue = sorted(units + singles, key=lambda u: (-u[0], u[1], u[2], u[3].key if u[3] else ()))
    else:
        queue = sorted(units, key=lambda u: (-u[0], u[2])) + sorted(singles, key=lambda u: (-u[0], u[3].key))
    accepted = []
    for _, _, cluster_id, single in queue:
        if reviewer.done:
            break
        if single is not None:
            reviewer.review(single)
            continue
        group = members[cluster_id]
        by_key = {i.key: i for i in group}
        sample = [by_key[k] for k in draw_sample(group[0].item, cluster_id, 1, [i.key for i in group], audit_size)]
        for item in sample:
            reviewer.review(item)
        rest = [i for i in group if i.key not in reviewer.reviewed]
        if all(i.right for i in sample):
            if rest:
                reviewer.bulk_accept(rest)
            accepted.append({"cluster": cluster_id, "items": len(group), "sample": len(sample), "right": sum(i.right for i in group)})
        else:
            for item in sorted(rest, key=lambda i: (-i.risk, i.key)):
                if reviewer.done:
                    break
                reviewer.review(item)
    return reviewer, accepted


def read_items(db: Path, gold: list[dict], image_ids: dict[str, str]) -> list[Item]:
    import sqlite3

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            """SELECT a.image_id, a.item, a.region_id, a.line_no, a.bbox, a.machine_label, a.score, a.confidence, r.risk, r.cluster_id, i.path
               FROM item_annotations a
               JOIN item_risk r ON r.item_key = a.image_id || CASE WHEN a.item = 'region' THEN '/region/' || a.region_id ELSE '/line/' || a.line_no END
               JOIN images i ON i.image_id = a.image_id"""
        ).fetchall()
    except sqlite3.Error as exc:
        raise BenchError(f"{db}: cannot read item_annotations / item_risk ({exc})") from None
    finally:
        conn.close()
    by_image = {image_ids[g["file"]]: g for g in gold}
    items: dict[tuple, tuple[Item, dict]] = {}
    for image_id, item, region_id, line_no, bbox, label, score, confidence, risk, cluster_id, path in rows:
        if image_id not in by_image:
            raise BenchError(f"{db}: image {path} is not in the ground truth")
        it = Item((image_id, region_id, line_no), item, path, label, confidence, risk, cluster_id)
        items.setdefault(it.key, (it, {"label": label, "score": score, "bbox": json.loads(bbox) if bbox else None}))
    for image_id, g in by_image.items():
        regions = [(it, r) for it, r in items.values() if it.key[0] == image_id and it.item == "region"]
        for (it, _), right in zip(regions, region_verdicts(g, [r for _, r in regions])):
            it.right = right
        lines = [it for it, _ in items.values() if it.key[0] == image_id and it.item == "text"]
        for it, right in zip(lines, line_verdicts(g, [it.label for it in lines])):
            it.right = right
    return [it for it, _ in items.values()]


def file_order(items: list[Item]) -> list[Item]:
    return sorted(items, key=lambda i: (i.path, i.item != "region", i.key[1] if i.key[1] is not None else -1, i.key[2] if i.key[2] is not None else -1))


def run(args: argparse.Namespace) -> None:
    images = args.ground_truth.parent / "images"
    gold = load_ground_truth(args.ground_truth, images)
    image_ids = {g["file"]: sha256(images / g["file"]) for g in gold}
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="shardlens-review-effort-"))).resolve()
    load_before = load_average()
    if not args.no_run:
        write_workdir_config(workdir, images.resolve(), {})
        run_workflow(workdir, [], args.cores)
    db = workdir / "results" / "annotations.sqlite"
    if not db.exists():
        raise BenchError(f"{db} does not exist: run without --no-run first")
    stats = import_cache(workdir / "cache", db, log=log)  # this shardlens's layout (risk scores)
    log(f"catalog {stats['mode']}: {stats['reason']}")
    items = read_items(db, gold, image_ids)
    import sqlite3

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    cluster_risk = dict(conn.execute("SELECT cluster_id, risk FROM cluster_risk"))
    conn.close()
    n = len(items)
    if not n:
        raise BenchError(f"{db}: no items")
    rows = []
    full = Reviewer(items, 2.0)
    for item in file_order(items):
        full.review(item)
    rows.append(("file order, full pass (every item once)", full))
    rows.append(("file order", one_by_one(items, file_order(items), args.target)))
    rows.append(("least confident first", one_by_one(items, sorted(items, key=lambda i: (i.confidence, i.key[0], i.item, str(i.key))), args.target)))
    rows.append(("risk first", one_by_one(items, sorted(items, key=lambda i: (-i.risk, i.key[0], i.item, str(i.key))), args.target)))
    first, _ = triage(items, cluster_risk, args.audit_size, args.target)
    rows.append((f"triage, clusters then unclustered items (audits of {args.audit_size})", first))
    tri, accepted = triage(items, cluster_risk, args.audit_size, args.target, interleave=True)
    rows.append((f"triage, clusters and unclustered items in one risk order (audits of {args.audit_size})", tri))
    load_after = load_average()

    regions = sum(i.item == "region" for i in items)
    clustered = sum(i.cluster_id >= 0 for i in items)
    right = sum(i.right for i in items)
    out = [
        f"Commit `{git_commit()}`; `{command_line()}`; load average (1/5/15 min) before {fmt_load(load_before)}, after {fmt_load(load_after)}; "
        f"{os.cpu_count()} cores.",
        "",
        f"Quality set: {len(gold)} images, **{n} items** ({regions} regions, {n - regions} OCR lines; {clustered} in "
        f"{len(cluster_risk)} clusters, {n - clustered} unclustered). Machine precision {right / n:.3f} ({n - right} wrong). "
        f"Target precision {args.target}. A small set: one wrong item is {1000 / n:.1f} actions per 1,000 items.",
        "",
        "| strategy | actions | per 1,000 items | precision reached |",
        "|---|---:|---:|---:|",
    ]
    for name, r in rows:
        out.append(f"| {name} | {r.actions} | {1000 * r.actions / n:.0f} | {r.precision:.3f} |")
    base = rows[1][1]
    ratio = tri.actions / base.actions if base.actions else float("inf")
    met = ratio <= 1 / 3 and tri.precision >= min(base.precision, args.target)
    out += ["", f"Triage / file order: {tri.actions} / {base.actions} = {ratio:.2f} (target <= 0.33 at the same precision): **{'met' if met else 'missed'}**."]
    if accepted:
        sampled = sum(a["sample"] for a in accepted)
        weight = sum(a["items"] for a in accepted)
        estimate = sum(1.0 * a["items"] for a in accepted) / weight  # every passed audit saw k of k right
        low = sum(wilson(a["sample"], a["sample"])[0] * a["items"] for a in accepted) / weight
        true = sum(a["right"] for a in accepted) / weight
        out.append(
            f"Bulk-accepted clusters: {len(accepted)} ({weight} items, {sampled} audited); audit estimate {estimate:.3f} "
            f"(weighted Wilson lower bound {low:.3f}), true precision of their labels {true:.3f}."
        )
    print("\n".join(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, help="workflow folder to run in (and reuse); default: a new temp folder")
    parser.add_argument("--no-run", action="store_true", help="do not run the workflow; use the existing --workdir")
    parser.add_argument("--audit-size", type=int, default=schema_default("reviews", "audit_size"))
    parser.add_argument("--target", type=float, default=0.98)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--ground-truth", type=Path, default=QUALITY / "ground_truth.json")
    args = parser.parse_args()
    try:
        if args.no_run and not args.workdir:
            raise BenchError("--no-run needs --workdir")
        run(args)
    except (BenchError, QualitySetError) as exc:
        print(f"bench/review_effort.py: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
