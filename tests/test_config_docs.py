"""Every config key is documented, and the schema gives each a description and a default."""

from __future__ import annotations

import yaml

from conftest import REPO


def leaf_keys(schema: dict, prefix: str = "") -> list[tuple[str, dict]]:
    out = []
    for name, spec in schema.get("properties", {}).items():
        key = f"{prefix}{name}"
        if spec.get("type") == "object" and "properties" in spec:
            out.append((key, spec))
            out += leaf_keys(spec, key + ".")
        else:
            out.append((key, spec))
    return out


def test_every_key_has_description_default_and_docs():
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    readme = (REPO / "config" / "README.md").read_text()
    for key, spec in leaf_keys(schema):
        assert spec.get("description"), f"{key} has no description"
        assert "default" in spec, f"{key} has no default"
        if not (spec.get("type") == "object" and "properties" in spec):
            assert f"`{key}`" in readme, f"{key} is not documented in config/README.md"
