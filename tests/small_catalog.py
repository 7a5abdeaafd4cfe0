"""A small real catalog for the export tests: the stage functions (ingest, gate, OCR, detect, regions) run on
a handful of images, the manifest digests their cache and the catalog loads it, as the workflow
does (without Snakemake, so it takes seconds). The run folder looks like a workflow run:
``config/config.yaml``, ``images/``, ``cache/``, ``results/annotations.sqlite``."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from PIL import Image

from shardlens.catalog import build_catalog
from shardlens.config import load_config
from shardlens.images.decoding import Limits
from shardlens.images.listing import list_images
from shardlens.manifest import build_manifest, write_manifest
from shardlens.models.registry import models_for_config
from shardlens.shards import plan_shards, write_listings
from shardlens.stages import detect, gate, ingest, ocr, regions
from shardlens.stages.params import stage_options, stage_params

from conftest import smooth_image, text_image

STAGES = ["ingest", "gate", "ocr", "detect", "regions"]


def build_small_catalog(run: Path) -> Path:
    """Build the run folder under ``run``; return the catalog's path."""
    from skimage import data

    root = run / "images"
    (root / "photos").mkdir(parents=True)
    (root / "signs").mkdir()
    (root / "plain").mkdir()
    Image.fromarray(data.chelsea()).save(root / "photos" / "cat.jpg", quality=90)
    Image.fromarray(data.astronaut()).save(root / "photos" / "astronaut.png")
    Image.fromarray(data.coffee()).save(root / "photos" / "coffee #1.jpg", quality=90)
    text_image(["OPEN 24 HOURS", "Main Street"]).save(root / "signs" / "open.png")
    smooth_image(3, size=(320, 200)).save(root / "plain" / "gradient.jpg", quality=90)
    shutil.copy(root / "photos" / "cat.jpg", root / "plain" / "copy of cat.jpg")
    (root / "plain" / "broken.jpg").write_bytes(b"not a jpeg")
    return catalog_of_folder(run)


def catalog_of_folder(run: Path, shards: int = 2, **config_overrides) -> Path:
    """The cache and catalog of the images in ``run/images`` (made as :func:`build_small_catalog`
    makes its own); ``config_overrides`` go into the run's config file."""
    root = run / "images"
    (run / "config").mkdir(parents=True, exist_ok=True)
    (run / "config" / "config.yaml").write_text(yaml.safe_dump({"images": "images", "shards": {"count": shards}, **config_overrides}))

    config = load_config(run / "config" / "config.yaml")
    plan = plan_shards(list_images(root), shards)
    cache = run / "cache"
    write_listings(plan, cache / "shards")
    for shard in plan.names:
        ingest.run_shard(cache / "shards" / f"{shard}.tsv", root, cache / "ingest" / f"{shard}.jsonl", shard, Limits.from_values(), allow_outside_root=False)
        gate.run(cache / "ingest" / f"{shard}.jsonl", root, cache / "gate" / f"{shard}.jsonl", shard, stage_options(config, "gate"), 1, Limits.from_values())
        ocr.run(
            cache / "ingest" / f"{shard}.jsonl",
            cache / "gate" / f"{shard}.jsonl",
            root,
            cache / "ocr" / f"{shard}.jsonl",
            shard,
            stage_options(config, "ocr"),
            1,
            Limits.from_values(),
        )
        detect.run_shard(
            cache / "ingest" / f"{shard}.jsonl",
            root,
            cache / "detect" / f"{shard}.jsonl",
            shard,
            stage_params(config, "detect")["options"],
            1,
            Limits.from_values(),
        )
        regions.run_shard(cache / "detect" / f"{shard}.jsonl", cache / "regions" / f"{shard}.jsonl", shard, stage_params(config, "regions")["options"], 1)
    write_manifest(cache / "manifest.json", build_manifest(cache, plan.names, models_for_config(config), stages=STAGES))
    db = run / "results" / "annotations.sqlite"
    db.parent.mkdir(exist_ok=True)
    build_catalog(cache, db, log=lambda message: None, near_duplicate_distance=config["dedupe"]["max_distance"])
    return db
