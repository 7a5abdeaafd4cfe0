"""Incremental machine clusters: what the cluster rule keeps between runs, and how new texts join.

HDBSCAN over every distinct text is a full refit, and reading every shard's embeddings again costs
more than the fit at a million images. The cluster rule therefore keeps a state database beside
its output (``cache/clusters.state.sqlite``, see :func:`state_path`):

- ``inputs``: each embedding file read, by path, with its size, mtime and sha256. A file whose
  size and mtime are unchanged is not opened; one whose bytes hash the same is not parsed.
- ``contributions``: what each file adds (item group, text, kind, occurrences).
- ``texts``: each distinct (item group, text) with its vector, its cluster, its membership
  (``fitted``: placed by the last HDBSCAN fit, noise included; ``assigned``: joined later by
  nearest exemplar, or left unclustered), its probability and its outlier score (GLOSH); a
  fitted text also keeps what scoring a later one needs: the lambda_max of the tree node it
  leaves, its core distance and how many copies of it the fit had.
- ``fit_spaces``: per item group, the space of the last fit (the PCA's mean and axes) and
  HDBSCAN's effective ``min_samples``.
- ``clusters``: each cluster's id, item group and name; ``meta``: the fit options, the next free
  cluster id and the state's version.

``labels.refit`` decides what a run does with texts it has not seen:

- ``always``: a from-scratch fit of every text (the clusters of :func:`labels.cluster_points`);
- ``never``: each new text joins the cluster of its nearest fitted, clustered member of the same
  item group when their cosine similarity is at least ``labels.assign_similarity`` and its
  similarity to the cluster's name is at least ``labels.min_similarity``; otherwise it is left
  unclustered. Earlier texts keep their clusters;
- ``auto`` (default): as ``never``, then a refit when the texts left unclustered since the last
  fit pass ``labels.refit_unassigned_share`` of all texts.

A fit takes at most ``labels.fit_max_texts`` texts of each item group (the most frequent; ties by
sha256 of the text): HDBSCAN's time grows faster than the number of texts (BENCHMARKS.md: 5,277
distinct texts in 3.8 s, 50,343 in 356 s), and the first fit over the ~180,000 distinct OCR texts
of a million images had not ended after 57 minutes on 2 cores.
The texts past the cap join the fitted clusters at once by assignment, as later texts do, and
``auto`` counts only the texts left out since then (``meta.left_out_at_fit``).

A run without a state, or whose fit options differ from the state's, fits from scratch; so does
one whose state an older shardlens wrote (version 1 had no outlier scores: the columns are added
and the run refits, reading no embedding file again). A new text's assignment depends only on
the fitted members, never on the other new texts, so the same sequence of runs gives the same
clusters.

**Outlier scores.** A fitted text has HDBSCAN's ``outlier_scores_`` (:mod:`shardlens.cluster_fit`).
The state keeps no HDBSCAN model, so a text that joins later gets the score
``hdbscan.prediction.approximate_predict_scores`` gives a new point, computed from what the state
keeps, against the fitted member its assignment looked at (its nearest fitted, clustered member:
the one whose cluster it joins, or would have joined) rather than against its nearest neighbour
by mutual reachability in the fit space: lambda = 1 / the mutual reachability distance between
the text and that member in the fit space (the text projected with the fit's PCA; its core
distance is the distance to its ``min_samples``-th nearest fitted copy, as the fit counts a
member's), scored against the lambda_max of the node that member leaves
(:func:`shardlens.cluster_fit.glosh`). So the score, like the cluster, depends on the fit alone
and not on the other new texts or their order. A text of a group without fitted clusters scores 1 (hdbscan
predicts every new point an outlier when there is no cluster).

Ids and names stay stable. A refit matches its clusters to the previous ones by shared
occurrences (largest overlap first) and keeps their ids; a cluster with no match takes the next id
never used before. A cluster keeps its name while that text is one of its members.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .cluster_fit import ITEM_OF_KIND, UNCLUSTERED, FitSpace, TextPoint, build_clusters, display_name, fit_points, glosh
from .records import read_jsonl
from .vectors import decode_vector

STATE_VERSION = 2  # 2: outlier scores (texts' outlier_score, lambda_max, core_distance, copies; fit_spaces)
# what a state of an older version lacks, added in place (the run then refits)
UPGRADES = {1: ["ALTER TABLE texts ADD COLUMN outlier_score REAL", "ALTER TABLE texts ADD COLUMN lambda_max REAL",
                "ALTER TABLE texts ADD COLUMN core_distance REAL", "ALTER TABLE texts ADD COLUMN copies INTEGER"]}  # fmt: skip
REFIT_MODES = ("always", "auto", "never")
# the options that change what a fit gives; the others only change what happens between fits
FIT_OPTIONS = ("min_cluster_size", "min_samples", "pca_dims", "selection_epsilon", "min_similarity", "fit_max_texts")

STATE_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS inputs (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS contributions (
    path TEXT NOT NULL, item TEXT NOT NULL, text TEXT NOT NULL, kind TEXT NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (path, item, text, kind)
);
CREATE INDEX IF NOT EXISTS contributions_text ON contributions(item, text);
CREATE TABLE IF NOT EXISTS texts (
    item TEXT NOT NULL, text TEXT NOT NULL, vector BLOB NOT NULL,
    cluster_id INTEGER, membership TEXT, probability REAL NOT NULL DEFAULT 0,
    outlier_score REAL, lambda_max REAL, core_distance REAL, copies INTEGER,
    PRIMARY KEY (item, text)
);
CREATE TABLE IF NOT EXISTS fit_spaces (item TEXT PRIMARY KEY, mean BLOB, axes BLOB, min_samples INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS clusters (cluster_id INTEGER PRIMARY KEY, item TEXT NOT NULL, name TEXT NOT NULL);
"""


