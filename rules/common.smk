# Shared knowledge of the workflow: the validated config, the image listing and its shards, and
# the input functions the rules use. Nothing here runs a model.
import os
from pathlib import Path

from snakemake.utils import validate

from shardlens.export_formats import export_paths
from shardlens.images.listing import list_images
from shardlens.models.registry import stage_fingerprint
from shardlens.ontology import OntologyError, config_ontology, label_space
from shardlens.report import listing_skipped_text
from shardlens.shards import listing_text, plan_shards, shard_count_for
from shardlens.stages import SHARD_STAGES
from shardlens.stages.params import stage_params as params_of_config

validate(config, "../config/schema.yaml")
try:  # a bad ontology file (or ontology and detect.vocabulary both set): one line, before any job
    config_ontology(config)
except OntologyError as exc:
    raise WorkflowError(str(exc)) from None

CACHE = "cache"
DEMO_DIR = "resources/demo"
DATABASE = config["catalog"]["database"]
REVIEWS_DB = config["reviews"]["database"]
LISTING_SKIPPED = f"{CACHE}/listing_skipped.tsv"
INGEST_REPORT = "results/ingest_report.csv"
EXPORT_DIR = "results"
# the export rule's outputs: the Parquet dataset's manifest and the files of export.formats, named
# by shardlens/export_formats.py as the export writes them (the dataset folder itself is no
# output: docs/adr/0007)
EXPORT_OUTPUTS = {
    name: str(path)
    for name, path in export_paths(
        EXPORT_DIR, formats=config["export"]["formats"]
    ).items()
    if name != "parquet"
}


wildcard_constraints:
    shard=r"\d+",


localrules:
    all,
    demo_images,
    shard_listing,
    listing_skipped,
    shard_jobs,
    cluster,
    manifest,
    catalog,
    export,
    import_reviews,
    ingest_report,
    report_figures,


_shard_plan = None
_listing_skipped = None


def attempt_scaled(base):
    """A resource (MB of memory, minutes) that grows with each try: base, 2 x base, 3 x base
    (the Slurm profile retries twice). The rules are the one place that sizes jobs; profiles keep
    site settings, GPUs and grouping."""
    return lambda wildcards, attempt: base * attempt


def uses_demo_images():
    return os.path.abspath(config["images"]) == os.path.abspath(DEMO_DIR)


def shard_plan():
    """List the images once per invocation and assign shards, in memory. Planning writes no
    file: the shard listings and listing_skipped.tsv are written by their rules, from the plan
    (docs/adr/0002), so that `-n` or a run the lock refuses never changes what a running run reads.
    """
    global _shard_plan, _listing_skipped
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
        if not images:
            raise WorkflowError(
                f"no images found under {config['images']!r} with extensions "
                f"{', '.join(listing['extensions'])}; set 'images' in the config"
            )
        count = shard_count_for(
            len(images), config["shards"]["count"], config["shards"]["size"]
        )
        _shard_plan = plan_shards(images, count)
        _listing_skipped = listing_skipped_text(skipped)
    return _shard_plan


def generated_images(wildcards=None):
    """The demo set's folder when the demo runs (its checkpoint must come before the listing)."""
    return [checkpoints.demo_images.get().output[0]] if uses_demo_images() else []


def shard_listing(wildcards):
    """The listing of one shard, as the plan has it (the shard_listing rule's param: a changed
    image changes this shard's listing only, and re-runs only its job)."""
    return listing_text(shard_plan().shards[wildcards.shard])


def skipped_entries(wildcards=None):
    """What the folder walk left out (the listing_skipped rule's param)."""
    shard_plan()
    return _listing_skipped


def shard_names(wildcards=None):
    return shard_plan().names


def shard_outputs(stage):
    return expand(f"{CACHE}/{stage}/{{shard}}.jsonl", shard=shard_names())


def embedding_outputs(wildcards=None):
    """Every shard's embeddings: what the clusters are made of."""
    return shard_outputs("embed")


def shard_job_records(wildcards=None):
    """Every shard's job record (logs/jobs/{shard}.json, written once all its stages are done):
    the aggregate rules' inputs (rules/catalog.smk says why)."""
    return expand("logs/jobs/{shard}.json", shard=shard_names())


def final_outputs(wildcards=None):
    return [
        f"{CACHE}/manifest.json",
        DATABASE,
        EXPORT_OUTPUTS["parquet_manifest"],
        INGEST_REPORT,
        *rules.report_figures.output,
    ]


def folder_of(files, name):
    """A param: the folder of the job's ``files`` ("input" or "output") entry ``name`` (a name, or a
    position), for a job that reads or writes the files beside it. The rule names the folder by
    its own declared files, as `snakemake --lint` asks of a path param."""

    def folder(wildcards, input, output):
        chosen = input if files == "input" else output
        path = chosen[name] if isinstance(name, int) else getattr(chosen, name)
        return str(Path(path).parent)

    return folder


def existing_reviews_store(wildcards=None):
    """The review store once someone has reviewed: new reviews then refresh the catalog's copy
    and the exports."""
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


def stage_params(stage):
    """The params a cached stage takes from the config, as the one table in
    shardlens/stages/params.py says (the manifest records the same)."""
    return params_of_config(config, stage)


def shard_count(wildcards=None):
    """The plan's shard count, empty shards included (the manifest records it)."""
    return shard_plan().count


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
