"""Which files the annotation exports write: the formats ``export.formats`` chooses from and
their names in ``results/``. Light on imports: the workflow reads it to declare the export
rule's outputs while it plans."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

# The stem of the export files' names: annotations.csv, annotations.parquet/, ...
STEM = "annotations"

# The whole-file formats (export.formats), each with the files it writes.
# The Parquet dataset and its manifest are always written.
FORMATS = {
    "csv": ("{stem}.csv",),
    "json": ("{stem}.json",),
    "coco": ("{stem}.coco.json",),
    "coco_text": ("{stem}.coco_text.json",),
    "labelstudio": ("labelstudio_tasks.json", "labelstudio_config.xml"),
}


def check_formats(formats: Iterable[str]) -> list[str]:
    """The formats named, each known (ValueError naming the unknown ones), in :data:`FORMATS` order."""
    formats = list(formats)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"export.formats: unknown format(s) {', '.join(map(repr, unknown))}; known: {', '.join(FORMATS)}")
    return [name for name in FORMATS if name in formats]


def export_paths(out_dir: str | Path, stem: str = STEM, formats: Iterable[str] | None = None) -> dict[str, Path]:
    """Every file the export writes into ``out_dir`` for ``formats`` (all by default), by name:
    the Parquet dataset's folder (``parquet``) and manifest (``parquet_manifest``), then one
    name per file of each format (``labelstudio`` and ``labelstudio_config``)."""
    out_dir = Path(out_dir)
    chosen = check_formats(FORMATS if formats is None else formats)
    paths = {"parquet": out_dir / f"{stem}.parquet", "parquet_manifest": out_dir / f"{stem}.parquet.json"}
    for name in chosen:
        for n, pattern in enumerate(FORMATS[name]):
            paths[name if n == 0 else f"{name}_config"] = out_dir / pattern.format(stem=stem)
    return paths