def state_path(output: str | Path) -> Path:
    """The state kept beside the cluster output (not a declared output, so Snakemake keeps it)."""
    output = Path(output)
    return output.with_name(f"{output.stem}.state.sqlite")


@dataclass
class RunInfo:
    """What one run did, for the log and the job summary."""

    mode: str
    refit: bool = False
    reason: str = ""
    files_read: int = 0
    files_unchanged: int = 0
    files_removed: int = 0
    new_texts: int = 0
    assigned: int = 0
    left_unclustered: int = 0
    removed_texts: int = 0
    extra: dict = field(default_factory=dict)


def _fit_digest(options: dict) -> str:
    fit = {key: options[key] for key in FIT_OPTIONS}
    return hashlib.sha256(json.dumps(fit, sort_keys=True).encode()).hexdigest()


class ClusterState:
    """The state database; every change of one run happens in one transaction."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.conn = sqlite3.connect(self.path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        version = self._meta_raw("version")
        if version is not None and int(version) != STATE_VERSION and int(version) not in UPGRADES:
            self.close()
            self.path.unlink()
            self.conn = sqlite3.connect(self.path, isolation_level=None)
        elif version is not None and int(version) in UPGRADES:
            columns = {row[1] for row in self.conn.execute("PRAGMA table_info(texts)")}
            for statement in UPGRADES[int(version)]:
                if statement.split()[5] not in columns:  # idempotent: a run that failed after it
                    self.conn.execute(statement)
        self.conn.executescript(STATE_DDL)
        self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('version', ?)", (str(STATE_VERSION),))

    def _meta_raw(self, key: str) -> str | None:
        try:
            row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        except sqlite3.OperationalError:  # a fresh database: no meta table yet
            return None
        return row[0] if row else None

    def meta(self, key: str, default: str | None = None) -> str | None:
        value = self._meta_raw(key)
        return default if value is None else value

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def close(self) -> None:
        self.conn.close()

    # --- inputs -------------------------------------------------------------------------------

    def sync_inputs(self, files: list[str | Path], info: RunInfo) -> None:
        """Bring ``contributions`` and ``texts`` up to the given embedding files."""
        known = {row[0]: row[1:] for row in self.conn.execute("SELECT path, size, mtime_ns, sha256 FROM inputs")}
        # keyed relative to the state's folder, so `shardlens recluster` and the rule agree
        located = {os.path.relpath(os.path.abspath(f), os.path.abspath(self.path.parent)): Path(f) for f in files}
        wanted = set(located)
        for path in sorted(set(known) - wanted):
            self.conn.execute("DELETE FROM contributions WHERE path = ?", (path,))
            self.conn.execute("DELETE FROM inputs WHERE path = ?", (path,))
            info.files_removed += 1
        for path in sorted(wanted):
            stat = os.stat(located[path])
            old = known.get(path)
            if old is not None and (old[0], old[1]) == (stat.st_size, stat.st_mtime_ns):
                info.files_unchanged += 1
                continue
            sha = hashlib.sha256(located[path].read_bytes()).hexdigest()
            if old is None or old[2] != sha:
                self._read_file(path, located[path])
                info.files_read += 1
            else:
                info.files_unchanged += 1
            self.conn.execute("INSERT OR REPLACE INTO inputs VALUES (?, ?, ?, ?)", (path, stat.st_size, stat.st_mtime_ns, sha))
        info.removed_texts = self.conn.execute(
            "DELETE FROM texts WHERE NOT EXISTS (SELECT 1 FROM contributions c WHERE c.item = texts.item AND c.text = texts.text)"
        ).rowcount
        self.conn.execute("DELETE FROM clusters WHERE cluster_id NOT IN (SELECT DISTINCT cluster_id FROM texts WHERE cluster_id IS NOT NULL)")

    def _read_file(self, key: str, path: Path) -> None:
        self.conn.execute("DELETE FROM contributions WHERE path = ?", (key,))
        counts: dict[tuple[str, str, str], int] = {}
        vectors: dict[tuple[str, str], bytes] = {}
        for record in read_jsonl(path, "embedding"):
            item = ITEM_OF_KIND[record["kind"]]
            text_key = (item, record["text"], record["kind"])
            counts[text_key] = counts.get(text_key, 0) + len(record["occurrences"])
            if (item, record["text"]) not in vectors:
                vectors[(item, record["text"])] = decode_vector(record["vector"], record["dim"]).astype("<f4").tobytes()
        self.conn.executemany("INSERT INTO contributions VALUES (?, ?, ?, ?, ?)", [(key, *text_key, n) for text_key, n in counts.items()])
        self.conn.executemany(
            "INSERT OR IGNORE INTO texts (item, text, vector) VALUES (?, ?, ?)", [(item, text, blob) for (item, text), blob in vectors.items()]
        )

    # --- reading texts ------------------------------------------------------------------------

    def points(self, where: str = "", with_vectors: bool = True) -> list[TextPoint]:
        """Texts (sorted by group, then text) with their merged kinds and occurrences."""
        vector = "t.vector" if with_vectors else "NULL"
        rows = self.conn.execute(
            f"SELECT t.item, t.text, {vector}, group_concat(DISTINCT c.kind), SUM(c.count) "
            f"FROM texts t JOIN contributions c ON c.item = t.item AND c.text = t.text {where} "
            "GROUP BY t.item, t.text ORDER BY t.item, t.text"
        )
        return [
            TextPoint(text, set(kinds.split(",")), int(count), np.frombuffer(blob, dtype="<f4") if blob is not None else None, item)
            for item, text, blob, kinds, count in rows
        ]

    def assignments(self) -> dict[tuple[str, str], tuple[int, str, float, float]]:
        """(item, text) -> (cluster, membership, probability, outlier score) of every placed text."""
        return {
            (item, text): (cluster, membership, probability, score)
            for item, text, cluster, membership, probability, score in self.conn.execute(
                "SELECT item, text, cluster_id, membership, probability, outlier_score FROM texts WHERE cluster_id IS NOT NULL"
            )
        }

    def older_version(self) -> int | None:
        """The version of a state an older shardlens wrote (upgraded in place, not yet refit)."""
        version = int(self.meta("version", str(STATE_VERSION)))
        return version if version != STATE_VERSION else None

    def fit_space(self, item: str) -> FitSpace | None:
        row = self.conn.execute("SELECT mean, axes, min_samples FROM fit_spaces WHERE item = ?", (item,)).fetchone()
        if row is None:
            return None
        mean, axes, min_samples = row
        if mean is None:
            return FitSpace(None, None, min_samples)
        mean = np.frombuffer(mean, dtype="<f8")
        return FitSpace(mean, np.frombuffer(axes, dtype="<f8").reshape(len(mean), -1), min_samples)

    # --- fitting and assigning ----------------------------------------------------------------

    def refit(self, options: dict, threads: int, info: RunInfo | None = None) -> None:
        """A from-scratch fit; ids and names matched to the previous clusters. HDBSCAN fits at most
        ``fit_max_texts`` texts of each item group (:func:`fit_sample`); the others then join by
        nearest fitted member (:meth:`assign_new`), as texts of later runs do."""
        everything = self.points()
        points = fit_sample(everything, options.get("fit_max_texts"))
        fit = fit_points(
            points,
            min_cluster_size=options["min_cluster_size"],
            min_samples=options["min_samples"],
            pca_dims=options["pca_dims"],
            selection_epsilon=options["selection_epsilon"],
            min_similarity=options["min_similarity"],
            threads=threads,
        )
        labels = fit.labels
        previous = {key: cluster for key, (cluster, *_) in self.assignments().items() if cluster != UNCLUSTERED}
        ids = self._match_ids(points, labels, previous)
        old_names = dict(self.conn.execute("SELECT cluster_id, name FROM clusters"))
        self.conn.execute(
            "UPDATE texts SET cluster_id = NULL, membership = NULL, probability = 0, outlier_score = NULL, lambda_max = NULL, core_distance = NULL, copies = NULL"
        )
        self.conn.executemany(
            "UPDATE texts SET cluster_id = ?, membership = 'fitted', probability = ?, outlier_score = ?, lambda_max = ?, core_distance = ?, copies = ? "
            "WHERE item = ? AND text = ?",
            [
                (
                    ids.get(int(fit.labels[i]), UNCLUSTERED),
                    round(float(fit.probabilities[i]), 6),
                    round(float(fit.outlier_scores[i]), 6),
                    float(fit.lambda_max[i]),
                    float(fit.core_distances[i]),
                    int(fit.copies[i]),
                    p.item,
                    p.text,
                )
                for i, p in enumerate(points)
            ],  # fmt: skip
        )
        self.conn.execute("DELETE FROM fit_spaces")
        self.conn.executemany(
            "INSERT INTO fit_spaces VALUES (?, ?, ?, ?)",
            [
                (
                    item,
                    None if space.mean is None else space.mean.astype("<f8").tobytes(),
                    None if space.axes is None else space.axes.astype("<f8").tobytes(),
                    space.min_samples,
                )
                for item, space in sorted(fit.spaces.items())
            ],
        )
        self.conn.execute("DELETE FROM clusters")
        members: dict[int, list[int]] = {}
        for i, label in enumerate(labels):
            if label != UNCLUSTERED:
                members.setdefault(ids[int(label)], []).append(i)
        rows = []
        for cluster_id, idx in sorted(members.items()):
            texts = {points[i].text for i in idx}
            name = old_names.get(cluster_id)
            if name not in texts:
                name = display_name(idx, points)
            rows.append((cluster_id, points[idx[0]].item, name))
        self.conn.executemany("INSERT INTO clusters VALUES (?, ?, ?)", rows)
        next_id = max([int(self.meta("next_cluster_id", "0")), *(c + 1 for c in members)])
        self.set_meta("next_cluster_id", str(next_id))
        self.set_meta("fit", _fit_digest(options))
        self.set_meta("version", str(STATE_VERSION))
        if len(points) < len(everything):
            self.assign_new(options, info if info is not None else RunInfo(mode="always"))
        self.set_meta("left_out_at_fit", str(self._left_out()))

    def _match_ids(self, points: list[TextPoint], labels: np.ndarray, previous: dict[tuple[str, str], int]) -> dict[int, int]:
        """New cluster label -> stable id: the previous cluster sharing most occurrences (greedy,
        largest overlap first), else the next id never used. Without a previous fit the ids are
        the fit's own (by size)."""
        fresh = sorted({int(label) for label in labels} - {UNCLUSTERED})
        if not previous:
            return {label: label for label in fresh}
        overlap: dict[tuple[int, int], int] = {}
        for point, label in zip(points, labels):
            old = previous.get((point.item, point.text))
            if label != UNCLUSTERED and old is not None:
                overlap[(int(label), old)] = overlap.get((int(label), old), 0) + point.count
        ids: dict[int, int] = {}
        taken: set[int] = set()
        for (label, old), _ in sorted(overlap.items(), key=lambda kv: (-kv[1], kv[0][1], kv[0][0])):
            if label not in ids and old not in taken:
                ids[label] = old
                taken.add(old)
        next_id = max([int(self.meta("next_cluster_id", "0")), *(c + 1 for c in previous.values())])
        for label in fresh:
            if label not in ids:
                ids[label] = next_id
                next_id += 1
        self.set_meta("next_cluster_id", str(next_id))
        return ids

    def assign_new(self, options: dict, info: RunInfo) -> None:
        """Each text without a cluster joins its nearest fitted member's cluster, or stays out;
        either way it gets its outlier score against that member (:class:`OutlierScorer`)."""
        new = self.points("WHERE t.cluster_id IS NULL")
        info.new_texts = len(new)
        if not new:
            return
        names = {cid: (item, name) for cid, item, name in self.conn.execute("SELECT cluster_id, item, name FROM clusters")}
        updates = []
        for item in sorted({p.item for p in new}):
            group = [p for p in new if p.item == item]
            fitted = self.conn.execute(
                "SELECT cluster_id, vector, lambda_max, core_distance FROM texts WHERE item = ? AND membership = 'fitted' AND cluster_id >= 0 ORDER BY text",
                (item,),
            ).fetchall()
            space = self.fit_space(item)
            if not fitted or space is None:
                updates += [(UNCLUSTERED, 0.0, 1.0, p.item, p.text) for p in group]
                continue
            owners = np.array([row[0] for row in fitted])
            matrix = np.stack([np.frombuffer(row[1], dtype="<f4") for row in fitted])
            scorer = OutlierScorer(self.conn, item, space, matrix, [(row[2], row[3]) for row in fitted])
            name_vectors = {
                cid: np.frombuffer(self.conn.execute("SELECT vector FROM texts WHERE item = ? AND text = ?", (item, name)).fetchone()[0], dtype="<f4")
                for cid, (group_item, name) in names.items()
                if group_item == item
            }
            queries = np.stack([p.vector for p in group])
            for start in range(0, len(group), 1024):
                sims = queries[start : start + 1024] @ matrix.T
                best = sims.argmax(axis=1)
                for k, point in enumerate(group[start : start + 1024]):
                    similarity = float(sims[k, best[k]])
                    cluster = int(owners[best[k]])
                    joins = similarity >= options["assign_similarity"] and float(point.vector @ name_vectors[cluster]) >= options["min_similarity"]
                    score = round(scorer.score(point.vector, int(best[k])), 6)
                    updates.append(
                        (cluster, round(min(max(similarity, 0.0), 1.0), 6), score, point.item, point.text)
                        if joins
                        else (UNCLUSTERED, 0.0, score, point.item, point.text)
                    )
        self.conn.executemany(
            "UPDATE texts SET cluster_id = ?, membership = 'assigned', probability = ?, outlier_score = ?, lambda_max = NULL, core_distance = NULL, copies = NULL "
            "WHERE item = ? AND text = ?",
            updates,
        )
        info.assigned = sum(1 for u in updates if u[0] != UNCLUSTERED)
        info.left_unclustered = len(updates) - info.assigned

    def _left_out(self) -> int:
        """Texts that joined no cluster by assignment (not the fit's own noise)."""
        return self.conn.execute("SELECT COUNT(*) FROM texts WHERE membership = 'assigned' AND cluster_id = ?", (UNCLUSTERED,)).fetchone()[0]

    def unassigned_share(self) -> float:
        """The share of all texts that joined no cluster since the last fit: those left out by
        assignment, less those the fit itself left out (the texts past ``fit_max_texts``)."""
        total = self.conn.execute("SELECT COUNT(*) FROM texts").fetchone()[0]
        out = max(0, self._left_out() - int(self.meta("left_out_at_fit", "0")))
        return out / total if total else 0.0

    # --- output -------------------------------------------------------------------------------

    def rename_orphans(self) -> None:
        """A cluster whose name left it (its text gone from every image) is named again."""
        orphans = [
            cid
            for (cid,) in self.conn.execute(
                "SELECT cluster_id FROM clusters c WHERE NOT EXISTS "
                "(SELECT 1 FROM texts t WHERE t.cluster_id = c.cluster_id AND t.item = c.item AND t.text = c.name)"
            ).fetchall()
        ]
        for cid in orphans:
            points = self.points(f"WHERE t.cluster_id = {int(cid)}")
            self.conn.execute("UPDATE clusters SET name = ? WHERE cluster_id = ?", (display_name(list(range(len(points))), points), cid))

    def records(self) -> list[dict]:
        """The cluster records of the current state (contract ``cluster``)."""
        self.rename_orphans()
        points = self.points(with_vectors=False)
        assigned = self.assignments()
        labels = np.array([assigned[(p.item, p.text)][0] for p in points], dtype=int)
        probs = np.array([assigned[(p.item, p.text)][2] for p in points])
        membership = [assigned[(p.item, p.text)][1] for p in points]
        scores = np.array([assigned[(p.item, p.text)][3] for p in points], dtype=float)
        names = {cid: name for cid, name in self.conn.execute("SELECT cluster_id, name FROM clusters")}
        return build_clusters(points, labels, probs, names=names, membership=membership, outlier_scores=scores)


