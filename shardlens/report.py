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
from dataclasses import dataclass
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


# The paths a catalog did not process: failed ingests, and the second and later paths of the same
# bytes in one shard (the first path, in path order, is processed). Indexed reads and one grouping
# pass, so a million paths cost no Python row each (the 1M incremental bench: 5.3 s and 1 GB before).
_FAILED_SQL = "SELECT shard, path, image_id, bytes, error, error_detail FROM paths WHERE status != 'ok'"
_DUPLICATES_SQL = """
SELECT p.shard, p.path, p.image_id, p.bytes, d.first
FROM (SELECT shard, image_id, MIN(path) AS first FROM paths WHERE status = 'ok'
      GROUP BY image_id, shard HAVING COUNT(*) > 1) AS d
JOIN paths AS p ON p.image_id = d.image_id AND p.shard = d.shard
WHERE p.status = 'ok' AND p.path != d.first
"""


def _duplicate_row(shard: str, path: str, image_id: str, size: int, first: str) -> dict:
    detail = f"same bytes as {first!r}, which is processed instead (the catalog keeps both paths)"
    return {"path": path, "image_id": image_id, "bytes": size, "shard": shard, "outcome": "skipped", "reason": "duplicate", "detail": detail}


def _failed_row(shard: str, path: str, image_id: str, size: int, error: str, detail: str | None) -> dict:
    return {"path": path, "image_id": image_id, "bytes": size, "shard": shard, "outcome": "failed", "reason": error, "detail": detail}


def _outcomes_from_db(db: Path) -> tuple[int, list[dict]]:
    conn = connect_reader(db)
    try:
        rows = [_failed_row(*row) for row in conn.execute(_FAILED_SQL)]
        rows += [_duplicate_row(*row) for row in conn.execute(_DUPLICATES_SQL)]
        listed = conn.execute("SELECT COUNT(*) FROM paths").fetchone()[0]
    finally:
        conn.close()
    return listed - len(rows), rows


def _outcomes_from_cache(cache_dir: Path) -> tuple[int, list[dict]]:
    manifest_path = cache_dir / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = [(shard, cache_dir / entry["ingest"]["file"]) for shard, entry in sorted(manifest["shards"].items())]
    else:
        files = [(p.stem, p) for p in sorted((cache_dir / "ingest").glob("*.jsonl"))]
    processed, rows = 0, []
    for shard, path in files:
        first_ok: dict[str, str] = {}
        for record in sorted(read_jsonl(path, "ingest"), key=lambda r: r["path"]):
            row = (shard, record["path"], record["image_id"], record["bytes"])
            if record["status"] != "ok":
                rows.append(_failed_row(*row, record["error"], record["error_detail"]))
            elif record["image_id"] in first_ok:
                rows.append(_duplicate_row(*row, first_ok[record["image_id"]]))
            else:
                first_ok[record["image_id"]] = record["path"]
                processed += 1
    return processed, rows


SKIPPED_DETAIL = {
    "symlink_not_followed": "a symbolic link; set listing.follow_symlinks: true to follow links",
    "symlink_outside_root": "a link to a folder outside the images root; set listing.allow_outside_root: true to allow it",
    "unreadable_folder": "the folder cannot be listed (permissions?)",
    "name_not_utf8": "the name is not valid UTF-8 (shown with \\x escapes); rename it to include it",
}


@dataclass(frozen=True)
class IngestOutcomes:
    """How many listed files were processed, and one row per file that was not (skipped or
    failed, with reason and detail), sorted by path."""

    processed: int
    rows: list[dict]

    def counts(self) -> dict:
        """``files``, ``processed``, ``skipped``, ``failed`` and ``reasons`` (reason -> files)."""
        outcomes = Counter(row["outcome"] for row in self.rows)
        return {
            "files": self.processed + len(self.rows),
            "processed": self.processed,
            "skipped": outcomes["skipped"],
            "failed": outcomes["failed"],
            "reasons": dict(sorted(Counter(row["reason"] for row in self.rows).items())),
        }


def ingest_outcomes(db_or_cache: str | Path, listing_skipped: str | Path | None = None) -> IngestOutcomes:
    """Every listed file's outcome (processed, skipped or failed), and every file the walk skipped:
    from the catalog or, given a folder, from the cache's ingest records (and its
    ``listing_skipped.tsv`` when ``listing_skipped`` is not given)."""
    source = Path(db_or_cache)
    processed, rows = _outcomes_from_cache(source) if source.is_dir() else _outcomes_from_db(source)
    if listing_skipped is None and source.is_dir() and (source / "listing_skipped.tsv").exists():
        listing_skipped = source / "listing_skipped.tsv"
    if listing_skipped is not None and Path(listing_skipped).exists():
        for rel, reason in read_listing_skipped(listing_skipped):
            detail = SKIPPED_DETAIL.get(reason, reason)
            rows.append({"path": rel, "image_id": None, "bytes": None, "shard": None, "outcome": "skipped", "reason": reason, "detail": detail})
    rows.sort(key=lambda r: (r["path"], r["shard"] or ""))
    return IngestOutcomes(processed, rows)


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
    for row in outcomes.rows:
        writer.writerow({k: "" if row[k] is None else csv_cell(row[k]) for k in REPORT_COLUMNS})
    out_csv = Path(out_csv)
    with atomic_open(out_csv, "w", newline="") as handle:
        handle.write(buf.getvalue())
    return {**outcomes.counts(), "report": str(out_csv)}


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
