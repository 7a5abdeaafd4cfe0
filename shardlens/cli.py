"""The ``shardlens`` command line."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="shardlens: image shards to reviewable annotations.", no_args_is_help=True, add_completion=False)


@app.callback()
def main() -> None:
    """shardlens command line (the workflow itself runs with `snakemake`)."""


@app.command("import-cache")
def import_cache_cmd(
    cache_dir: Path = typer.Argument(..., help="cache folder holding manifest.json (e.g. cache)"),
    db: Path = typer.Argument(..., help="SQLite catalog to create or update (e.g. results/annotations.sqlite)"),
) -> None:
    """Replay the cache into the SQLite catalog (transactional per shard, idempotent)."""
    from .catalog import CatalogError, import_cache

    try:
        stats = import_cache(cache_dir, db, log=lambda msg: typer.echo(msg, err=True))
    except CatalogError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(
        f"{db}: {stats['shards_loaded']} shards loaded, {stats['shards_unchanged']} unchanged, "
        f"{stats['shards_removed']} removed, {stats['rows']} rows written"
    )


@app.command("import-reviews")
def import_reviews_cmd(
    csv_file: Path = typer.Argument(..., help="reviewed annotation sheet (results/annotations.csv with review_status filled in)"),
    db: Path = typer.Option(Path("results/annotations.sqlite"), help="the catalog the reviews refer to"),
    store: Path = typer.Option(Path("reviews/reviews.sqlite"), help="the review store (never rewritten by the workflow)"),
) -> None:
    """Validate every row and store the reviews, all or nothing. A bad row rejects the file."""
    from .reviews import ReviewError, import_review_csv

    if not db.exists():
        typer.echo(f"error: catalog {db} does not exist: run `snakemake` first", err=True)
        raise typer.Exit(code=2)
    try:
        count = import_review_csv(csv_file, db, store)
    except ReviewError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(f"{csv_file}: {count} reviews stored in {store} (and mirrored into {db})")


@app.command("export")
def export_cmd(
    db: Path = typer.Argument(Path("results/annotations.sqlite"), help="the catalog"),
    out_dir: Path = typer.Argument(Path("results"), help="folder for annotations.csv/.json/.parquet and labelstudio_tasks.json"),
) -> None:
    """Write the annotation exports (reviewed labels over machine labels)."""
    from .exports import export_all

    for kind, path in export_all(db, out_dir).items():
        typer.echo(f"{kind}: {path}")


if __name__ == "__main__":
    app()
