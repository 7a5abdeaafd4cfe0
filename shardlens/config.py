"""The workflow configuration outside Snakemake: the same schema, the same defaults.

The workflow validates its config with Snakemake's ``validate`` (rules/common.smk); the package
never imports snakemake, so :func:`load_config` does what that does with ``jsonschema`` itself:
Draft 2020-12 validation of config/schema.yaml, where each object's missing keys get their
schema default before the object is checked (``tests/test_config_validation.py`` compares the
two on configs and on refusals)."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path

# The config schema ships with the package; the workflow's config/schema.yaml is a link to it
# (one file: docs/adr/0014-config-schema-in-the-package.md).
SCHEMA = Path(__file__).resolve().parent / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A workflow config the schema refuses; the message is one line: ``KEY: problem``."""


@cache
def _validator_class():
    from jsonschema import Draft202012Validator, validators

    check_properties = Draft202012Validator.VALIDATORS["properties"]

    def fill_defaults(validator, properties, instance, schema):
        # as Snakemake's validate (the jsonschema FAQ's recipe); copies, so that a caller that
        # changes its config never changes the schema's defaults
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from check_properties(validator, properties, instance, schema)

    return validators.extend(Draft202012Validator, {"properties": fill_defaults})


def validate_config(config: dict) -> dict:
    """Fill in ``config``'s defaults from config/schema.yaml (in place) and validate it; the first
    problem raises :class:`ConfigError` (the jsonschema error is its ``__cause__``)."""
    from jsonschema import ValidationError

    try:
        _validator_class()(_schema()).validate(config)
    except ValidationError as exc:
        key = ".".join(str(part) for part in exc.absolute_path)
        raise ConfigError(f"{key}: {exc.message}" if key else exc.message) from exc
    return config


def load_config(path: str | Path | None = None, **overrides) -> dict:
    """Validate a config file (or nothing: all defaults), filling in every default from
    config/schema.yaml; ``overrides`` are top-level keys set first."""
    import yaml  # here, not at import: a stage job that imports its options reads no YAML

    config = yaml.safe_load(Path(path).read_text()) if path else {}
    if config is not None and not isinstance(config, dict):
        raise ValueError(f"a workflow config is a mapping of keys (images:, detect:, ...), not a {type(config).__name__}")
    config = copy.deepcopy(config or {})
    config.update(overrides)
    return validate_config(config)


@cache
def _schema() -> dict:
    import yaml

    return yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))


def schema_default(*keys: str):
    """The default config/schema.yaml gives one key, e.g. ``schema_default("reviews",
    "propagate_similarity")``, for code that runs without a loaded config (the dashboard, the
    command line), so a default is written in the schema only."""
    spec = _schema()
    for key in keys:
        spec = spec["properties"][key]
    return copy.deepcopy(spec["default"])
