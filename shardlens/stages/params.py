"""Which config values each cached stage receives: the one place that says it.

Each rule of a cached stage takes ``params: **stage_params(stage), model=model_fingerprint(stage)``
(rules/common.smk), and the manifest records ``stage_params(config, stage)`` for every stage here,
so the manifest holds exactly what the rules' params hold, from this one table. A changed value
re-runs the stage (Snakemake's params trigger) and ``shardlens diff`` names it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..cluster_fit import OUTLIER_SCORE_METHOD
from ..near_duplicates import PHASH_METHOD
from ..ontology import detector_options, regions_options
from ..options import DetectOptions, EmbedOptions, GateOptions, OCROptions, RegionsOptions, StageOptions

# cache name (a per-shard stage of shardlens.stages.SHARD_STAGES, or an aggregate of AGGREGATES)
# -> rule param name -> path of keys into the validated config (defaults applied), or a function
# of the config for values derived from it (the ontology file's content, the detector's prompts)
STAGE_PARAMS: dict[str, dict[str, tuple[str, ...] | Callable[[dict], Any]]] = {
    # ingest: the perceptual hash's method too, so a new method (or imagehash release) re-runs it
    "ingest": {
        "images": ("images",),
        "limits": ("limits",),
        "allow_outside_root": ("listing", "allow_outside_root"),
        "perceptual_hash": lambda config: PHASH_METHOD,
    },
    "gate": {"images": ("images",), "limits": ("limits",), "options": ("gate",)},
    "ocr": {"images": ("images",), "limits": ("limits",), "options": ("ocr",)},
    # detect: without the vocabulary, with the prompts when the backend takes text
    "detect": {"images": ("images",), "limits": ("limits",), "options": detector_options},
    # regions: the ontology file's content (not its path), or the vocabulary shorthand
    "regions": {"options": regions_options},
    "embed": {"options": ("embed",)},
    # clusters: how members' outlier scores are computed too, so a clusters file written before
    # (or by another method) is made again with them
    "clusters": {"options": ("labels",), "outlier_score": lambda config: OUTLIER_SCORE_METHOD},
}


# stage -> the typed options its ``options`` param builds (shardlens/options.py); the stage script
# builds them from the rule's params, so the params Snakemake and the manifest record stay the
# config values themselves (ingest has no ``options`` param: its run_shard builds
# shardlens.options.IngestOptions of its ``limits`` and ``allow_outside_root``)
STAGE_OPTIONS: dict[str, type[StageOptions]] = {
    "gate": GateOptions,
    "ocr": OCROptions,
    "detect": DetectOptions,
    "regions": RegionsOptions,
    "embed": EmbedOptions,
}


def stage_params(config: dict, stage: str) -> dict[str, Any]:
    """param name -> config value for one stage (the values themselves, not copies; derived
    values are computed, which reads the ontology file and raises OntologyError on a bad one)."""
    try:
        table = STAGE_PARAMS[stage]
    except KeyError:
        raise KeyError(f"no params table for stage {stage!r}; known: {', '.join(STAGE_PARAMS)}") from None
    out = {}
    for name, keys in table.items():
        if callable(keys):
            out[name] = keys(config)
            continue
        value: Any = config
        for key in keys:
            value = value[key]
        out[name] = value
    return out


def all_stage_params(config: dict) -> dict[str, dict[str, Any]]:
    """stage -> its params, for every stage of :data:`STAGE_PARAMS` (what the manifest records)."""
    return {stage: stage_params(config, stage) for stage in STAGE_PARAMS}


def stage_options(config: dict, stage: str) -> StageOptions:
    """The typed options a stage runs with under ``config`` (as its script builds them from the
    rule's params)."""
    return STAGE_OPTIONS[stage].from_values(stage_params(config, stage)["options"])
