"""The SQLite catalog: replays the cache into tables, updated in place in one transaction.

Each stage's table is generated from its record schema (``contracts/*.schema.json``), so a field
exists in exactly one place. Loading is idempotent and incremental: a shard whose files have the
digests already recorded in ``shard_files`` is skipped, a changed shard is replaced whole, a
shard gone from the plan is dropped, and the aggregates (clusters, the reviews' copy, the
propagated labels of :mod:`shardlens.propagation`, the cluster parts of the risk scores of
:mod:`shardlens.risk`, the run) follow, all in one transaction. A full rebuild (``full=True``, ``shardlens import-cache
--full``, or automatic when the catalog's layout or the cache's schema hash changed) empties
and refills the same file in that same transaction. docs/adr/0005-incremental-catalog.md says
why, and how the Snakemake rule keeps the database that Snakemake deletes before each job.

The package: :mod:`.schema` (the tables, views and indexes; opening a catalog), :mod:`.derive`
(rows derived while a shard loads: OCR lines linked to the regions holding them), :mod:`.load`
(the cache into the catalog) and :mod:`.build` (the workflow rule's job). The rules the views
are made from live in :mod:`shardlens.catalog_rules`."""

from __future__ import annotations

from .build import build_catalog, keep_path
from .derive import CATALOG_DERIVATION, link_lines_to_regions
from .load import SCHEMA_ADAPTERS, import_cache, read_manifest, read_records, verify_shard_files
from .schema import FIXED_DDL, STAGE_TABLES, CatalogError, catalog_hash, connect, connect_readonly, fetch_rows, record_columns, schema_statements, table_ddl

__all__ = [
    "CATALOG_DERIVATION",
    "CatalogError",
    "FIXED_DDL",
    "SCHEMA_ADAPTERS",
    "STAGE_TABLES",
    "build_catalog",
    "catalog_hash",
    "connect",
    "connect_readonly",
    "fetch_rows",
    "import_cache",
    "keep_path",
    "link_lines_to_regions",
    "read_manifest",
    "read_records",
    "record_columns",
    "schema_statements",
    "table_ddl",
    "verify_shard_files",
]
