"""Everyday questions to the catalog, for the command line (``shardlens stats``, ``shardlens show``).

The catalog is opened read-only (:func:`shardlens.catalog.connect_readonly`). One image's
annotation is read with the dashboard's own queries (:mod:`shardlens.dashboard.queries`: the
same machine labels, candidates and review states the dashboard shows and the exports write);
the counts are here.
"""

from __future__ import annotations

import difflib
import sqlite3
from pathlib import Path, PurePosixPath

from .catalog import CatalogError, connect_readonly
from .catalog_rules import IS_CLUSTER, item_key
from .dashboard import queries

STATS_SECTIONS = ("files", "failed", "gate", "regions_per_class", "lines", "clusters", "reviews")


def open_catalog(db: str | Path) -> sqlite3.Connection:
    """The catalog, read-only, rows as :class:`sqlite3.Row`; CatalogError (one line) when it is
    missing or is no shardlens catalog. Never creates a file."""
    conn = connect_readonly(db)
    conn.row_factory = sqlite3.Row
    return conn


def _pairs(conn: sqlite3.Connection, sql: str) -> dict[str, int]:
    return {("" if key is None else str(key)): int(n) for key, n in conn.execute(sql)}


def catalog_stats(conn: sqlite3.Connection) -> dict:
    """The catalog in numbers: files and images, failed files by reason, gate decisions, regions per
    class (machine label), OCR lines, clusters (HDBSCAN's, the 'unclustered' bucket apart) and
    reviews by status."""
    files = conn.execute(
        """SELECT COUNT(*) AS files, COUNT(DISTINCT CASE WHEN status = 'ok' THEN image_id END) AS images,
                  SUM(status != 'ok') AS failed
           FROM paths"""
    ).fetchone()
    gate = {}
    for decision, reason, n in conn.execute("SELECT decision, skip_reason, COUNT(*) FROM gate GROUP BY 1, 2 ORDER BY 1, 2"):
        gate[decision if reason is None else f"{decision}: {reason}"] = int(n)
    lines = conn.execute("SELECT COUNT(*), COUNT(DISTINCT image_id) FROM ocr_lines").fetchone()
    regions = conn.execute("SELECT COUNT(*), COUNT(DISTINCT image_id) FROM regions").fetchone()
    clusters = conn.execute(
        f"""SELECT COUNT(CASE WHEN {IS_CLUSTER} THEN 1 END),
                   COUNT(CASE WHEN {IS_CLUSTER} AND item = 'region' THEN 1 END),
                   COUNT(CASE WHEN {IS_CLUSTER} AND item = 'text' THEN 1 END)
            FROM clusters"""
    ).fetchone()
    unclustered = conn.execute(f"SELECT COUNT(*) FROM cluster_members WHERE NOT ({IS_CLUSTER})").fetchone()[0]
    return {
        "files": {"files": int(files["files"] or 0), "images": int(files["images"] or 0), "failed": int(files["failed"] or 0)},
        "failed": _pairs(conn, "SELECT error, COUNT(*) FROM paths WHERE status != 'ok' GROUP BY error ORDER BY COUNT(*) DESC, error"),
        "gate": gate,
        "regions_per_class": _pairs(conn, "SELECT caption, COUNT(*) FROM regions GROUP BY caption ORDER BY COUNT(*) DESC, caption"),
        "regions": {"regions": int(regions[0]), "images": int(regions[1])},
        "lines": {"lines": int(lines[0]), "images": int(lines[1])},
        "clusters": {
            "clusters": int(clusters[0]),
            "region_clusters": int(clusters[1]),
            "text_clusters": int(clusters[2]),
            "unclustered_texts": int(unclustered),
        },
        "reviews": _pairs(conn, "SELECT status, COUNT(*) FROM reviews GROUP BY status ORDER BY status"),
    }


class UnknownPath(CatalogError):
    """A path the catalog does not list; ``suggestions`` holds near matches."""

    def __init__(self, path: str, suggestions: list[str]):
        self.path, self.suggestions = path, suggestions
        hint = f"; did you mean {', '.join(repr(s) for s in suggestions)}?" if suggestions else ""
        super().__init__(f"{path!r} is not in the catalog (paths are relative to the images root, as listed){hint}")


