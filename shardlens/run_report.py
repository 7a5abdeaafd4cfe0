"""The results section of the run's Snakemake report (``snakemake --report results/report.html``):
figures of the catalog and of the jobs' timings, and the ingest report as a table.

Not to be confused with :mod:`shardlens.report`, the ingest report (``results/ingest_report.csv``),
which this module shows as one of its tables.

Each figure has a data function (plain values from the catalog, opened read-only, or from the
shards' job records, :mod:`shardlens.shard_jobs`) and a plot function that draws those values with matplotlib's
object-oriented API (no pyplot, no global state); :func:`write_run_report` writes them all, the
``report_figures`` rule's job. The captions are ``report/*.rst`` beside the rules.
"""

from __future__ import annotations

import csv
import html
import io
import json
import sqlite3
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

from .atomic import atomic_open
from .catalog import connect_readonly
from .catalog_rules import IS_CLUSTER
from .report import ingest_outcomes
from .shard_jobs import job_summary  # noqa: F401  (the report's readers use it from here too)
from .spreadsheet import csv_value
from .stages import SHARD_STAGES

# The rule's outputs, one file each (the names of its named outputs).
FIGURES = ("gate_scores", "detections_per_class", "cluster_sizes", "largest_clusters", "ocr_confidence", "stage_seconds")
TABLES = ("ingest_table",)

TOP_CLASSES = 30  # classes drawn one bar each; the rest are one bar "N other classes"
TOP_CLUSTERS = 20
MAX_TABLE_ROWS = 1000  # rows of the ingest report shown in the HTML; the CSV has them all
DPI = 110


# ------------------------------------------------------------------------------------- data


def gate_scores(conn: sqlite3.Connection) -> dict[str, list[float]]:
    """The text gate's score of every image, by decision (``ocr`` / ``skip``)."""
    out: dict[str, list[float]] = {"ocr": [], "skip": []}
    for decision, score in conn.execute("SELECT decision, score FROM gate ORDER BY score"):
        out.setdefault(decision, []).append(float(score))
    return out