class OutlierScorer:
    """The outlier score of a text that joins after the fit (module docstring, "Outlier scores"):
    GLOSH against the fitted, clustered member its assignment looked at. Every vector is
    projected on its own (:meth:`FitSpace.point`), so a text's score does not depend on which
    other texts arrive with it."""

    def __init__(self, conn: sqlite3.Connection, item: str, space: FitSpace, members: np.ndarray, member_fit: list[tuple[float, float]]):
        self.space = space
        self.members = np.stack([space.point(v) for v in members])  # the candidates' rows, fit space
        self.member_fit = member_fit  # (lambda_max, core distance) per candidate
        self.everyone = self.copies = None
        if space.min_samples > 1:  # a core distance beyond the nearest fitted copy: every fitted text counts
            rows = conn.execute(
                "SELECT vector, copies FROM texts WHERE item = ? AND membership = 'fitted' AND copies IS NOT NULL ORDER BY text", (item,)
            ).fetchall()
            self.everyone = np.stack([space.point(np.frombuffer(blob, dtype="<f4")) for blob, _ in rows])
            self.copies = np.array([copies for _, copies in rows])

    def core_distance(self, q: np.ndarray) -> float:
        """Distance from ``q`` (fit space) to its ``min_samples``-th nearest fitted copy; with
        min_samples 1 that is at most the distance to the member scored against, so 0 stands in."""
        k = self.space.min_samples
        if self.everyone is None:
            return 0.0
        distances = np.sqrt(((self.everyone - q) ** 2).sum(axis=1))  # elementwise: the same whatever else arrives
        order = np.argsort(distances, kind="stable")[:k]
        reached = np.cumsum(self.copies[order])
        return float(distances[order[min(int(np.searchsorted(reached, k)), len(order) - 1)]])

    def score(self, vector: np.ndarray, member: int) -> float:
        q = self.space.point(vector)
        lambda_max, member_core = self.member_fit[member]
        distance = float(np.sqrt(((q - self.members[member]) ** 2).sum()))
        reach = max(distance, member_core, self.core_distance(q))
        return glosh(np.inf if reach <= 0 else 1.0 / reach, lambda_max)


