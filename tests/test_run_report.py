"""The results section of the Snakemake report: the figures' data from a small real catalog, the
figures themselves (the numbers they draw, not their pixels), and the report Snakemake builds on the
demo run with every figure inside."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml
from PIL import Image

from shardlens import run_report
from shardlens.catalog import connect
from shardlens.jobs import JobSummary
from shardlens.report import write_ingest_report
from shardlens.shard_jobs import write_shard_jobs
from shardlens.stages import SHARD_STAGES

from conftest import snakemake


def _insert(conn: sqlite3.Connection, table: str, **row) -> None:
    conn.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))


@pytest.fixture()
def small_catalog(tmp_path: Path) -> Path:
    """Six listed files (one broken, named like a formula and a script), gate scores on both sides of 0.8,
    five regions of three classes, three OCR lines, three clusters and the unclustered bucket."""
    db = tmp_path / "annotations.sqlite"
    conn = connect(db)
    files = [
        ("a.jpg", "ia", "ok", None),
        ("b.jpg", "ib", "ok", None),
        ("c.jpg", "ic", "ok", None),
        ("d.jpg", "id", "ok", None),
        ("=<script>alert(1)</script>.png", None, "error", "corrupt"),
        ("=cmd.jpg", "ie", "ok", None),
    ]
    for path, image_id, status, error in files:
        _insert(conn, "paths", shard="0000", path=path, image_id=image_id, bytes=100, width=64, height=48, format="JPEG", status=status, error=error)
    for image_id, score, decision, reason in [("ia", 0.95, "ocr", None), ("ib", 0.81, "ocr", None), ("ic", 0.42, "skip", "below_threshold"), ("id", 0.0, "skip", "no_text_regions"), ("ie", 0.0, "skip", "no_text_regions")]:  # fmt: skip
        _insert(
            conn,
            "gate",
            shard="0000",
            image_id=image_id,
            has_text=int(score > 0),
            score=score,
            decision=decision,
            skip_reason=reason,
            text_regions=int(score > 0),
            gate_version="t",
        )
    for i, (image_id, caption) in enumerate([("ia", "cup"), ("ia", "cup"), ("ib", "dog"), ("ic", "cup"), ("id", "$x^2$ sign")]):
        labels = json.dumps([{"label": caption, "score": 0.9, "source": "detector"}])
        _insert(
            conn,
            "regions",
            shard="0000",
            image_id=image_id,
            region_id=i,
            bbox="[1,2,3,4]",
            score=0.9,
            labels=labels,
            caption=caption,
            detector_label=caption,
            detector_version="t",
        )
    for n, (image_id, conf) in enumerate([("ia", 0.99), ("ia", 0.5), ("ib", 0.75)]):
        _insert(
            conn,
            "ocr_lines",
            shard="0000",
            image_id=image_id,
            line_no=n,
            region_id=None,
            text=f"line {n}",
            confidence=conf,
            language=None,
            bbox="[0,0,5,5]",
            source="t",
        )
    for cluster_id, item, label, size in [(0, "region", "cup", 3), (1, "text", "line", 2), (2, "region", "dog", 7), (-1, None, "unclustered", 4)]:
        _insert(conn, "clusters", cluster_id=cluster_id, item=item, label=label, keywords="[]", size=size)
    conn.close()
    return db


def test_figure_data_comes_from_the_catalog(small_catalog):
    conn = sqlite3.connect(small_catalog)
    scores = run_report.gate_scores(conn)
    assert scores == {"ocr": [0.81, 0.95], "skip": [0.0, 0.0, 0.42]}
    assert run_report.detections_per_class(conn) == [("cup", 3), ("$x^2$ sign", 1), ("dog", 1)]
    clusters = run_report.clusters_by_size(conn)
    assert [(c.cluster_id, c.size) for c in clusters] == [(2, 7), (0, 3), (1, 2)]  # no 'unclustered' bucket
    assert run_report.ocr_confidences(conn) == [0.5, 0.75, 0.99]


def test_gate_figure_marks_the_threshold_and_stacks_decisions(small_catalog):
    conn = sqlite3.connect(small_catalog)
    fig = run_report.plot_gate_scores(run_report.gate_scores(conn), threshold=0.8)
    ax = fig.axes[0]
    line = next(l for l in ax.get_lines() if l.get_gid() == "threshold")
    assert set(line.get_xdata()) == {0.8}
    assert "threshold 0.8" in [t.get_text() for t in ax.get_legend().get_texts()]
    skipped, sent = (sum(bar.get_height() for bar in container) for container in ax.containers)
    assert (skipped, sent) == (3, 2)
    assert max(bar.get_x() + bar.get_width() for bar in ax.containers[0] if bar.get_height()) <= 0.8  # all below the line
    assert min(bar.get_x() for bar in ax.containers[1] if bar.get_height()) >= 0.8


def test_class_and_cluster_figures_draw_the_counts(small_catalog):
    conn = sqlite3.connect(small_catalog)
    fig = run_report.plot_detections_per_class(run_report.detections_per_class(conn))
    ax = fig.axes[0]
    drawn = {t.get_text(): p.get_width() for t, p in zip(ax.get_yticklabels(), ax.patches)}
    assert drawn == {"cup": 3, "$x^2$ sign": 1, "dog": 1}  # a '$' label is text, not mathtext
    ax = run_report.plot_cluster_sizes(run_report.clusters_by_size(conn)).axes[0]
    per_size = {round(bar.get_x() + bar.get_width() / 2): bar.get_height() for bar in ax.patches if bar.get_height()}
    assert per_size == {2: 1, 3: 1, 7: 1}  # one bar per size, the 'unclustered' bucket (4) left out
    fig = run_report.plot_largest_clusters(run_report.clusters_by_size(conn), top=2)
    ax = fig.axes[0]
    names = [t.get_text() for t in ax.get_yticklabels()][::-1]
    assert names == ["dog  [label #2]", "cup  [label #0]"] and [p.get_width() for p in ax.patches][::-1] == [7, 3]


def test_classes_beyond_the_top_are_one_bar():
    counts = [(f"class {i:02d}", 100 - i) for i in range(40)]
    ax = run_report.plot_detections_per_class(counts, top=10).axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()][::-1]
    assert len(labels) == 10 and labels[-1] == "(31 other classes)"
    assert ax.patches[0].get_width() == sum(100 - i for i in range(9, 40))


def _job_log(path: Path, stage: str, images: int, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    summary = JobSummary(shard=path.stem, stage=stage, images=images)
    with path.open("w") as handle:
        handle.write("2026-01-01 shardlens INFO progress\n")
        line = summary.finish(stream=handle)
    # the seconds a real job measured are replaced by known ones, in the line the job wrote
    path.write_text(path.read_text().replace(json.dumps(line, sort_keys=True), json.dumps({**line, "seconds": seconds}, sort_keys=True)))


def _benchmark(path: Path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"s\th:m:s\tmax_rss\n{seconds}\t0:00:01\t10.0\n")


def test_stage_timings_from_job_summaries_and_benchmarks(tmp_path):
    _job_log(tmp_path / "logs/ocr/0000.log", "ocr", 4, 2.0)
    _job_log(tmp_path / "logs/ocr/0001.log", "ocr", 6, 3.0)
    _job_log(tmp_path / "logs/ingest/0000.log", "ingest", 10, 0.5)
    (tmp_path / "logs/gate").mkdir()
    (tmp_path / "logs/gate/0000.log").write_text("a job that failed before its summary\n")
    _benchmark(tmp_path / "benchmarks/ocr/0000.tsv", 4.0)
    _benchmark(tmp_path / "benchmarks/ocr/0001.tsv", 6.0)
    records = []
    for shard in ("0000", "0001"):
        stages = [stage for stage in SHARD_STAGES if (tmp_path / f"logs/{stage}/{shard}.log").exists()]
        logs = {stage: tmp_path / f"logs/{stage}/{shard}.log" for stage in stages}
        benchmarks = {stage: tmp_path / f"benchmarks/{stage}/{shard}.tsv" for stage in SHARD_STAGES}
        records.append(tmp_path / f"logs/jobs/{shard}.json")
        written = write_shard_jobs(records[-1], shard, logs, benchmarks)
        assert json.loads(records[-1].read_text()) == written
    assert written["stages"]["ocr"] == {"images": 6, "seconds": 3.0, "wall_seconds": 6.0}
    assert written["stages"]["ingest"] == {"images": None, "seconds": None, "wall_seconds": None}  # no job ran
    timings = run_report.stage_timings(records)
    by_stage = {t.stage: t for t in timings}
    assert [t.stage for t in timings] == ["ingest", "ocr"]  # run order; gate has no summary
    assert by_stage["ocr"].images == 10 and by_stage["ocr"].per_image == pytest.approx(0.5)
    assert by_stage["ocr"].wall_per_image == pytest.approx(1.0)
    assert by_stage["ingest"].per_image == pytest.approx(0.05) and by_stage["ingest"].wall_per_image is None
    ax = run_report.plot_stage_seconds(timings).axes[0]
    widths = sorted(p.get_width() for p in ax.patches)
    assert widths == pytest.approx(sorted([0.05, 0.5, 0.0, 1.0]))


def test_write_run_report_writes_real_pngs_and_an_escaped_table(small_catalog, tmp_path):
    report_csv = tmp_path / "ingest_report.csv"
    write_ingest_report(small_catalog, report_csv)
    outputs = {name: tmp_path / "out" / f"{name}.png" for name in run_report.FIGURES}
    outputs["ingest_table"] = tmp_path / "out" / "ingest.html"
    numbers = run_report.write_run_report(small_catalog, outputs, gate_threshold=0.8, ingest_report=report_csv)
    assert numbers["regions"] == 5 and numbers["clusters"] == 3 and numbers["ocr_lines"] == 3
    for name in run_report.FIGURES:
        with Image.open(outputs[name]) as image:
            assert image.format == "PNG" and image.width > 300 and image.height > 200
            lo, hi = image.convert("L").getextrema()
            assert hi - lo > 100, name  # something is drawn
    page = outputs["ingest_table"].read_text()
    # the true path (the CSV's spreadsheet quote undone), escaped
    assert "<script>alert" not in page and f"<td>{html.escape('=<script>alert(1)</script>.png')}</td>" in page
    assert "<td>corrupt</td>" in page
    assert '<td>processed</td><td></td><td class="n">5</td>' in page


def test_empty_catalog_still_gives_every_figure(tmp_path):
    db = tmp_path / "empty.sqlite"
    connect(db).close()
    report_csv = tmp_path / "ingest_report.csv"
    write_ingest_report(db, report_csv)
    outputs = {name: tmp_path / f"{name}.png" for name in (*run_report.FIGURES, *run_report.TABLES)}
    run_report.write_run_report(db, outputs, gate_threshold=0.5, ingest_report=report_csv)
    assert all(Image.open(outputs[name]).format == "PNG" for name in run_report.FIGURES)
    assert "every listed file was processed" in outputs["ingest_table"].read_text()


# ----------------------------------------------------------------------- the real report


def _report_results(report_html: Path) -> dict:
    text = report_html.read_text(encoding="utf-8")
    match = re.search(r"var results = (\{.*?\});\n", text, re.S)
    assert match, "no results in the report"
    return json.loads(match.group(1))


def _data(uri: str) -> bytes:
    head, payload = uri.split(",", 1)
    assert head.endswith(";base64"), head
    return base64.b64decode(payload)


@pytest.mark.slow
def test_snakemake_report_of_the_demo_has_every_figure(demo_run, tmp_path):
    figures = sorted((demo_run / "results/report").glob("*.png"))
    assert {p.stem for p in figures} == set(run_report.FIGURES)  # `rule all` made them
    drawn = run_report.job_summary(demo_run / "logs/report_figures.log")["extra"]
    assert set(drawn["stages"]) == set(SHARD_STAGES) and all(v > 0 for v in drawn["stages"].values())  # every job's summary read
    work = shutil.copytree(demo_run, tmp_path / "run", symlinks=True)
    snakemake(work, "--report", "results/report.html")
    results = _report_results(work / "results/report.html")
    config = yaml.safe_load((work / "config/config.yaml").read_text()) or {}
    threshold = (config.get("gate") or {}).get("score_threshold", 0.8)
    conn = sqlite3.connect(f"file:{work / 'results/annotations.sqlite'}?mode=ro", uri=True)

    for name in run_report.FIGURES:
        entry = results[f"results/report/{name}.png"]
        assert entry["mime_type"] == "image/png" and entry["caption"].strip(), name
        png = _data(entry["data_uri"])
        assert png == (work / f"results/report/{name}.png").read_bytes()
        with Image.open(io.BytesIO(png)) as image:
            image.load()
            lo, hi = image.convert("L").getextrema()
            assert image.width > 300 and hi - lo > 100, name
    assert f"{threshold:g}" in results["results/report/gate_scores.png"]["caption"]

    table = results["results/report/ingest_report.html"]
    assert table["mime_type"] == "text/html"
    page = _data(table["data_uri"]).decode("utf-8")
    # processed: one path per image and shard (a copy in the same shard is skipped as a duplicate)
    processed = conn.execute("SELECT COUNT(*) FROM (SELECT DISTINCT shard, image_id FROM paths WHERE status = 'ok')").fetchone()[0]
    assert f'<td>processed</td><td></td><td class="n">{processed}</td>' in page
    with (work / "results/ingest_report.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(re.findall(r"<tr><td>", page.split("Files skipped or failed", 1)[1])) == len(rows)
