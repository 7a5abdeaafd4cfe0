# Shared knowledge of the workflow: the validated config, the image listing and its shards, and
# the input functions the rules use. Nothing here runs a model.
import os
from pathlib import Path

from snakemake.utils import validate

from shardlens.images import list_images
from shardlens.models.registry import stage_fingerprint
from shardlens.report import write_listing_skipped
from shardlens.shards import plan_shards, shard_count_for, write_listings
from shardlens.stages import SHARD_STAGES

validate(config, "../config/schema.yaml")

CACHE = "cache"
DEMO_DIR = "resources/demo"
DATABASE = config["catalog"]["database"]
REVIEWS_DB = config["reviews"]["database"]
LISTING_SKIPPED = f"{CACHE}/listing_skipped.tsv"
INGEST_REPORT = "results/ingest_report.csv"


wildcard_constraints:
    shard=r"\d+",


localrules:
    all,
    demo_images,
    cluster,
    manifest,
    catalog,
    export,
    import_reviews,
    ingest_report,


_shard_plan = None


def uses_demo_images():
    return os.path.abspath(config["images"]) == os.path.abspath(DEMO_DIR)


def shard_plan():
    """List the images once per invocation, assign shards, refresh changed shard listings."""
    global _shard_plan
    if _shard_plan is None:
        if uses_demo_images():
            checkpoints.demo_images.get()
        listing = config["listing"]
        skipped = []
        images = list_images(
            config["images"],
            extensions=listing["extensions"],
            list_file=listing["list_file"],
            follow_symlinks=listing["follow_symlinks"],
            allow_outside_root=listing["allow_outside_root"],
            skipped=skipped,
        )
        write_listing_skipped(skipped, LISTING_SKIPPED)
        if not images:
            raise WorkflowError(
                f"no images found under {config['images']!r} with extensions "
                f"{', '.join(listing['extensions'])}; set 'images' in the config"
            )
        count = shard_count_for(
            len(images), config["shards"]["count"], config["shards"]["size"]
        )
        _shard_plan = plan_shards(images, count)
        write_listings(_shard_plan, f"{CACHE}/shards")
    return _shard_plan


def shard_names(wildcards=None):
    return shard_plan().names


def shard_outputs(stage):
    return expand(f"{CACHE}/{stage}/{{shard}}.jsonl", shard=shard_names())


def embedding_outputs(wildcards=None):
    """Every shard's embeddings: what the clusters are made of."""
    return shard_outputs("embed")


def all_shard_outputs(wildcards=None):
    """Every per-shard stage output: what the manifest digests."""
    return [path for stage in SHARD_STAGES for path in shard_outputs(stage)]


def final_outputs(wildcards=None):
    return [
        f"{CACHE}/manifest.json",
        DATABASE,
        "results/annotations.csv",
        INGEST_REPORT,
    ]


def listing_skipped(wildcards=None):
    """What the folder walk left out; written while listing, so list first (after the demo)."""
    shard_plan()
    return LISTING_SKIPPED


def existing_reviews_store(wildcards=None):
    """The review store once someone has reviewed: new reviews then refresh the exports."""
    return [REVIEWS_DB] if os.path.exists(REVIEWS_DB) else []


def review_csv_to_import(wildcards=None):
    path = config["reviews"]["import_csv"]
    if not path:
        raise WorkflowError(
            "import_reviews needs a file: snakemake import_reviews --config 'reviews={import_csv: FILE.csv}'"
        )
    return path


def review_import_name():
    path = config["reviews"]["import_csv"]
    return Path(path).stem if path else "none"


def ocr_environment():
    """PaddleOCR has its own environment (another OpenCV build than rapidocr's)."""
    if config["ocr"]["engine"] == "paddleocr":
        return "../envs/ocr-paddle.yaml"
    return "../envs/ocr.yaml"


def model_fingerprint(stage):
    """sha256 over the weight files a stage uses: in params, so a new model re-runs the stage."""
    return stage_fingerprint(config, stage)


def remove_stale_temporaries():
    """Temporary files of jobs killed by SIGKILL or a power loss, which never reached their
    rename; the lock this run holds means no other run is writing them."""
    for stale in Path(CACHE).glob("*/.*.tmp"):
        stale.unlink(missing_ok=True)


def print_ingest_summary():
    """The run's last line: how many files were processed, skipped and failed."""
    log = Path("logs/ingest_report.log")
    lines = log.read_text().splitlines() if log.exists() else []
    human = [line for line in lines if line.startswith("ingest:")]
    if human:
        print(human[-1])


onstart:
    remove_stale_temporaries()


onsuccess:
    print_ingest_summary()
