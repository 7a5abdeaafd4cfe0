"""The workflow configuration outside Snakemake: the same schema, the same defaults."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path

import yaml

SCHEMA = Path(__file__).resolve().parents[1] / "config" / "schema.yaml"


def load_config(path: str | Path | None = None, **overrides) -> dict:
    """Validate a config file (or nothing: all defaults) with Snakemake's validator, which fills
    in every default from config/schema.yaml; ``overrides`` are top-level keys set first."""
    from snakemake.utils import validate

    config = yaml.safe_load(Path(path).read_text()) if path else {}
    if config is not None and not isinstance(config, dict):
        raise ValueError(f"a workflow config is a mapping of keys (images:, detect:, ...), not a {type(config).__name__}")
    config = copy.deepcopy(config or {})
    config.update(overrides)
    validate(config, str(SCHEMA))
    return config


@cache
def _schema() -> dict:
    return yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))


def schema_default(*keys: str):
    """The default config/schema.yaml gives one key, e.g. ``schema_default("reviews",
    "propagate_similarity")``, for code that runs without a loaded config (the dashboard, the
    command line), so a default is written in the schema only."""
    spec = _schema()
    for key in keys:
        spec = spec["properties"][key]
    return copy.deepcopy(spec["default"])
