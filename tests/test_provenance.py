"""Provenance: each stage's params, the config digest and the shard plan in the manifest, the
manifest history, and `shardlens diff` (unit tests on manifests built here by the real
build_manifest, and one real workflow run, changed and re-run)."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from pathlib import Path

import pytest

from shardlens.config import load_config
from shardlens.manifest import build_manifest, canonical_json, history_entries, record_history, write_manifest
from shardlens.provenance import diff_paths, format_diff
from shardlens.shards import shard_names, shard_of
from shardlens.stages.params import STAGE_PARAMS, stage_params

from conftest import one_line_error
from conftest import shardlens_cli as shardlens

REPO = Path(__file__).resolve().parents[1]
STAGES = ["ingest", "gate", "ocr", "detect", "embed"]
TEXT_MODEL = {"stage": "ocr", "backend": "rapidocr", "source": "test", "files": {"rec.onnx": "a" * 64, "det.onnx": "b" * 64}}


def write_cache(cache: Path, listings: dict[str, list[tuple[str, int, int]]], outputs: dict[tuple[str, str], str]) -> None:
    """A cache as the stages leave it: listings (path, size, mtime_ns) and one file per stage and
    shard (``outputs`` overrides a file's text; the default follows the shard's listing)."""
    for shard, rows in listings.items():
        (cache / "shards").mkdir(parents=True, exist_ok=True)
        text = "path\tsize\tmtime_ns\n" + "".join(f"{p}\t{s}\t{m}\n" for p, s, m in rows)
        (cache / "shards" / f"{shard}.tsv").write_text(text)
        for stage in STAGES:
            (cache / stage).mkdir(parents=True, exist_ok=True)
            if stage == "ingest":
                default = "".join(json.dumps({"image_id": hashlib.sha256(f"{p}{s}".encode()).hexdigest(), "path": p}) + "\n" for p, s, _ in rows)
            else:
                default = f"{stage} of {rows}\n"  # follows the shard's images
            (cache / stage / f"{shard}.jsonl").write_text(outputs.get((stage, shard), default))


def make_run(cache: Path, listings, outputs=None, models=None, **config) -> Path:
    """Write the cache, build its manifest with the real code and append it to the history."""
    write_cache(cache, listings, outputs or {})
    (cache / "clusters.jsonl").write_text(f"clusters of {sorted(listings.items())}\n")  # made from every shard
    manifest = build_manifest(cache, sorted(listings), models or {"ocr": TEXT_MODEL}, stages=STAGES, config=load_config(**config), shard_count=4)
    write_manifest(cache / "manifest.json", manifest)
    return record_history(cache / "manifest.json", cache / "manifests")


def test_manifest_records_what_the_rules_params_hold(tmp_path):
    config = load_config(gate={"score_threshold": 0.5}, detect={"vocabulary": ["door", "sign"]})
    cache = tmp_path / "cache"
    write_cache(cache, {"0000": [("a.jpg", 10, 1)], "0002": [("b.jpg", 20, 2), ("c.jpg", 30, 3)]}, {})
    manifest = build_manifest(cache, ["0000", "0002"], {}, stages=STAGES, config=config, shard_count=4)
    # exactly the table's values, JSON as the file holds them
    assert manifest["params"] == json.loads(json.dumps({stage: stage_params(config, stage) for stage in STAGE_PARAMS}))
    assert manifest["params"]["gate"]["options"]["score_threshold"] == 0.5
    # the vocabulary maps nanodet's classes after detection: the regions stage holds it, detect does not
    assert manifest["params"]["regions"]["options"]["vocabulary"] == {"terms": ["door", "sign"], "threshold": 0.6}
    assert "vocabulary" not in manifest["params"]["detect"]["options"]
    assert manifest["params"]["ingest"]["allow_outside_root"] is False
    assert manifest["params"]["clusters"]["options"] == json.loads(json.dumps(config["labels"]))
    assert manifest["config_digest"] == hashlib.sha256(canonical_json(config).encode()).hexdigest()
    other = build_manifest(cache, ["0000", "0002"], {}, stages=STAGES, config=load_config(export={"coco_labels": "machine"}), shard_count=4)
    assert other["config_digest"] != manifest["config_digest"]
    plan = manifest["shard_plan"]
    listing = (cache / "shards" / "0002.tsv").read_bytes()
    assert plan["listings"]["0002"] == {"file": "shards/0002.tsv", "sha256": hashlib.sha256(listing).hexdigest(), "records": 2}
    assert plan["count"] == 4 and plan["shards"] == 2 and plan["images"] == 3
    assert plan["configured"] == {"count": None, "size": config["shards"]["size"]}
    digest = hashlib.sha256("".join(f"{s}\t{plan['listings'][s]['sha256']}\n" for s in ("0000", "0002")).encode()).hexdigest()
    assert plan["listings_digest"] == digest


def test_every_cached_stage_rule_takes_its_params_from_the_one_table():
    """No rule of a cached stage spells a config key of its own in params: the rule and the
    manifest both read shardlens/stages/params.py."""
    rule_of = {"clusters": "cluster"}
    text = "\n".join(p.read_text() for p in sorted((REPO / "rules").glob("*.smk")))
    for stage in STAGE_PARAMS:
        rule = rule_of.get(stage, stage)
        body = re.search(rf"^rule {rule}:\n(.*?)(?=^rule |\Z)", text, re.S | re.M).group(1)
        params = re.search(r"^    params:\n((?:        .*\n)+)", body, re.M).group(1)
        assert f'**stage_params("{stage}")' in params, (rule, params)
        assert "config[" not in params, (rule, params)


def test_history_keeps_each_run_and_each_listing_once(tmp_path):
    cache = tmp_path / "cache"
    listings = {"0000": [("a.jpg", 10, 1)], "0001": [("b.jpg", 20, 2)]}
    first = make_run(cache, listings)
    assert first.name.startswith("000001-") and first.read_bytes() == (cache / "manifest.json").read_bytes()
    kept = sorted((cache / "manifests" / "listings").iterdir())
    assert len(kept) == 2
    for shard in listings:
        text = (cache / "shards" / f"{shard}.tsv").read_bytes()
        assert gzip.decompress((cache / "manifests" / "listings" / f"{hashlib.sha256(text).hexdigest()}.tsv.gz").read_bytes()) == text
    second = make_run(cache, {**listings, "0001": [("b.jpg", 21, 3)]})
    assert second.name.startswith("000002-") and history_entries(cache / "manifests") == [first, second]
    assert first.read_bytes() != second.read_bytes() == (cache / "manifest.json").read_bytes()
    assert len(list((cache / "manifests" / "listings").iterdir())) == 3  # only the changed listing added


def test_diff_names_images_models_params_and_each_shards_cause(tmp_path):
    cache = tmp_path / "cache"
    old = {
        "0000": [("a.jpg", 10, 1), ("b.jpg", 20, 2)],
        "0001": [("c.jpg", 30, 3)],
        "0002": [("d.jpg", 40, 4)],
        "0003": [("gone.jpg", 50, 5)],
    }
    make_run(cache, old)
    new = {
        "0000": [("a.jpg", 10, 1), ("b.jpg", 25, 9), ("new.jpg", 5, 5)],  # b changed, new added
        "0001": [("c.jpg", 30, 3)],  # unchanged listing; its gate output differs (threshold)
        "0002": [("d.jpg", 40, 4)],  # unchanged in every way
        "0004": [("e.jpg", 60, 6)],  # a new shard
    }  # shard 0003 removed
    model = {**TEXT_MODEL, "files": {**TEXT_MODEL["files"], "rec.onnx": "c" * 64}}
    outputs = {("gate", "0001"): "gate of 0001, new threshold\n", ("ocr", "0001"): "fewer lines\n"}
    make_run(cache, new, outputs=outputs, models={"ocr": model}, gate={"score_threshold": 0.5})
    entries = history_entries(cache / "manifests")
    diff = diff_paths(*entries, limit=10)
    default = load_config()["gate"]["score_threshold"]
    assert diff["images"] == {
        "added": {"count": 2, "paths": ["e.jpg", "new.jpg"]},
        "removed": {"count": 1, "paths": ["gone.jpg"]},
        "changed": {"count": 1, "paths": ["b.jpg"]},
    }
    assert diff["models"] == [{"model": "ocr", "stage": "ocr", "file": "rec.onnx", "old": "a" * 64, "new": "c" * 64}]
    assert diff["params"] == {"gate": [{"key": "options.score_threshold", "old": default, "new": 0.5}]}
    assert diff["config_changed"] is True
    gate_cause = {"cause": "parameters", "stage": "gate", "keys": ["options.score_threshold"]}
    ocr_model = {"cause": "model", "stage": "ocr", "models": ["ocr"]}
    assert diff["shards"] == [
        {
            "shard": "0000",
            "status": "changed",
            "stages": ["ingest", "gate", "ocr", "detect", "embed"],
            "causes": [{"cause": "listing", "added": 1, "removed": 0, "changed": 1}, gate_cause, ocr_model],
        },
        {"shard": "0001", "status": "changed", "stages": ["gate", "ocr"], "causes": [gate_cause, ocr_model]},
        {"shard": "0003", "status": "removed", "stages": STAGES, "causes": [{"cause": "removed shard"}]},
        {"shard": "0004", "status": "added", "stages": STAGES, "causes": [{"cause": "new shard"}]},
    ]
    assert diff["shard_plan"]["images"] == {"old": 5, "new": 6}
    old_clusters = f"clusters of {sorted(old.items())}\n".encode()
    assert diff["aggregates"] == [
        {
            "name": "clusters",
            "old": hashlib.sha256(old_clusters).hexdigest(),
            "new": hashlib.sha256((cache / "clusters.jsonl").read_bytes()).hexdigest(),
            "cause": {"cause": "shards"},
        }
    ]
    assert diff["notes"] == [] and diff["tools"] == [] and diff["schema_changed"] is False
    # the limit cuts the lists, never the counts; the text says the rest
    short = diff_paths(*entries, limit=1)
    assert short["images"]["added"] == {"count": 2, "paths": ["e.jpg"]}
    text = format_diff(short)
    assert "images: 2 added, 1 removed, 1 changed" in text
    assert "  + ... and 1 more" in text
    assert f"  gate: options.score_threshold {default} -> 0.5" in text
    assert "  0001 [changed] gate, ocr: parameters of gate (options.score_threshold); model of ocr (ocr)" in text
    assert f"  ocr (ocr) rec.onnx: {'a' * 12} -> {'c' * 12}" in text


def test_diff_a_stage_without_a_recorded_cause_is_unexplained_and_later_stages_follow(tmp_path):
    cache = tmp_path / "cache"
    listings = {"0000": [("a.jpg", 10, 1)]}
    make_run(cache, listings)
    make_run(cache, listings, outputs={("detect", "0000"): "other regions\n", ("embed", "0000"): "other vectors\n"})
    diff = diff_paths(*history_entries(cache / "manifests"))
    assert diff["params"] == {} and diff["models"] == [] and diff["config_changed"] is False
    assert diff["aggregates"] == [] and diff["shard_plan"] == {}
    assert diff["shards"] == [
        {
            "shard": "0000",
            "status": "changed",
            "stages": ["detect", "embed"],
            "causes": [{"cause": "unexplained", "stage": "detect", "detail": "no recorded input changed (a forced re-run, or code changed)"}],
        }
    ]


def test_diff_cli_json_errors_and_default_history(tmp_path):
    cache = tmp_path / "cache"
    listings = {"0000": [("a.jpg", 10, 1)]}
    make_run(cache, listings)
    one_line_error(shardlens("diff", "--cache", str(cache), cwd=tmp_path), "only one run in the history", "000001-")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    one_line_error(shardlens("diff", cwd=elsewhere), "cache/manifests: no manifest history")
    one_line_error(shardlens("diff", str(tmp_path / "nope.json"), str(cache / "manifest.json"), cwd=tmp_path), "nope.json: no such manifest")
    (tmp_path / "list.json").write_text("[1, 2]")
    one_line_error(shardlens("diff", str(tmp_path / "list.json"), str(cache / "manifest.json"), cwd=tmp_path), "list.json: not a manifest")
    (tmp_path / "broken.json").write_text("{")
    one_line_error(shardlens("diff", str(tmp_path / "broken.json"), str(cache / "manifest.json"), cwd=tmp_path), "broken.json: not a manifest (not valid JSON")
    one_line_error(shardlens("diff", str(cache / "manifest.json"), cwd=tmp_path), "give two manifests")
    make_run(cache, {"0000": [("a.jpg", 11, 2)]})
    proc = shardlens("diff", "--json", cwd=tmp_path)  # default cache folder: ./cache
    assert proc.returncode == 0, proc.stderr
    diff = json.loads(proc.stdout)
    old, new = history_entries(cache / "manifests")
    assert diff["old"]["manifest"] == str(Path("cache") / "manifests" / old.name)
    assert diff["new"]["manifest"] == str(Path("cache") / "manifests" / new.name)
    assert diff["images"]["changed"] == {"count": 1, "paths": ["a.jpg"]}
    assert [s["shard"] for s in diff["shards"]] == ["0000"]
    # the current manifest against the first entry: the same comparison
    proc = shardlens("diff", str(old), str(cache / "manifest.json"), "--json", cwd=tmp_path)
    assert json.loads(proc.stdout)["shards"] == diff["shards"]
    text = shardlens("diff", cwd=tmp_path).stdout
    assert "images: 0 added, 0 removed, 1 changed" in text and "  ~ a.jpg" in text


@pytest.mark.slow
def test_workflow_diff_names_the_threshold_the_image_and_the_shards(tmp_path, tiny_images):
    from conftest import smooth_image, snakemake, write_config

    workdir = tmp_path / "run"
    write_config(workdir, images=str(tiny_images), shards={"count": 3})
    snakemake(workdir, "--cores", "2")
    one_line_error(shardlens("diff", cwd=workdir), "only one run in the history")
    first = json.loads((workdir / "cache" / "manifest.json").read_text())
    assert first["params"]["gate"]["options"]["score_threshold"] == load_config()["gate"]["score_threshold"]

    smooth_image(7).save(tiny_images / "gradient.jpg", quality=90)  # one image changed
    write_config(workdir, images=str(tiny_images), shards={"count": 3}, gate={"score_threshold": 1.0})
    snakemake(workdir, "--cores", "2")
    history = history_entries(workdir / "cache" / "manifests")
    assert len(history) == 2 and history[-1].read_bytes() == (workdir / "cache" / "manifest.json").read_bytes()

    proc = shardlens("diff", "--json", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    diff = json.loads(proc.stdout)
    assert diff["params"] == {"gate": [{"key": "options.score_threshold", "old": load_config()["gate"]["score_threshold"], "new": 1.0}]}
    assert diff["images"] == {
        "added": {"count": 0, "paths": []},
        "removed": {"count": 0, "paths": []},
        "changed": {"count": 1, "paths": ["gradient.jpg"]},
    }
    assert diff["models"] == []
    names = shard_names(3)
    changed_shard = names[shard_of("gradient.jpg", 3)]
    by_shard = {s["shard"]: s for s in diff["shards"]}
    listing_cause = {"cause": "listing", "added": 0, "removed": 0, "changed": 1}
    assert listing_cause in by_shard[changed_shard]["causes"] and by_shard[changed_shard]["stages"][0] == "ingest"
    # the text images went to OCR at the default threshold, and none reaches 1.0: their shards' gate
    # records changed, and the diff says it was the gate's threshold
    gate_cause = {"cause": "parameters", "stage": "gate", "keys": ["options.score_threshold"]}
    old_gate = {s: e["gate"]["sha256"] for s, e in first["shards"].items()}
    new_manifest = json.loads((workdir / "cache" / "manifest.json").read_text())
    for path in ("open.png", "sub/street.png"):
        shard = names[shard_of(path, 3)]
        assert new_manifest["shards"][shard]["gate"]["sha256"] != old_gate[shard]
        assert "gate" in by_shard[shard]["stages"] and gate_cause in by_shard[shard]["causes"], by_shard[shard]
    # every shard listed differs in a listing or an output, and every one that differs is listed
    differs = {s for s in new_manifest["shards"] if new_manifest["shards"][s] != first["shards"][s]}
    assert set(by_shard) == differs | {changed_shard}
    for entry in diff["shards"]:
        assert entry["causes"], entry
        assert all(c["cause"] in ("listing", "parameters") for c in entry["causes"]), entry


def test_diff_says_what_it_cannot_itemise(tmp_path):
    cache = tmp_path / "cache"
    first = make_run(cache, {"0000": [("a.jpg", 10, 1)]})
    second = make_run(cache, {"0000": [("a.jpg", 11, 2)]})
    old_listing = json.loads(first.read_text())["shard_plan"]["listings"]["0000"]["sha256"]
    (cache / "manifests" / "listings" / f"{old_listing}.tsv.gz").unlink()
    diff = diff_paths(first, second)
    assert diff["images"]["changed"] == {"count": 0, "paths": []}
    assert diff["notes"] == [f"the listing of shard 0000 ({old_listing[:12]}) is not kept in {cache / 'manifests'}: its images are not itemised"]
    assert diff["shards"][0]["causes"] == [{"cause": "listing", "added": 0, "removed": 0, "changed": 0}]
    assert "listing changed (its images are not itemised: see the notes)" in format_diff(diff)
    # a manifest written before params and listings were recorded: compared for what it has
    older = json.loads(first.read_text())
    del older["params"], older["shard_plan"], older["config_digest"]
    (tmp_path / "older.json").write_text(json.dumps(older))
    diff = diff_paths(tmp_path / "older.json", second)
    assert diff["notes"] == [f"the old manifest {tmp_path / 'older.json'} predates parameters and listings in the manifest: those are not compared"]
    assert [s["shard"] for s in diff["shards"]] == ["0000"] and diff["shards"][0]["stages"] == STAGES


def snakemake_params(workdir: Path, output: str) -> list[str]:
    """The params Snakemake recorded for the job that made ``output`` (its metadata: the repr of
    each value), as canonical JSON, sorted."""
    import ast
    import base64

    meta = workdir / ".snakemake" / "metadata" / base64.urlsafe_b64encode(output.encode()).decode()
    return sorted(canonical_json(ast.literal_eval(value)) for value in json.loads(meta.read_text())["params"])


@pytest.mark.slow
def test_workflow_manifest_params_are_what_snakemake_gave_the_rules(tmp_path, tiny_images):
    """Per stage, the manifest's params plus the model hash are exactly the values Snakemake
    passed the rule (and recorded to decide re-runs)."""
    from shardlens.stages import SHARD_STAGES

    from conftest import snakemake, write_config

    workdir = tmp_path / "run"
    write_config(workdir, images=str(tiny_images), shards={"count": 2}, ocr={"box_thresh": 0.4})
    snakemake(workdir, "--cores", "2")
    manifest = json.loads((workdir / "cache" / "manifest.json").read_text())
    assert manifest["params"]["ocr"]["options"]["box_thresh"] == 0.4
    shard = sorted(manifest["shards"])[0]
    outputs = {stage: f"cache/{stage}/{shard}.jsonl" for stage in SHARD_STAGES} | {"clusters": "cache/clusters.jsonl"}
    assert set(outputs) == set(manifest["params"])
    for stage, output in outputs.items():
        recorded = snakemake_params(workdir, output)
        ours = sorted(canonical_json(value) for value in manifest["params"][stage].values())
        extra = list(recorded)
        for value in ours:
            extra.remove(value)  # ValueError: the manifest holds a value the rule did not get
        if stage in ("gate", "ocr", "detect", "embed"):
            assert len(extra) == 1 and re.fullmatch(r'"[0-9a-f]{64}"', extra[0]), (stage, extra)  # the model hash
        elif stage == "regions":  # a model only for the detect.vocabulary shorthand (MiniLM): none here
            assert extra == ['""'], (stage, extra)
        else:
            assert extra == [], (stage, extra)
