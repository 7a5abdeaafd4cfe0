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


if __name__ == "__main__":
    app()
