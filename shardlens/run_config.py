"""The config of the workflow run that built a catalog, as far as the catalog's place tells it.

A workflow run writes its catalog to ``results/`` beside ``config/config.yaml``; the catalog's
grandparent is the run's folder. The exports and the dashboard use this to find the images and the
review settings of a catalog they are given alone (``shardlens export``, ``shardlens review``).
"""

from __future__ import annotations

from pathlib import Path

import yaml


def _run_folder(db: str | Path) -> Path:
    return Path(db).resolve().parent.parent


def _run_config(db: str | Path) -> dict:
    """``config/config.yaml`` of the run's folder as a mapping; {} when it is missing or unreadable."""
    try:
        config = yaml.safe_load((_run_folder(db) / "config" / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return config if isinstance(config, dict) else {}


def guess_images_root(db: str | Path) -> Path | None:
    """The images folder of the workflow run that built ``db``: ``images:`` of its
    ``config/config.yaml``, relative to the run's folder (the demo's images when the config names
    none); None when there is no such config or folder."""
    workdir = _run_folder(db)
    root = _run_config(db).get("images")
    if root is None and (workdir / "resources" / "demo").is_dir():
        root = "resources/demo"
    if not root:
        return None
    path = Path(str(root)).expanduser()
    path = path if path.is_absolute() else workdir / path
    return path if path.is_dir() else None


def guess_audit_size(db: str | Path) -> int | None:
    """``reviews.audit_size`` of the workflow run that built ``db``; None when it sets none (the
    schema's default then)."""
    reviews = _run_config(db).get("reviews")
    value = reviews.get("audit_size") if isinstance(reviews, dict) else None
    return int(value) if isinstance(value, int) and value >= 1 else None
