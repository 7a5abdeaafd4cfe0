"""shardlens.config validates a workflow config as the workflow does (Snakemake's validate in
rules/common.smk), without importing snakemake: the same schema, the same defaults filled in,
the same configs refused."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from shardlens.config import SCHEMA, load_config

from conftest import REPO

ACCEPTED = [
    {},
    {"images": "elsewhere", "shards": {"count": 3}},
    {"detect": {"backend": "nanodet", "vocabulary": ["kitty", "human"]}, "export": {"coco_labels": "machine"}},
    {"listing": {"extensions": [".png"]}, "labels": {}, "ocr": {}},
]
REFUSED = [
    ({"detect": {"backend": "yolo"}}, "detect.backend"),
    ({"export": {"coco_labels": "bogus"}}, "export.coco_labels"),
    ({"shards": {"count": "three"}}, "shards.count"),
    ({"listing": {"extensions": [".png", "png"]}}, "listing.extensions.1"),
    ({"no_such_key": 1}, ""),
]


def _configs():
    yield from (copy.deepcopy(c) for c in ACCEPTED)
    for path in sorted((REPO / "config").glob("*.yaml")) + sorted(REPO.glob("profiles/**/config.yaml")):
        if path.name != "config.yaml" or path.parent.name != "config":
            continue
        yield yaml.safe_load(path.read_text()) or {}


def _snakemake_validated(config: dict) -> dict:
    from snakemake.utils import validate

    config = copy.deepcopy(config)
    validate(config, str(SCHEMA))
    return config


@pytest.mark.parametrize("config", list(_configs()), ids=lambda c: json.dumps(c)[:60])
def test_defaults_filled_as_snakemake_fills_them(config, tmp_path):
    expected = _snakemake_validated(config)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    got = load_config(path)
    assert json.dumps(got) == json.dumps(expected)  # the same keys, values and order
    assert json.dumps(load_config(None, **config)) == json.dumps(expected)


def test_defaults_are_fresh_copies():
    first = load_config()
    first["listing"]["extensions"].append(".xyz")
    first["detect"]["vocabulary"].append("changed")
    assert load_config() == _snakemake_validated({})


@pytest.mark.parametrize("config, key", REFUSED, ids=[k or "top" for _, k in REFUSED])
def test_refused_as_snakemake_refuses_naming_the_key(config, key):
    from jsonschema import ValidationError
    from snakemake.exceptions import WorkflowError

    with pytest.raises(WorkflowError):
        _snakemake_validated(config)
    with pytest.raises(ValueError) as info:
        load_config(None, **config)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{key}: ") if key else ":" not in message.split(" ", 1)[0]
    assert isinstance(info.value.__cause__, ValidationError)
    assert message.endswith(info.value.__cause__.message)
