"""The real workflow on a hostile corpus: every file gets its outcome in the cache and in SQLite
and no shard stops; boxes are in the EXIF-rotated frame; the ingest report lists what was not
processed; a run killed with SIGKILL resumes to the same results as an uninterrupted one; a
second run on the same folder is locked out; a truncated cache file is caught, named, and
remade with `--forcerun`.

Runs with root's file override dropped (see tests/badinputs.py), so the chmod 000 file really is
unreadable.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shardlens.records import read_jsonl
from shardlens.report import summary_line, write_ingest_report
from shardlens.shard_versions import TRACKING_TABLES

from badinputs import CORPUS_LIMITS, ROTATED_TEXT, UNLISTED, SmallDisk, copy_corpus, drop_file_override, make_corpus, read_only, rotated_sign_box, unprivileged
from conftest import REPO, copy_tree, snakemake, write_config

pytestmark = pytest.mark.slow

LOCKED = "Directory cannot be locked"


def corpus_config(root: Path) -> dict:
    return {"images": str(root), "shards": {"count": 2}, "listing": {"follow_symlinks": True}, "limits": CORPUS_LIMITS}


def run(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    with unprivileged():
        return snakemake(workdir, *args, check=check)


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("corpus_run")
    root = base / "images"
    cases = make_corpus(root)
    workdir = base / "run"
    write_config(workdir, **corpus_config(root))
    with read_only(root) as how:  # the image folder is on a read-only mount: nothing is written there
        with pytest.raises(OSError):
            (root / "probe").write_bytes(b"")
        started = time.monotonic()
        run(workdir, "--cores", "2")
        print(f"\ncorpus run on a {how} image folder: {time.monotonic() - started:.0f} s")
    return root, cases, workdir


def ingest_records(workdir: Path) -> dict[str, dict]:
    out = {}
    for path in sorted((workdir / "cache" / "ingest").glob("*.jsonl")):
        for record in read_jsonl(path, "ingest"):
            out[record["path"]] = record | {"shard": path.stem}
    return out


def snapshot(workdir: Path) -> tuple[dict, dict, list[str]]:
    """Cache files (manifest without generated_at), every catalog table but runs and reviews
    (timestamps) and the change tracking (the epoch is new with each catalog), and the hidden
    temporary files a killed job may leave."""
    cache, temporary = {}, []
    for path in sorted((workdir / "cache").rglob("*")):
        rel = path.relative_to(workdir / "cache").as_posix()
        if not path.is_file() or rel.startswith("manifests/") or rel.startswith("clusters.state.sqlite"):
            # manifests/: the run history, one entry per run (cache/README.md); the cluster rule's
            # state records the embedding files' mtimes: clusters.jsonl, made from it, is compared
            continue
        if path.name.startswith("."):
            temporary.append(rel)
        elif rel == "manifest.json":
            manifest = json.loads(path.read_text())
            manifest.pop("generated_at")
            # where the images are mounted is recorded (the images param, in the config digest);
            # everything made from them must not depend on it
            manifest.pop("config_digest", None)
            for params in manifest.get("params", {}).values():
                params.pop("images", None)
            cache[rel] = manifest
        else:
            cache[rel] = path.read_bytes()
    conn = sqlite3.connect(workdir / "results" / "annotations.sqlite")
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    db = {t: sorted(conn.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in tables if t not in ("runs", "reviews", *TRACKING_TABLES)}
    conn.close()
    return cache, db, temporary


def test_every_file_gets_its_outcome_in_the_cache_and_in_sqlite(corpus_run):
    root, cases, workdir = corpus_run
    records = ingest_records(workdir)
    conn = sqlite3.connect(workdir / "results" / "annotations.sqlite")
    rows = {r[0]: r[1:] for r in conn.execute("SELECT path, status, error, width, height, format, image_id FROM paths")}
    assert sorted(records) == sorted(rows) == [c.path for c in cases]
    for case in cases:
        r = records[case.path]
        expected = (case.status, case.reason, *(case.size or (None, None)), case.format)
        assert (r["status"], r["error"], r["width"], r["height"], r["format"]) == expected, f"{case.path!r} ({case.what}): {r}"
        assert rows[case.path][:5] == expected, case.path
        if case.duplicate_of:
            assert rows[case.path][5] == rows[case.duplicate_of][5]
    # no shard stopped: every shard has every stage, and every decodable image went through the gate
    manifest = json.loads((workdir / "cache" / "manifest.json").read_text())
    assert all(set(entry) == {"ingest", "gate", "ocr", "detect", "regions", "embed"} for entry in manifest["shards"].values())
    gated = {r[0]: r[1] for r in conn.execute("SELECT image_id, skip_reason FROM gate")}
    for case in cases:
        image_id = rows[case.path][5]
        if case.status == "ok":
            assert image_id in gated and gated[image_id] != "ingest_error", case.path
        elif image_id is not None:
            assert gated.get(image_id) == "ingest_error", case.path
    conn.close()


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_boxes_are_in_the_exif_rotated_frame(corpus_run):
    _, _, workdir = corpus_run
    conn = sqlite3.connect(workdir / "results" / "annotations.sqlite")
    frame = {r[0]: (r[1], r[2]) for r in conn.execute("SELECT image_id, width, height FROM images WHERE status = 'ok'")}
    # the sign's text is read where a person sees it (stored turned left, EXIF orientation 6)
    lines = conn.execute("SELECT o.text, o.bbox FROM ocr_lines o JOIN paths p USING (image_id) WHERE p.path = 'rotated/sign.jpg'").fetchall()
    assert lines, "no text read from the rotated sign"
    text, bbox = max(lines, key=lambda line: _iou(json.loads(line[1]), rotated_sign_box()))
    assert text.replace(" ", "") == ROTATED_TEXT.replace(" ", "")
    assert _iou(json.loads(bbox), rotated_sign_box()) > 0.5, (bbox, rotated_sign_box())
    # the photo stored turned right (orientation 8) gives the boxes of the same photo stored upright
    best = {}
    for path in ("rotated/cat.jpg", "rotated/cat_upright.jpg"):
        regions = conn.execute("SELECT r.bbox, r.score FROM regions r JOIN paths p USING (image_id) WHERE p.path = ? ORDER BY r.score DESC", (path,)).fetchall()
        assert regions, f"nothing detected in {path}"
        best[path] = json.loads(regions[0][0])
    assert _iou(best["rotated/cat.jpg"], best["rotated/cat_upright.jpg"]) > 0.9, best
    # every box of every image lies inside its oriented frame
    for table in ("ocr_lines", "regions"):
        for image_id, raw in conn.execute(f"SELECT image_id, bbox FROM {table}"):
            x0, y0, x1, y1 = json.loads(raw)
            width, height = frame[image_id]
            assert -1 <= x0 < x1 <= width + 1 and -1 <= y0 < y1 <= height + 1, (table, raw, width, height)
    conn.close()


def test_ingest_report_lists_every_skipped_or_failed_file(corpus_run, tmp_path):
    _, cases, workdir = corpus_run
    records = ingest_records(workdir)
    counts = write_ingest_report(workdir / "results" / "annotations.sqlite", tmp_path / "ingest_report.csv")
    with (tmp_path / "ingest_report.csv").open(newline="", encoding="utf-8") as handle:
        rows = {row["path"]: row for row in csv.DictReader(handle)}
    failed = {c.path: c.reason for c in cases if c.status == "error"}
    # a copy is skipped when an identical file of the same shard (first in path order) is processed
    first: dict[tuple[str, str], str] = {}
    skipped = set()
    for path in sorted(records):
        r = records[path]
        if r["status"] == "ok":
            if (r["shard"], r["image_id"]) in first:
                skipped.add(path)
            first.setdefault((r["shard"], r["image_id"]), path)
    assert {p: (r["outcome"], r["reason"]) for p, r in rows.items()} == {
        **{p: ("failed", reason) for p, reason in failed.items()},
        **{p: ("skipped", "duplicate") for p in skipped},
    }
    assert all(rows[p]["detail"] for p in rows)
    processed = len(cases) - len(failed) - len(skipped)
    assert (counts["files"], counts["processed"], counts["skipped"], counts["failed"]) == (len(cases), processed, len(skipped), len(failed))
    line = summary_line(counts)
    assert line.startswith(f"ingest: {len(cases)} files: {processed} processed, {len(skipped)} skipped")
    truncated = sum(1 for reason in failed.values() if reason == "truncated")
    assert truncated >= 7  # two cut files, five whose headers declare more than they hold
    assert f"{len(failed)} failed (" in line and f"truncated {truncated}" in line
    # the report reads the same from the cache (which holds listing_skipped.tsv: the name that is
    # not UTF-8) as from the catalog given the same listing_skipped.tsv
    counts = write_ingest_report(workdir / "results" / "annotations.sqlite", tmp_path / "with_skipped.csv", workdir / "cache" / "listing_skipped.tsv")
    again = write_ingest_report(workdir / "cache", tmp_path / "from_cache.csv")
    assert (tmp_path / "from_cache.csv").read_bytes() == (tmp_path / "with_skipped.csv").read_bytes()
    assert {k: v for k, v in again.items() if k != "report"} == {k: v for k, v in counts.items() if k != "report"}


def _wait_for(condition, what: str, proc: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"snakemake ended ({proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_killed_run_resumes_to_the_results_of_an_uninterrupted_run(corpus_run, tmp_path):
    """SIGKILL to the whole process group in the middle of the shard stages, then resume; on the
    way, a second run on the same folder is refused by Snakemake's lock."""
    root, _, baseline = corpus_run
    copy = copy_corpus(root, tmp_path / "images")
    workdir = tmp_path / "run"
    write_config(workdir, **corpus_config(copy))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", "2"]
    with (tmp_path / "first.log").open("w") as log:
        first = subprocess.Popen(cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=drop_file_override)
    try:
        locks = workdir / ".snakemake" / "locks"
        _wait_for(lambda: locks.is_dir() and any(locks.iterdir()), "it locked the folder", first)
        # --rerun-incomplete: otherwise, when a job of the first run is mid-way, Snakemake stops at
        # its incomplete marker before it reaches the lock (a refusal too, but not the one tested)
        second = run(workdir, "--cores", "2", "--rerun-incomplete", check=False)
        assert first.poll() is None, "the first run ended before the second was refused"
        assert second.returncode != 0 and LOCKED in second.stdout + second.stderr, second.stderr[-2000:]

        cache = workdir / "cache"
        stage_files = lambda: [p for s in ("gate", "ocr", "detect", "embed") for p in (cache / s).glob("*.jsonl")]  # noqa: E731
        _wait_for(lambda: stage_files(), "a stage file was written", first)
        assert not (cache / "manifest.json").exists(), "too late: the manifest is written"
        done_before_kill = sorted(p.relative_to(cache).as_posix() for p in stage_files())
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    deadline = time.monotonic() + 30
    while True:  # every job of the group is gone
        try:
            os.killpg(first.pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "jobs of the killed run are still alive"
        time.sleep(0.1)
    print(f"\nkilled with {done_before_kill} written")

    # the killed run's lock is still there: Snakemake refuses until --unlock
    stale = run(workdir, "--cores", "2", "--rerun-incomplete", check=False)
    assert stale.returncode != 0 and LOCKED in stale.stdout + stale.stderr and "--unlock" in stale.stdout + stale.stderr
    run(workdir, "--unlock")
    run(workdir, "--cores", "2", "--rerun-incomplete")

    got_cache, got_db, temporary = snapshot(workdir)
    want_cache, want_db, _ = snapshot(baseline)
    print(f"temporary files left by the killed jobs: {temporary}")
    assert sorted(got_cache) == sorted(want_cache)
    for name in want_cache:
        assert got_cache[name] == want_cache[name], f"cache/{name} differs from the uninterrupted run"
    for table in want_db:
        assert got_db[table] == want_db[table], f"table {table} differs from the uninterrupted run"
    assert all(name.endswith(".tmp") for name in temporary)


def test_a_truncated_cache_file_is_caught_named_and_remade(corpus_run, tmp_path):
    _, _, baseline = corpus_run
    workdir = tmp_path / "run"
    shutil.copytree(baseline, workdir, symlinks=True)
    want_cache, want_db, _ = snapshot(baseline)

    # 1. cut at a line boundary (so still valid JSON Lines), time stamp updated as by any write:
    # Snakemake takes it for an edit and re-runs what reads it; the next stage refuses it.
    target = workdir / "cache" / "ingest" / "0000.jsonl"
    target.write_bytes(b"".join(target.read_bytes().splitlines(keepends=True)[:-1]))
    proc = run(workdir, "--cores", "2", check=False)
    assert proc.returncode != 0
    logs = "".join(p.read_text() for s in ("gate", "ocr", "detect") for p in (workdir / "logs" / s).glob("0000.log"))
    advice = "snakemake --cores all --forcerun cache/ingest/0000.jsonl"
    assert "cache/ingest/0000.jsonl does not match its listing" in logs and advice in logs, logs[-3000:]
    # deleting the file would not do: a plain run does not remake a missing intermediate file while
    # the files made from it (manifest, catalog) are up to date
    # doing what the message says remakes it and everything made from it, as before
    run(workdir, "--cores", "2", "--forcerun", "cache/ingest/0000.jsonl")
    got_cache, got_db, _ = snapshot(workdir)
    assert sorted(got_cache) == sorted(want_cache)
    assert all(got_cache[name] == want_cache[name] for name in want_cache) and got_db == want_db

    # 2. cut with its time stamp kept (a bad copy, a disk fault): Snakemake sees nothing; when the
    # catalog is rebuilt, the manifest's digest catches it and the message says what to do
    target = workdir / "cache" / "ocr" / "0001.jsonl"
    st = target.stat()
    target.write_bytes(target.read_bytes()[: st.st_size // 2])
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    (workdir / "results" / "annotations.sqlite").unlink()
    proc = run(workdir, "--cores", "2", check=False)
    assert proc.returncode != 0
    log = (workdir / "logs" / "catalog.log").read_text()
    assert "cache/ocr/0001.jsonl" in log and "truncated or changed after the manifest was written" in log, log[-3000:]
    assert "run `snakemake --cores all --forcerun cache/ocr/0001.jsonl`" in log
    assert not (workdir / "results" / "annotations.sqlite").exists()


def test_a_plan_or_a_refused_run_beside_a_running_run_changes_nothing_it_reads(tmp_path, tiny_images):
    """A run is frozen (SIGSTOP) after its first ingest; beside it, `-n` and a real run with
    other images: the plan writes nothing, the real run is refused by the lock and writes
    nothing either; once resumed, the first run ends with the results of an undisturbed run."""
    from conftest import text_image

    other = tmp_path / "other"
    other.mkdir()
    for i, words in enumerate(["NO ENTRY", "EXIT ONLY", "STAFF"]):
        text_image([words]).save(other / f"sign{i}.png")
    baseline = tmp_path / "baseline"
    write_config(baseline, images=str(tiny_images), shards={"count": 3})
    run(baseline, "--cores", "2")

    workdir = tmp_path / "run"
    write_config(workdir, images=str(tiny_images), shards={"count": 3})
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", "1"]
    with (tmp_path / "first.log").open("w") as log:
        first = subprocess.Popen(cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=drop_file_override)
    try:
        ingested = lambda: list((workdir / "cache" / "ingest").glob("*.jsonl"))  # noqa: E731
        _wait_for(lambda: ingested(), "its first shard was ingested", first)
        os.killpg(first.pid, signal.SIGSTOP)
        files = lambda: {p.relative_to(workdir).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns) for p in (workdir / "cache").rglob("*") if p.is_file()}  # noqa: E731
        before = files()
        assert any(name.startswith("cache/shards/") for name in before)
        # --rerun-incomplete: a job of the frozen run may be mid-way, and without it Snakemake
        # would stop at that job's incomplete marker before the plan or the lock is reached
        plan = run(workdir, "-n", "--rerun-incomplete", "--config", f"images={other}")
        assert "shard_listing" in plan.stdout + plan.stderr  # -n shows the whole plan for the other images
        refused = run(workdir, "--cores", "1", "--rerun-incomplete", "--config", f"images={other}", check=False)
        assert refused.returncode != 0 and LOCKED in refused.stdout + refused.stderr, refused.stderr[-2000:]
        assert files() == before  # neither wrote anything a job of the running run reads
    finally:
        os.killpg(first.pid, signal.SIGCONT)
    assert first.wait(timeout=900) == 0, (tmp_path / "first.log").read_text()[-3000:]
    got_cache, got_db, _ = snapshot(workdir)
    want_cache, want_db, _ = snapshot(baseline)
    assert got_cache == want_cache
    assert got_db == want_db


def test_names_that_are_not_utf8_are_reported_not_lost(corpus_run, tmp_path):
    """The walk leaves out a name with bytes that are not UTF-8 (no listing, record or CSV could
    carry it as text) and the run's ingest report lists it, escaped, with the reason."""
    _, _, workdir = corpus_run
    with (workdir / "results" / "ingest_report.csv").open(newline="", encoding="utf-8") as handle:
        rows = {row["path"]: row for row in csv.DictReader(handle)}
    for shown, reason in UNLISTED.values():
        assert (rows[shown]["outcome"], rows[shown]["reason"]) == ("skipped", reason)
        assert "not valid UTF-8" in rows[shown]["detail"]
    counts = write_ingest_report(workdir / "results" / "annotations.sqlite", tmp_path / "report.csv", workdir / "cache" / "listing_skipped.tsv")
    skipped_part = summary_line(counts).split(" skipped", 1)[1].split(" failed", 1)[0]
    assert "name_not_utf8 1" in skipped_part, summary_line(counts)


def _on_small_disk(workdir: Path, disk: SmallDisk, *folders: str) -> None:
    """Move ``folders`` of ``workdir`` onto ``disk`` (modes and mtimes kept), linked back."""
    for name in folders:
        if (workdir / name).exists():
            shutil.copytree(workdir / name, disk.path / name, symlinks=True)
            shutil.rmtree(workdir / name)
        else:
            (disk.path / name).mkdir()
        (workdir / name).symlink_to(disk.path / name)


def _run_limited(workdir: Path, disk: SmallDisk, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, preexec_fn=disk.limit, timeout=900)


def test_the_disk_filling_while_the_catalog_is_built_is_explained_in_its_log(demo_run, tmp_path):
    """Issue 14 item 5a, the real workflow: results/ and logs/ on one small disk that the
    catalog fills. Before the fix Snakemake showed "lost sys.stderr", the job exited 120 and
    logs/catalog.log stayed empty; now the log starts with the one-line reason, the console
    repeats it, and nothing half-built is left as the catalog."""
    workdir = copy_tree(demo_run, tmp_path / "run")
    db = workdir / "results" / "annotations.sqlite"
    need = db.stat().st_size
    db.unlink()
    (db.parent / f".{db.name}.keep").unlink()  # and its second name: a first build (docs/adr/0005)
    keep = sum(p.stat().st_size + 4096 for folder in ("results", "logs") for p in (workdir / folder).rglob("*") if p.is_file())
    with SmallDisk(tmp_path / "disk", keep + 64 * 1024 + need // 2) as disk:
        _on_small_disk(workdir, disk, "results", "logs")
        proc = _run_limited(workdir, disk, "--cores", "1", "results/annotations.sqlite")
        log = (workdir / "logs" / "catalog.log").read_text()
        print(f"\n{disk.kind} of {disk.size} bytes for a {need}-byte catalog; the log:\n{log[:600]}")
        assert proc.returncode != 0
        console = proc.stdout + proc.stderr
        assert "lost sys.stderr" not in console and "exit status 120" not in console, console[-3000:]
        reason = next((line for line in log.splitlines() if line.startswith("catalog failed: ")), None)
        assert reason is not None, log
        assert "disk is full" in reason or "disk I/O error" in reason or "File too large" in reason, reason
        assert "Traceback (most recent call last):" in log.split(reason, 1)[1]
        assert reason in console
        assert not db.exists()


def test_a_full_cache_disk_stops_the_first_job_with_its_reason(tmp_path, tiny_images):
    """cache/ and logs/ on a disk that is full before the run: the first job that writes to the
    cache fails, its log says why on one line, and no cache file is half-written."""
    workdir = tmp_path / "run"
    write_config(workdir, images=str(tiny_images), shards={"count": 2})
    with SmallDisk(tmp_path / "disk", 256 * 1024) as disk:
        _on_small_disk(workdir, disk, "cache", "logs")
        for folder in ("shard_listing", "ingest"):
            (disk.path / "logs" / folder).mkdir()
        disk.fill(leave=64 * 1024 if disk.kind == "tmpfs" else 0)  # room for the logs' reservations only
        if disk.kind == "RLIMIT_FSIZE":
            disk.size = 16  # any cache file longer than a header fails
        proc = _run_limited(workdir, disk, "--cores", "1", "--until", "ingest")
        assert proc.returncode != 0
        failed = [p for p in (workdir / "logs").rglob("*.log") if "failed: " in p.read_text()]
        assert failed, [p.read_text() for p in (workdir / "logs").rglob("*.log")]
        for path in failed:
            line = next(line for line in path.read_text().splitlines() if " failed: " in line)
            assert "disk is full" in line or "File too large" in line, line
        leftovers = [p for p in (workdir / "cache").rglob("*") if p.is_file() and p.name != ".filler"]
        assert all(not p.name.startswith(".") for p in leftovers), leftovers  # no temporary file stays