def detections_per_class(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    """Regions per machine label (a region's top candidate), most frequent first."""
    rows = conn.execute("SELECT caption, COUNT(*) FROM regions GROUP BY caption ORDER BY COUNT(*) DESC, caption").fetchall()
    return [(str(label), int(n)) for label, n in rows]


@dataclass(frozen=True)
class Cluster:
    cluster_id: int
    item: str  # 'region' (region labels) or 'text' (OCR lines)
    label: str
    size: int  # occurrences of its texts


def clusters_by_size(conn: sqlite3.Connection) -> list[Cluster]:
    """HDBSCAN's clusters (not the 'unclustered' bucket), largest first."""
    rows = conn.execute(f"SELECT cluster_id, item, label, size FROM clusters WHERE {IS_CLUSTER} ORDER BY size DESC, cluster_id")
    return [Cluster(int(c), str(item or ""), str(label), int(size)) for c, item, label, size in rows]


def ocr_confidences(conn: sqlite3.Connection) -> list[float]:
    """The recognition confidence of every OCR line."""
    return [float(c) for (c,) in conn.execute("SELECT confidence FROM ocr_lines ORDER BY confidence")]


@dataclass(frozen=True)
class StageTiming:
    stage: str
    jobs: int
    images: int  # images the stage's jobs processed (OCR: those the gate let through)
    seconds: float  # the jobs' own time (their summary lines: decode and model work)
    wall_seconds: float | None  # the jobs' whole run (Snakemake's benchmarks: start-up, model load)

    @property
    def per_image(self) -> float | None:
        return self.seconds / self.images if self.images else None

    @property
    def wall_per_image(self) -> float | None:
        return self.wall_seconds / self.images if self.images and self.wall_seconds is not None else None


def stage_timings(shard_jobs: Iterable[str | Path]) -> list[StageTiming]:
    """Per shard stage (in run order), the images and seconds of its jobs: from every shard's
    ``logs/jobs/{shard}.json`` (:func:`write_shard_jobs`)."""
    images: Counter = Counter()
    seconds: Counter = Counter()
    jobs: Counter = Counter()
    wall: dict[str, float] = {}
    for path in shard_jobs:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
        for stage, job in record["stages"].items():
            if stage not in SHARD_STAGES:
                continue
            if job["images"] is not None:
                jobs[stage] += 1
                images[stage] += job["images"]
                seconds[stage] += job["seconds"]
            if job["wall_seconds"] is not None:
                wall[stage] = wall.get(stage, 0.0) + job["wall_seconds"]
    return [
        StageTiming(stage, jobs[stage], images[stage], round(seconds[stage], 3), round(wall[stage], 3) if stage in wall else None)
        for stage in SHARD_STAGES
        if jobs[stage] or stage in wall
    ]


def ingest_rows(ingest_report_csv: str | Path) -> list[dict]:
    """The rows of ``results/ingest_report.csv`` with their true values (spreadsheet quoting undone)."""
    with Path(ingest_report_csv).open(encoding="utf-8", newline="") as handle:
        return [{k: csv_value(v or "") for k, v in row.items()} for row in csv.DictReader(handle)]


# ------------------------------------------------------------------------------------ plots


def _figure(width: float = 7.0, height: float = 4.0) -> tuple[Figure, object]:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    return fig, fig.add_subplot()


def _empty(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, parse_math=False, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_gate_scores(scores: dict[str, list[float]], threshold: float) -> Figure:
    fig, ax = _figure()
    total = sum(len(v) for v in scores.values())
    if not total:
        _empty(ax, "no image reached the text gate")
        return fig
    bins = [i / 40 for i in range(41)]
    names = {"ocr": "sent to OCR", "skip": "skipped"}
    decisions = [d for d in ("skip", "ocr") if scores.get(d)] + [d for d in scores if d not in ("skip", "ocr") and scores[d]]
    ax.hist(
        [scores[d] for d in decisions],
        bins=bins,
        stacked=True,
        label=[f"{names.get(d, d)} ({len(scores[d])})" for d in decisions],
        color=[{"ocr": "tab:blue", "skip": "tab:gray"}.get(d, "tab:orange") for d in decisions],
    )
    ax.axvline(threshold, color="tab:red", linestyle="--", linewidth=1.5, label=f"threshold {threshold:g}", gid="threshold")
    ax.set_xlim(0, 1)
    ax.set_xlabel("gate score (best text region)")
    ax.set_ylabel("images")
    ax.set_title(f"Text gate scores of {total} images")
    ax.legend(loc="upper center")
    return fig


def _top(pairs: list[tuple[str, int]], top: int) -> list[tuple[str, int]]:
    if len(pairs) <= top:
        return list(pairs)
    rest = pairs[top - 1 :]
    return list(pairs[: top - 1]) + [(f"({len(rest)} other classes)", sum(n for _, n in rest))]


def plot_detections_per_class(counts: list[tuple[str, int]], top: int = TOP_CLASSES) -> Figure:
    shown = _top(counts, top)
    fig, ax = _figure(7.0, max(2.5, 0.28 * len(shown) + 1.2))
    if not shown:
        _empty(ax, "no detections in this run")
        return fig
    labels = [label for label, _ in shown][::-1]
    values = [n for _, n in shown][::-1]
    bars = ax.barh(range(len(shown)), values, color="tab:green")
    ax.bar_label(bars, padding=2)
    ax.set_yticks(range(len(shown)), labels, parse_math=False)
    ax.set_xlabel("regions")
    ax.set_title(f"Detections per class: {sum(n for _, n in counts)} regions, {len(counts)} classes")
    ax.margins(x=0.1)
    return fig


def plot_cluster_sizes(clusters: list[Cluster]) -> Figure:
    fig, ax = _figure()
    if not clusters:
        _empty(ax, "no clusters in this run")
        return fig
    sizes = [c.size for c in clusters]
    if max(sizes) - min(sizes) <= 60:  # one bar per size
        bins: int | list[float] = [b - 0.5 for b in range(min(sizes), max(sizes) + 2)]
    else:
        bins = 30
    ax.hist(sizes, bins=bins, color="tab:purple", edgecolor="white")
    ax.set_xlabel("cluster size (occurrences of its texts)")
    ax.set_ylabel("clusters")
    ax.set_title(f"Sizes of {len(clusters)} clusters (median {sorted(sizes)[len(sizes) // 2]}, largest {max(sizes)})")
    return fig


def cluster_name(cluster: Cluster) -> str:
    kind = {"region": "label", "text": "text"}.get(cluster.item, cluster.item)
    label = cluster.label if len(cluster.label) <= 40 else cluster.label[:39] + "…"
    return f"{label}  [{kind} #{cluster.cluster_id}]"


def plot_largest_clusters(clusters: list[Cluster], top: int = TOP_CLUSTERS) -> Figure:
    shown = clusters[:top]
    fig, ax = _figure(7.5, max(2.5, 0.3 * len(shown) + 1.2))
    if not shown:
        _empty(ax, "no clusters in this run")
        return fig
    colors = {"region": "tab:green", "text": "tab:blue"}
    bars = ax.barh(range(len(shown)), [c.size for c in shown][::-1], color=[colors.get(c.item, "tab:gray") for c in shown][::-1])
    ax.bar_label(bars, padding=2)
    ax.set_yticks(range(len(shown)), [cluster_name(c) for c in shown][::-1], parse_math=False)
    ax.set_xlabel("size (occurrences of its texts)")
    ax.set_title(f"The {len(shown)} largest of {len(clusters)} clusters")
    ax.margins(x=0.1)
    return fig


def plot_ocr_confidence(confidences: list[float]) -> Figure:
    fig, ax = _figure()
    if not confidences:
        _empty(ax, "no OCR lines in this run")
        return fig
    ax.hist(confidences, bins=[i / 40 for i in range(41)], color="tab:blue")
    ax.set_xlim(0, 1)
    ax.set_xlabel("recognition confidence")
    ax.set_ylabel("OCR lines")
    median = sorted(confidences)[len(confidences) // 2]
    ax.set_title(f"OCR confidence of {len(confidences)} lines (median {median:.2f})")
    return fig


def plot_stage_seconds(timings: list[StageTiming]) -> Figure:
    fig, ax = _figure(7.0, 3.8)
    timings = [t for t in timings if t.images]
    if not timings:
        _empty(ax, "no job summaries or benchmarks found")
        return fig
    names = [f"{t.stage}\n({t.images} img)" for t in timings]
    height = 0.38
    own = [t.per_image for t in timings]
    bars = ax.barh([i + height / 2 for i in range(len(timings))], own, height, color="tab:blue", label="in the job (decode, model)")
    ax.bar_label(bars, labels=[f"{v:.3g} s" for v in own], padding=2, fontsize=8)
    if any(t.wall_per_image is not None for t in timings):
        wall = [t.wall_per_image or 0.0 for t in timings]
        bars = ax.barh([i - height / 2 for i in range(len(timings))], wall, height, color="tab:orange", label="whole job (start-up, model load)")
        ax.bar_label(bars, labels=[f"{v:.3g} s" for v in wall], padding=2, fontsize=8)
    ax.set_yticks(range(len(timings)), names)
    ax.invert_yaxis()
    ax.set_xlabel("seconds per image")
    ax.set_title("Seconds per image per stage")
    ax.legend(loc="lower right", fontsize=8)
    ax.margins(x=0.15)
    return fig


# ------------------------------------------------------------------------------------ table

_TABLE_CSS = """
body { font-family: sans-serif; font-size: 14px; margin: 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.n { text-align: right; }
"""


def ingest_table_html(rows: list[dict], outcomes: Counter, reasons: Counter, source: str = "results/ingest_report.csv") -> str:
    """A self-contained HTML page: the counts of every outcome and reason, then the rows of the
    ingest report (files skipped or failed), every value escaped."""
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8"><title>Ingest report</title>',
        f"<style>{_TABLE_CSS}</style></head><body>",
        "<h2>Files by outcome</h2>",
        "<table><thead><tr><th>outcome</th><th>reason</th><th>files</th></tr></thead><tbody>",
    ]
    parts.append(f'<tr><td>processed</td><td></td><td class="n">{outcomes.get("processed", 0)}</td></tr>')
    for (outcome, reason), n in sorted(reasons.items()):
        parts.append(f'<tr><td>{e(outcome)}</td><td>{e(reason)}</td><td class="n">{n}</td></tr>')
    parts.append("</tbody></table>")
    parts.append(f"<h2>Files skipped or failed ({len(rows)})</h2>")
    if not rows:
        parts.append(f"<p>None: every listed file was processed ({e(source)} has no rows).</p>")
    else:
        columns = list(rows[0])
        parts.append("<table><thead><tr>" + "".join(f"<th>{e(c)}</th>" for c in columns) + "</tr></thead><tbody>")
        for row in rows[:MAX_TABLE_ROWS]:
            parts.append("<tr>" + "".join(f"<td>{e(str(row.get(c, '')))}</td>" for c in columns) + "</tr>")
        parts.append("</tbody></table>")
        if len(rows) > MAX_TABLE_ROWS:
            parts.append(f"<p>… and {len(rows) - MAX_TABLE_ROWS} more rows in {e(source)}.</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# ------------------------------------------------------------------------------------ write


def _save(fig: Figure, path: str | Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png", metadata={"Software": None})
    with atomic_open(path, "wb") as handle:
        handle.write(buf.getvalue())


def write_run_report(
    db: str | Path,
    outputs: dict[str, str | Path],
    *,
    gate_threshold: float,
    ingest_report: str | Path,
    listing_skipped: str | Path | None = None,
    shard_jobs: Iterable[str | Path] = (),
) -> dict:
    """Write every figure of :data:`FIGURES` and table of :data:`TABLES` to ``outputs[name]``
    (atomically); return the numbers they show (for the log)."""
    missing = sorted(set(FIGURES + TABLES) - set(outputs))
    if missing:
        raise ValueError(f"write_run_report: no output path for {', '.join(missing)}")
    conn = connect_readonly(db)
    try:
        scores = gate_scores(conn)
        classes = detections_per_class(conn)
        clusters = clusters_by_size(conn)
        confidences = ocr_confidences(conn)
    finally:
        conn.close()
    timings = stage_timings(shard_jobs)
    _save(plot_gate_scores(scores, gate_threshold), outputs["gate_scores"])
    _save(plot_detections_per_class(classes), outputs["detections_per_class"])
    _save(plot_cluster_sizes(clusters), outputs["cluster_sizes"])
    _save(plot_largest_clusters(clusters), outputs["largest_clusters"])
    _save(plot_ocr_confidence(confidences), outputs["ocr_confidence"])
    _save(plot_stage_seconds(timings), outputs["stage_seconds"])

    outcomes = ingest_outcomes(db, listing_skipped)
    counts = Counter({"processed": outcomes.processed}) + Counter(row["outcome"] for row in outcomes.rows)
    reasons = Counter((row["outcome"], row["reason"]) for row in outcomes.rows)
    rows = ingest_rows(ingest_report)
    with atomic_open(outputs["ingest_table"], "w") as handle:
        handle.write(ingest_table_html(rows, counts, reasons, source=str(ingest_report)))
    return {
        "gate_images": {d: len(v) for d, v in scores.items()},
        "classes": len(classes),
        "regions": sum(n for _, n in classes),
        "clusters": len(clusters),
        "ocr_lines": len(confidences),
        "stages": {t.stage: t.per_image for t in timings},
        "ingest_rows": len(rows),
    }


def run_report_figures(db: str | Path, outputs: dict[str, str | Path], **kwargs) -> dict:
    """The report_figures rule: the figures and table, then the job's JSON summary line."""
    from .jobs import JobSummary

    summary = JobSummary(shard="all", stage="report_figures")
    numbers = write_run_report(db, outputs, **kwargs)
    summary.records = len(FIGURES) + len(TABLES)
    summary.images = sum(numbers["gate_images"].values())
    summary.extra = numbers
    summary.finish()
    return numbers