def fit_sample(points: list[TextPoint], limit: int | None) -> list[TextPoint]:
    """The texts HDBSCAN fits: all of them, or of each item group with more than ``limit`` the
    ``limit`` most frequent (ties by sha256 of the text, so neither the order of the files nor of
    the runs matters), in the order given."""
    if not limit:
        return points
    chosen: set[tuple[str, str]] = set()
    for item in sorted({p.item for p in points}):
        group = [p for p in points if p.item == item]
        if len(group) > limit:
            group = sorted(group, key=lambda p: (-p.count, hashlib.sha256(p.text.encode("utf-8", "surrogatepass")).hexdigest()))[:limit]
        chosen.update((p.item, p.text) for p in group)
    return [p for p in points if (p.item, p.text) in chosen]


def update_clusters(
    embed_files: list[str | Path], output: str | Path, options: dict, threads: int = 1, log: Callable[[str], None] = print, refit: str | None = None
) -> tuple[list[dict], RunInfo]:
    """Bring the state beside ``output`` up to ``embed_files`` and return the cluster records.
    ``refit`` overrides ``options['refit']`` (``shardlens recluster`` passes ``always``)."""
    mode = refit or options["refit"]
    if mode not in REFIT_MODES:
        raise ValueError(f"labels.refit must be one of {', '.join(REFIT_MODES)}, not {mode!r}")
    info = RunInfo(mode=mode)
    state = ClusterState(state_path(output))
    try:
        state.conn.execute("BEGIN IMMEDIATE")
        state.sync_inputs(embed_files, info)
        if mode == "always":
            info.refit, info.reason = True, "labels.refit is always"
        elif state.meta("fit") is None:
            info.refit, info.reason = True, "no earlier fit"
        elif state.meta("fit") != _fit_digest(options):
            info.refit, info.reason = True, "the fit options changed"
        elif state.older_version() is not None:
            info.refit, info.reason = True, f"the state was written by an older shardlens: version {state.older_version()}, without outlier scores"
        else:
            state.assign_new(options, info)
            share = state.unassigned_share()
            info.extra["unassigned_share"] = round(share, 4)
            if mode == "auto" and share > options["refit_unassigned_share"]:
                info.refit = True
                info.reason = (
                    f"{share:.1%} of the texts joined no cluster since the last fit (labels.refit_unassigned_share {options['refit_unassigned_share']})"
                )
        if info.refit:
            state.refit(options, threads, info)
        records = state.records()
        state.conn.execute("COMMIT")
    except BaseException:
        if state.conn.in_transaction:
            state.conn.execute("ROLLBACK")
        raise
    finally:
        state.close()
    what = f"refit ({info.reason})" if info.refit else f"{info.assigned} of {info.new_texts} new texts assigned, {info.left_unclustered} left unclustered"
    log(
        f"cluster [{mode}]: {info.files_read} embedding files read, {info.files_unchanged} unchanged, {info.files_removed} removed; "
        f"{info.removed_texts} texts gone; {what}"
    )
    return records, info
