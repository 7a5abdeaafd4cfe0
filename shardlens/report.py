"""The ingest report: every file a run did not process, with its reason, and the run's counts.

``results/ingest_report.csv`` has one row per file that was skipped or failed:

- ``failed``: ingest gave it status error (the reason is the ingest error code, e.g.
  ``truncated``, ``permission_denied``, ``decode_timeout``);
- ``skipped``: its bytes are identical to another path of the same shard, which is processed
  instead (reason ``duplicate``; the catalog keeps both paths), or the folder walk left it out
  (reasons ``symlink_not_followed``, ``symlink_outside_root``, ``unreadable_folder``,
  ``name_not_utf8``; see
  :func:`listing_skipped_text`).

The counts (``processed + skipped + failed``, by reason) make the run's summary line
(:func:`summary_line`).
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path

from .atomic import atomic_open
from .records import read_jsonl
from .spreadsheet import csv_cell
from .sqlite_connect import connect_reader

REPORT_COLUMNS = ("path", "outcome", "reason", "detail", "image_id", "bytes", "shard")
LISTING_SKIPPED_HEADER = "path\treason\n"


def listing_skipped_text(entries: list[tuple[str, str]]) -> str:
    """The walk's skipped entries (``list_images(..., skipped=...)``) as the TSV that
    ``cache/listing_skipped.tsv`` holds (the listing_skipped rule writes it)."""
    lines = [LISTING_SKIPPED_HEADER]
    for rel, reason in sorted(entries):
        lines.append(f"{rel.encode('unicode_escape').decode('ascii')}\t{reason}\n")
    return "".join(lines)


def read_listing_skipped(path: str | Path) -> list[tuple[str, str]]:
    out = []
    with Path(path).open(encoding="utf-8") as handle:
        if handle.readline() != LISTING_SKIPPED_HEADER:
            raise ValueError(f"{path}: not a listing-skipped file (bad header)")
        for line in handle:
            rel, reason = line.rstrip("\n").split("\t")
            out.append((rel.encode("ascii").decode("unicode_escape"), reason))
    return out


def _ingest_rows_from_db(db: Path) -> list[dict]:
    conn = connect_reader(db)
    try:
        cursor = conn.execute("SELECT shard, path, image_id, bytes, status, error, error_detail FROM paths ORDER BY shard, path")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor]
    finally:
        conn.close()


def _ingest_rows_from_cache(cache_dir: Path) -> list[dict]:
    manifest_path = cache_dir / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = [(shard, cache_dir / entry["ingest"]["file"]) for shard, entry in sorted(manifest["shards"].items())]
    else:
        files = [(p.stem, p) for p in sorted((cache_dir / "ingest").glob("*.jsonl"))]
    rows = []
    for shard, path in files:
        for record in read_jsonl(path, "ingest"):
            rows.append({"shard": shard, **{k: record[k] for k in ("path", "image_id", "bytes", "status", "error", "error_detail")}})
    return rows


def ingest_outcomes(db_or_cache: str | Path, listing_skipped: str | Path | None = None) -> list[dict]:
    """One row per listed file (and per file the walk skipped): outcome processed/skipped/failed."""
    source = Path(db_or_cache)
    rows = _ingest_rows_from_cache(source) if source.is_dir() else _ingest_rows_from_db(source)
    if listing_skipped is None and source.is_dir() and (source / "listing_skipped.tsv").exists():
        listing_skipped = source / "listing_skipped.tsv"
    out = []
    first_ok: dict[tuple[str, str], str] = {}
    for row in sorted(rows, key=lambda r: (r["shard"], r["path"])):
        base = {"path": row["path"], "image_id": row["image_id"], "bytes": row["bytes"], "shard": row["shard"]}
        if row["status"] != "ok":
            out.append(base | {"outcome": "failed", "reason": row["error"], "detail": row["error_detail"]})
            continue
        key = (row["shard"], row["image_id"])
        if key in first_ok:
            detail = f"same bytes as {first_ok[key]!r}, which is processed instead (the catalog keeps both paths)"
            out.append(base | {"outcome": "skipped", "reason": "duplicate", "detail": detail})
        else:
            first_ok[key] = row["path"]
            out.append(base | {"outcome": "processed", "reason": None, "detail": None})
    if listing_skipped is not None and Path(listing_skipped).exists():
        for rel, reason in read_listing_skipped(listing_skipped):
            detail = {
                "symlink_not_followed": "a symbolic link; set listing.follow_symlinks: true to follow links",
                "symlink_outside_root": "a link to a folder outside the images root; set listing.allow_outside_root: true to allow it",
                "unreadable_folder": "the folder cannot be listed (permissions?)",
                "name_not_utf8": "the name is not valid UTF-8 (shown with \\x escapes); rename it to include it",
            }.get(reason, reason)
            out.append({"path": rel, "image_id": None, "bytes": None, "shard": None, "outcome": "skipped", "reason": reason, "detail": detail})
    out.sort(key=lambda r: r["path"])
    return out


def write_ingest_report(db_or_cache: str | Path, out_csv: str | Path, listing_skipped: str | Path | None = None) -> dict:
    """Write the CSV of skipped and failed files (atomically); return the counts.

    ``db_or_cache`` is the catalog (``results/annotations.sqlite``) or the cache folder (its
    ``listing_skipped.tsv`` is then used when present). Counts: ``files``, ``processed``,
    ``skipped``, ``failed`` and ``reasons`` (reason -> files).
    """
    outcomes = ingest_outcomes(db_or_cache, listing_skipped)
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=REPORT_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in outcomes:
        if row["outcome"] != "processed":
            writer.writerow({k: "" if row[k] is None else csv_cell(row[k]) for k in REPORT_COLUMNS})
    out_csv = Path(out_csv)
    with atomic_open(out_csv, "w", newline="") as handle:
        handle.write(buf.getvalue())
    counts = Counter(row["outcome"] for row in outcomes)
    return {
        "files": len(outcomes),
        "processed": counts["processed"],
        "skipped": counts["skipped"],
        "failed": counts["failed"],
        "reasons": dict(sorted(Counter(r["reason"] for r in outcomes if r["outcome"] != "processed").items())),
        "report": str(out_csv),
    }


def summary_line(counts: dict) -> str:
    """``ingest: 31 files: 22 processed, 2 skipped (duplicate 2), 7 failed (corrupt 1, ...); see FILE``."""
    reasons = counts["reasons"]

    def detail(outcome_reasons: list[str]) -> str:
        parts = [f"{r} {reasons[r]}" for r in outcome_reasons if r in reasons]
        return f" ({', '.join(parts)})" if parts else ""

    skipped_reasons = [r for r in reasons if r in ("duplicate", "name_not_utf8") or r.startswith(("symlink_", "unreadable_"))]
    failed_reasons = [r for r in reasons if r not in skipped_reasons]
    return (
        f"ingest: {counts['files']} files: {counts['processed']} processed, "
        f"{counts['skipped']} skipped{detail(skipped_reasons)}, {counts['failed']} failed{detail(failed_reasons)}; "
        f"see {counts['report']}"
    )


def run_ingest_report(db: str | Path, out_csv: str | Path, listing_skipped: str | Path | None = None) -> dict:
    """The ingest_report rule: the CSV, the human summary line, then the job's JSON summary."""
    import sys

    from .jobs import JobSummary

    summary = JobSummary(shard="all", stage="ingest_report")
    counts = write_ingest_report(db, out_csv, listing_skipped=listing_skipped)
    print(summary_line(counts), file=sys.stderr)
    summary.images, summary.ok = counts["files"], counts["processed"]
    summary.skipped, summary.errors = counts["skipped"], counts["failed"]
    summary.records = counts["skipped"] + counts["failed"]
    summary.finish()
    return counts