def near_paths(conn: sqlite3.Connection, path: str, limit: int = 3, scan_limit: int = 50_000) -> list[str]:
    """Paths like ``path``: the same file name in another folder, else (on catalogs of at most
    ``scan_limit`` files) the closest spellings."""
    name = Path(path).name
    if name:
        rows = conn.execute(
            "SELECT path FROM paths WHERE path = ? OR path LIKE ? ESCAPE '\\' ORDER BY path LIMIT ?",
            (name, "%/" + name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_"), limit),
        ).fetchall()
        if rows:
            return [r[0] for r in rows]
    if conn.execute("SELECT COUNT(*) FROM paths").fetchone()[0] > scan_limit:
        return []
    every = [r[0] for r in conn.execute("SELECT path FROM paths")]
    return difflib.get_close_matches(path, every, n=limit, cutoff=0.6)


def image_annotation(conn: sqlite3.Connection, path: str) -> dict:
    """One listed file's annotation: its ingest status, gate decision, OCR lines, regions with
    their candidates, the reviews and the image's final label. ``conn`` from :func:`open_catalog`.
    Raises :class:`UnknownPath` (with near matches) when the catalog does not list ``path``."""
    query = "SELECT path, image_id, status, error, error_detail FROM paths WHERE path = ?"
    row = conn.execute(query, (path,)).fetchone()
    if row is None and PurePosixPath(path).as_posix() != path:  # './a.jpg', 'a//b.jpg'
        row = conn.execute(query, (PurePosixPath(path).as_posix(),)).fetchone()
    if row is None:
        raise UnknownPath(path, near_paths(conn, path))
    out: dict = {"path": row["path"], "image_id": row["image_id"], "status": row["status"], "error": row["error"]}
    if row["status"] != "ok" or row["image_id"] is None:
        out["error_detail"] = row["error_detail"]
        return out
    image_id = row["image_id"]
    info = queries.image_info(conn, image_id) or {}
    out.update(
        {
            "width": info.get("width"),
            "height": info.get("height"),
            "format": info.get("format"),
            "bytes": info.get("bytes"),
            "copies": [p for p in info.get("paths", []) if p != row["path"]],
            "gate": None
            if info.get("gate_decision") is None
            else {
                "score": info["gate_score"],
                "decision": info["gate_decision"],
                "skip_reason": info["skip_reason"],
                "text_regions": info["text_regions"],
            },
        }
    )
    out["lines"] = [
        {
            "line_no": line["line_no"],
            "text": line["text"],
            "confidence": line["score"],
            "language": line["language"],
            "bbox": line["bbox"],
            "region_id": line["in_region"],
            "cluster_id": line["cluster_id"],
            "review_status": line["review_status"],
            "final_label": line["final_label"],
        }
        for line in queries.image_lines(conn, image_id)
    ]
    out["regions"] = [
        {
            "region_id": region["region_id"],
            "bbox": region["bbox"],
            "score": region["score"],
            "machine_label": region["machine_label"],
            "detector_label": region["detector_label"],
            "candidates": [{"label": c.get("label"), "score": c.get("score"), "source": c.get("source")} for c in region["labels"]],
            "cluster_id": region["cluster_id"],
            "review_status": region["review_status"],
            "review_label": region["review_label"],
            "final_label": region["final_label"],
        }
        for region in queries.image_regions(conn, image_id)
    ]
    image_review = conn.execute("SELECT status, label, reviewer FROM reviews WHERE item_key = ?", (item_key(image_id, None, None),)).fetchone()
    out["image_review"] = dict(image_review) if image_review else None
    label = conn.execute("SELECT final_label, label_source FROM image_labels WHERE image_id = ?", (image_id,)).fetchone()
    out["final_label"] = label["final_label"] if label else None
    out["label_source"] = label["label_source"] if label else None
    return out


# ---------------------------------------------------------------------------------- as text

TEXT_CLASSES = 30  # classes listed by `shardlens stats` (--json lists all)


def printable(value) -> str:
    """A value for a terminal: control characters (an OCR'd escape sequence) shown as escapes."""
    text = "" if value is None else str(value)
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def _aligned(sections: list[tuple[str, list[tuple[str, object]]]]) -> str:
    width = max([len(printable(k)) + 2 for _, rows in sections for k, _ in rows] + [len(t) for t, _ in sections] + [10])
    numbers = [str(v) for _, rows in sections for _, v in rows]
    nwidth = max([len(n) for n in numbers] + [1])
    out = []
    for title, rows in sections:
        out.append(title)
        for key, value in rows:
            out.append(f"  {printable(key):<{width}} {str(value):>{nwidth}}")
    return "\n".join(out)


def format_stats(stats: dict, db: str | Path = "") -> str:
    """``shardlens stats`` as aligned plain text."""
    classes = list(stats["regions_per_class"].items())
    class_rows: list[tuple[str, object]] = [("regions", stats["regions"]["regions"]), ("images with regions", stats["regions"]["images"])]
    class_rows += [(f"{label}", n) for label, n in classes[:TEXT_CLASSES]]
    if len(classes) > TEXT_CLASSES:
        class_rows.append((f"({len(classes) - TEXT_CLASSES} more classes: --json lists all)", sum(n for _, n in classes[TEXT_CLASSES:])))
    sections = [
        ("files", [("files listed", stats["files"]["files"]), ("images (distinct, ok)", stats["files"]["images"]), ("failed", stats["files"]["failed"])]),
        ("failed files by reason", list(stats["failed"].items()) or [("none", 0)]),
        ("gate decisions", list(stats["gate"].items()) or [("none", 0)]),
        ("regions per class", class_rows),
        ("OCR lines", [("lines", stats["lines"]["lines"]), ("images with lines", stats["lines"]["images"])]),
        (
            "clusters",
            [
                ("clusters", stats["clusters"]["clusters"]),
                ("of region labels", stats["clusters"]["region_clusters"]),
                ("of OCR lines", stats["clusters"]["text_clusters"]),
                ("unclustered texts", stats["clusters"]["unclustered_texts"]),
            ],
        ),
        ("reviews by status", list(stats["reviews"].items()) or [("none", 0)]),
    ]
    head = f"catalog {printable(db)}\n" if db else ""
    return head + _aligned(sections)


def _box(bbox) -> str:
    return "[" + ", ".join(f"{v:g}" for v in bbox) + "]" if bbox else "-"


def _review(item: dict) -> str:
    status = item.get("review_status")
    if not status:
        return "not reviewed"
    label = item.get("review_label")
    return f"{status}" + (f" as {printable(label)!s}" if label and status == "relabeled" else "")


def format_annotation(ann: dict) -> str:
    """``shardlens show`` as plain text: the image, its gate, lines, regions and labels."""
    out = [f"{printable(ann['path'])}"]
    if ann["status"] != "ok" or ann.get("image_id") is None:
        out.append(f"  ingest failed: {printable(ann['error'])}" + (f" ({printable(ann.get('error_detail'))})" if ann.get("error_detail") else ""))
        return "\n".join(out)
    out.append(f"  image {ann['image_id']}  {ann['width']}x{ann['height']} {printable(ann['format'])}, {ann['bytes']} bytes")
    if ann["copies"]:
        out.append(f"  same bytes as: {', '.join(printable(p) for p in ann['copies'])}")
    label = ann["final_label"]
    out.append(f"  final label: {printable(label) if label is not None else '(none)'} ({ann['label_source'] or 'machine'})")
    if ann["image_review"]:
        r = ann["image_review"]
        out.append(f"  image review: {r['status']}" + (f" as {printable(r['label'])}" if r.get("label") else ""))
    gate = ann["gate"]
    if gate is None:
        out.append("gate: no decision")
    else:
        reason = f" ({gate['skip_reason']})" if gate["skip_reason"] else ""
        out.append(f"gate: {gate['decision']}{reason}, score {gate['score']:.3f}, {gate['text_regions']} text regions")
    out.append(f"OCR lines: {len(ann['lines'])}")
    for line in ann["lines"]:
        out.append(
            f'  {line["line_no"]:>3}  "{printable(line["text"])}"  confidence {line["confidence"]:.3f}  box {_box(line["bbox"])}'
            + (f"  lang {line['language']}" if line["language"] else "")
            + (f"  in region {line['region_id']}" if line["region_id"] is not None else "")
        )
        if line["review_status"]:
            out.append(f"       review: {_review({**line, 'review_label': line['final_label']})}")
    out.append(f"regions: {len(ann['regions'])}")
    for region in ann["regions"]:
        final = region["final_label"]
        out.append(
            f"  {region['region_id']:>3}  {printable(final) if final is not None else '(rejected)'}  score {region['score']:.3f}"
            f"  box {_box(region['bbox'])}  [{_review(region)}; cluster {region['cluster_id']}]"
        )
        for c in region["candidates"]:
            score = f"{c['score']:.3f}" if isinstance(c["score"], (int, float)) else "-"
            out.append(f"       {printable(c['label'])}  {score}  {printable(c['source']) or '-'}")
    return "\n".join(out)
