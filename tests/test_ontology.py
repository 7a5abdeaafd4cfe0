"""The ontology file: loading and validating it, applying it to the detector's records, what the
detect and regions stages receive from it, `shardlens ontology suggest`, and in the real workflow
that editing it re-runs no detector (docs/adr/0009-ontology.md)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import yaml

from shardlens.config import load_config
from shardlens.ontology import (
    OntologyError,
    apply_ontology,
    config_ontology,
    detector_options,
    label_space,
    load_ontology,
    regions_options,
    suggest_ontology,
    validate_ontology,
)
from shardlens.records import validate_record
from shardlens.stages.params import stage_params

from conftest import REPO, one_line_error, planned_jobs, shardlens_cli, snakemake, write_config

IMAGE = "ab" * 32


def native(*candidates: tuple[str, float], source: str = "detector", region_id: int = 0) -> dict:
    """A detect record as the detect stage writes it (validated against its contract)."""
    record = {
        "schema_version": 1, "image_id": IMAGE, "region_id": region_id, "bbox": [1.0, 2.0, 30.0, 40.0],
        "score": candidates[0][1], "labels": [{"label": n, "score": s, "source": source} for n, s in candidates],
        "caption": candidates[0][0], "detector_label": candidates[0][0], "detector_version": "nanodet:nanodet-g-416@0123456789ab",
    }  # fmt: skip
    validate_record("detection", record)
    return record


def ontology(**data):
    return validate_ontology(data, "test.yaml")


def write(path: Path, data) -> Path:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


# --------------------------------------------------------------------------------- applying


def test_many_native_classes_merge_onto_one_class():
    onto = ontology(classes={"vehicle": {"native": ["car", "truck", "bus"]}, "person": None})
    region, reason = apply_ontology(native(("car", 0.6), ("truck", 0.7), ("Person", 0.2), ("bus", 0.1), region_id=4), onto)
    assert reason is None
    validate_record("region", region)
    # the region is what its first candidate says; candidates of one class merge (best score)
    assert region["labels"] == [
        {"label": "vehicle", "score": 0.7, "source": "detector"},
        {"label": "person", "score": 0.2, "source": "detector"},
    ]
    assert region["caption"] == "vehicle"
    assert region["detector_label"] == "car" and region["region_id"] == 4 and region["score"] == 0.6


def test_prompts_map_onto_their_class_and_the_class_name_counts_too():
    onto = ontology(classes={"animal": {"prompts": ["a cat", "a dog"]}, "sign": {"prompts": ["street sign"]}})
    assert onto.prompts() == ["a cat", "a dog", "street sign"]
    # each prompt once, as names compare (an open-vocabulary detector refuses duplicates)
    assert ontology(classes={"pet": {"prompts": ["cat", "Cat", "dog", "cat"]}, "sign": None}).prompts() == ["cat", "dog", "sign"]
    assert onto.target("A Dog") == ("animal", None)
    assert onto.target("sign") == ("sign", None)  # the class's own name, though not a prompt
    region, _ = apply_ontology(native(("street sign", 0.5), ("a cat", 0.4), source="classifier"), onto)
    assert [c["label"] for c in region["labels"]] == ["sign", "animal"]
    assert {c["source"] for c in region["labels"]} == {"classifier"}


def test_a_class_threshold_drops_a_region_below_it():
    onto = ontology(classes={"animal": {"native": ["bird", "sheep"], "threshold": 0.45}, "person": None}, threshold=0.3)
    assert apply_ontology(native(("bird", 0.44)), onto) == (None, "below_threshold")
    kept, _ = apply_ontology(native(("bird", 0.45)), onto)
    assert kept["caption"] == "animal"
    # a later candidate under its own class's threshold is left out; the region stays
    region, _ = apply_ontology(native(("person", 0.5), ("sheep", 0.4), ("kite", 0.29)), onto)
    assert [c["label"] for c in region["labels"]] == ["person"]
    # unmapped names kept use the top-level threshold
    assert apply_ontology(native(("kite", 0.29)), onto) == (None, "below_threshold")
    assert apply_ontology(native(("kite", 0.31)), onto)[0]["caption"] == "kite"


def test_exclude_drops_the_region_it_names_and_the_candidates():
    onto = ontology(classes={"sign": {"native": ["stop sign"]}}, exclude=["toilet", "TV"])
    assert apply_ontology(native(("toilet", 0.9), ("stop sign", 0.5)), onto) == (None, "excluded")
    assert apply_ontology(native(("tv", 0.9)), onto) == (None, "excluded")  # case-insensitive
    region, _ = apply_ontology(native(("stop sign", 0.5), ("toilet", 0.4), ("clock", 0.3)), onto)
    assert [c["label"] for c in region["labels"]] == ["sign", "clock"]


def test_unmapped_names_are_kept_by_default_or_dropped():
    keep = ontology(classes={"vehicle": {"native": ["car"]}})
    assert keep.unmapped == "keep"
    region, _ = apply_ontology(native(("kite", 0.5), ("car", 0.4)), keep)
    assert [c["label"] for c in region["labels"]] == ["kite", "vehicle"]
    drop = ontology(classes={"vehicle": {"native": ["car"]}}, unmapped="drop")
    assert apply_ontology(native(("kite", 0.5), ("car", 0.4)), drop) == (None, "unmapped")
    region, _ = apply_ontology(native(("car", 0.5), ("kite", 0.4)), drop)
    assert [c["label"] for c in region["labels"]] == ["vehicle"]


def test_no_ontology_keeps_the_detectors_names():
    record = native(("cat", 0.8), ("dog", 0.3))
    region, _ = apply_ontology(record, None)
    assert region["labels"] == record["labels"] and region["caption"] == "cat"


# ---------------------------------------------------------------------------------- loading


def test_the_shipped_example_loads_and_does_what_its_comments_say():
    onto = load_ontology(REPO / "config" / "ontology.yaml")
    assert onto.target("truck") == ("vehicle", None) and onto.target("bowl") == ("tableware", None)
    assert onto.target("toilet") == (None, "excluded") and onto.target("kite") == ("kite", None)
    assert onto.class_threshold("animal") == 0.45 and onto.class_threshold("kite") == 0.0
    space = label_space(load_config(ontology=str(REPO / "config" / "ontology.yaml")))
    assert space[:3] == ["person", "bicycle", "vehicle"]  # the classes first, in the file's order
    assert "kite" in space and "car" not in space and "toilet" not in space  # then COCO classes kept unmapped


@pytest.mark.parametrize(
    "text,needle",
    [
        ("classes:\n  vehicle:\n    threshold: 1.5\n", "classes.vehicle.threshold: 1.5 is greater than the maximum of 1"),
        ("classes:\n  ' car': {}\n", "classes: a name has no spaces at either end (' car')"),
        ("classes:\n  vehicle:\n    thresold: 0.5\n", "classes.vehicle.thresold: unknown key (expected one of prompts, native, threshold)"),
        ("clases:\n  vehicle: {}\n", "clases: unknown key"),
        ("classes: {}\n", "classes: {} should be non-empty"),
        ("classes:\n  vehicle: {native: car}\n", "classes.vehicle.native: 'car' is not of type 'array'"),
        ("classes:\n  a: {native: [car]}\n  b: {native: [Car]}\n", "classes.b.native: 'Car' already maps onto class 'a'"),
        ("classes:\n  a: {native: [car]}\nexclude: [car]\n", "exclude: 'car' also maps onto class 'a'"),
        ("classes:\n  a: {}\nunmapped: maybe\n", "unmapped: 'maybe' is not one of ['keep', 'drop']"),
        ("classes:\n  vehicle: [car\n", "YAML syntax"),
        ("", "an ontology is a mapping with classes:"),
        ("- car\n- bus\n", "not a list"),
    ],
)
def test_a_bad_file_is_one_line_naming_the_file_and_the_key(tmp_path, text, needle):
    path = write(tmp_path / "ontology.yaml", text)
    with pytest.raises(OntologyError) as caught:
        load_ontology(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert needle in message, message


def test_a_missing_file_and_both_ontology_and_vocabulary_are_refused(tmp_path):
    with pytest.raises(OntologyError, match=r"nowhere\.yaml: not found"):
        config_ontology(load_config(ontology=str(tmp_path / "nowhere.yaml")))
    path = write(tmp_path / "ontology.yaml", {"classes": {"vehicle": None}})
    with pytest.raises(OntologyError, match="set either ontology or detect.vocabulary, not both"):
        config_ontology(load_config(ontology=str(path), detect={"vocabulary": ["car"]}))


def test_the_workflow_refuses_a_bad_ontology_before_any_job(tmp_path, tiny_images):
    workdir = tmp_path / "run"
    write_config(workdir, images=str(tiny_images), ontology="config/ontology.yaml")
    write(workdir / "config" / "ontology.yaml", "classes:\n  pet:\n    threshold: 2\n")
    proc = snakemake(workdir, "-n", check=False)
    assert proc.returncode != 0
    assert "config/ontology.yaml: classes.pet.threshold: 2 is greater than the maximum of 1" in proc.stdout + proc.stderr
    assert not (workdir / "cache").exists()


# ------------------------------------------------------------- what each stage receives


def test_a_closed_set_detector_receives_nothing_of_the_ontology(tmp_path):
    first = write(tmp_path / "a.yaml", {"classes": {"vehicle": {"native": ["car"]}}})
    second = write(tmp_path / "b.yaml", {"classes": {"car": {"threshold": 0.5}, "pet": {"native": ["cat"]}}, "exclude": ["tv"]})
    configs = [load_config(), load_config(ontology=str(first)), load_config(ontology=str(second)), load_config(detect={"vocabulary": ["automobile"]})]
    options = [stage_params(c, "detect") for c in configs]
    assert all(o == options[0] for o in options)  # nanodet re-runs for none of these
    assert "vocabulary" not in options[0]["options"] and "prompts" not in options[0]["options"]
    regions = [stage_params(c, "regions")["options"] for c in configs]
    assert len({json.dumps(r, sort_keys=True) for r in regions}) == 4  # the regions stage re-runs for each
    assert regions[0] == {"ontology": None, "vocabulary": None}
    assert regions[3] == {"ontology": None, "vocabulary": {"terms": ["automobile"], "threshold": 0.6}}


def test_an_open_vocabulary_detector_receives_the_prompts_only(tmp_path):
    detect = {"backend": "owlv2", "model": "google/owlv2-base-patch16-ensemble"}
    before = write(tmp_path / "a.yaml", {"classes": {"pet": {"prompts": ["cat", "dog"]}, "sign": None}})
    renamed = write(tmp_path / "b.yaml", {"classes": {"animal": {"prompts": ["cat", "dog"], "threshold": 0.3}, "sign": None}, "exclude": ["x"]})
    reprompted = write(tmp_path / "c.yaml", {"classes": {"pet": {"prompts": ["cat", "dog", "hamster"]}, "sign": None}})
    options = [detector_options(load_config(ontology=str(p), detect=detect)) for p in (before, renamed, reprompted)]
    assert options[0]["prompts"] == ["cat", "dog", "sign"]
    assert options[1] == options[0]  # renamed, a threshold, an exclusion: the detector's options are the same
    assert options[2]["prompts"] == ["cat", "dog", "hamster", "sign"]  # a new prompt: detection re-runs
    # the vocabulary shorthand: its terms are the prompts and the classes
    shorthand = load_config(detect={**detect, "vocabulary": ["cat", "sign"]})
    assert detector_options(shorthand)["prompts"] == ["cat", "sign"]
    assert list(regions_options(shorthand)["ontology"]["classes"]) == ["cat", "sign"]
    assert label_space(shorthand) == ["cat", "sign"]


def test_comments_and_spelled_out_defaults_change_no_param(tmp_path):
    plain = write(tmp_path / "a.yaml", "classes:\n  pet:\n    native: [cat, dog]\n")
    spelled = write(
        tmp_path / "b.yaml",
        "# pets\nclasses:\n  pet:   # one class\n    native: [cat, dog]\n    prompts: [pet]\n    threshold: 0.0\nexclude: []\nunmapped: keep\nthreshold: 0.0\n",
    )
    assert regions_options(load_config(ontology=str(plain))) == regions_options(load_config(ontology=str(spelled)))


# ------------------------------------------------------------------------ ontology suggest


def test_suggest_maps_native_classes_onto_terms_and_prints_a_valid_file(tmp_path):
    proc = shardlens_cli("ontology", "suggest", "--vocabulary", "automobile", "--vocabulary", "person", "--vocabulary", "invoice", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = yaml.safe_load(proc.stdout)
    onto = validate_ontology(data, "suggested")
    assert list(data["classes"]) == ["automobile", "person", "invoice"]
    assert "car" in data["classes"]["automobile"]["native"]  # by MiniLM similarity, as detect.vocabulary does
    assert onto.target("person") == ("person", None) and onto.target("kite") == ("kite", None)
    assert "no detector class is close" in proc.stdout  # invoice
    assert "# similarity" in proc.stdout
    # the same mapping the vocabulary shorthand applies
    from shardlens.models.text_embedder import make_text_embedder
    from shardlens.models.vocabulary import build_vocabulary_map
    from shardlens.ontology import native_classes
    from shardlens.options import EmbedOptions

    classes = native_classes({"backend": "nanodet"})
    mapping = build_vocabulary_map(
        classes, ["automobile", "person", "invoice"], make_text_embedder(EmbedOptions.from_values({"backend": "onnx"}), threads=1).encode, 0.6
    ).mapping
    assert sorted(data["classes"]["automobile"]["native"]) == sorted(c for c, t in mapping.items() if t == "automobile")


def test_suggest_reads_the_config_and_refuses_without_terms(tmp_path):
    config = write_config(tmp_path, detect={"backend": "owlv2", "model": "some/model", "vocabulary": ["cat", "traffic sign"]})
    proc = shardlens_cli("ontology", "suggest", "--config", str(config), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load(proc.stdout)["classes"] == {"cat": {}, "traffic sign": {}}  # each term a class prompted by itself
    (tmp_path / "config" / "config.yaml").unlink()
    one_line_error(shardlens_cli("ontology", "suggest", cwd=tmp_path), "no terms", "--vocabulary")


def test_a_command_given_a_config_with_a_bad_ontology_says_so_in_one_line(tmp_path):
    config = write_config(tmp_path, ontology="config/ontology.yaml")
    write(tmp_path / "config" / "ontology.yaml", "classes:\n  pet: {native: [cat]}\nexclude: [cat]\n")
    proc = shardlens_cli("export", "results/annotations.sqlite", "results", "--config", str(config), cwd=tmp_path)
    one_line_error(proc, "config/ontology.yaml: exclude: 'cat' also maps onto class 'pet'")
    assert not (tmp_path / "results").exists()


def test_suggest_output_is_what_the_function_returns():
    text = suggest_ontology(load_config(), ["vehicle"], embed=None, threshold=0.99)
    data = yaml.safe_load(text)
    assert data["classes"] == {"vehicle": {}} and data["unmapped"] == "keep"  # nothing that close


# ------------------------------------------------------------------------- the workflow


@pytest.mark.slow
def test_editing_the_ontology_reruns_no_detector(tmp_path, tiny_images):
    """A real run with an ontology, then a rename with a merge, a threshold and an exclusion:
    `snakemake -n` plans no detect job, and the catalog shows the new labels."""
    workdir = tmp_path / "run"
    write_config(workdir, images=str(tiny_images), shards={"count": 2}, ontology="config/ontology.yaml")
    onto = workdir / "config" / "ontology.yaml"
    write(onto, {"classes": {"feline": {"native": ["cat"]}}, "unmapped": "keep"})
    snakemake(workdir, "--cores", "2")
    n = len(list((workdir / "cache" / "shards").glob("*.tsv")))
    db = workdir / "results" / "annotations.sqlite"

    def catalog(query: str) -> list[tuple]:
        conn = sqlite3.connect(db)
        try:
            return conn.execute(query).fetchall()
        finally:
            conn.close()

    native = [json.loads(line) for path in sorted((workdir / "cache" / "detect").glob("*.jsonl")) for line in path.read_text().splitlines()]
    assert {r["detector_label"] for r in native} >= {"cat"} and {r["caption"] for r in native} >= {"cat"}  # the detector's names
    captions = {c for (c,) in catalog("SELECT caption FROM regions")}
    assert "feline" in captions and "cat" not in captions
    assert ("feline",) in catalog("SELECT label FROM region_labels") and ("cat",) not in catalog("SELECT label FROM region_labels")
    assert ("feline",) in catalog("SELECT machine_label FROM item_annotations WHERE item = 'region'")
    regions_before = catalog("SELECT image_id, region_id FROM regions ORDER BY 1, 2")
    detect_mtimes = {p.name: p.stat().st_mtime_ns for p in (workdir / "cache" / "detect").glob("*.jsonl")}
    manifest = json.loads((workdir / "cache" / "manifest.json").read_text())
    assert manifest["params"]["regions"]["options"]["ontology"]["classes"]["feline"]["native"] == ["cat"]

    # a comment changes nothing
    onto.write_text("# my pets\n" + onto.read_text())
    assert planned_jobs(workdir) == {}

    # a rename and a merge, a threshold, an exclusion: regions and what reads them, no detector
    others = sorted({r["detector_label"] for r in native} - {"cat", "dog"})
    write(onto, {"classes": {"animal": {"native": ["cat", "dog"], "threshold": 0.05}}, "exclude": others, "unmapped": "drop"})
    assert planned_jobs(workdir) == {
        "regions": n,
        "embed": n,
        "shard_jobs": n,
        "cluster": 1,
        "manifest": 1,
        "catalog": 1,
        "export": 1,
        "ingest_report": 1,
        "report_figures": 1,
        "all": 1,
    }
    snakemake(workdir, "--cores", "2")
    assert {p.name: p.stat().st_mtime_ns for p in (workdir / "cache" / "detect").glob("*.jsonl")} == detect_mtimes
    assert {c for (c,) in catalog("SELECT caption FROM regions")} == {"animal"}
    cat_regions = {(r["image_id"], r["region_id"]) for r in native if r["detector_label"] in ("cat", "dog")}
    assert set(catalog("SELECT image_id, region_id FROM regions")) == cat_regions <= set(regions_before)  # ids kept
    manifest = json.loads((workdir / "cache" / "manifest.json").read_text())
    assert manifest["params"]["regions"]["options"]["ontology"]["exclude"] == others
    coco = json.loads((workdir / "results" / "annotations.coco.json").read_text())
    assert coco["categories"][0]["name"] == "animal"  # the exports' categories start with the ontology's classes
    assert planned_jobs(workdir) == {}
