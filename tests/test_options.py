"""One source per default (issue #20, item 1): each stage's typed options take their defaults from
config/schema.yaml, refuse unknown keys, and hold exactly the values the rules' params record;
no stage or engine signature declares a default of its own."""

from __future__ import annotations

import dataclasses
import importlib
import inspect

import pytest

from shardlens.config import ConfigError, load_config, schema_default
from shardlens.options import (
    ClassifierOptions,
    DetectOptions,
    EmbedOptions,
    GateOptions,
    IngestOptions,
    LanguageOptions,
    Limits,
    OCROptions,
    RegionsOptions,
    StageOptions,
)
from shardlens.stages import SHARD_STAGES
from shardlens.stages.params import STAGE_OPTIONS, stage_options, stage_params

OPTIONS = [Limits, GateOptions, OCROptions, LanguageOptions, DetectOptions, ClassifierOptions, EmbedOptions]


def _schema_keys(section: tuple[str, ...]) -> list[str]:
    from shardlens.config import _schema

    spec = _schema()
    for key in section:
        spec = spec["properties"][key]
    return list(spec["properties"])


@pytest.mark.parametrize("cls", OPTIONS, ids=lambda c: c.__name__)
def test_fields_are_the_schema_keys_and_defaults_the_schema_defaults(cls):
    keys = [key for key in _schema_keys(cls.SECTION) if key not in cls.OTHER_STAGE]
    assert [f.name for f in dataclasses.fields(cls)] == keys + sorted(cls.DERIVED)
    assert all(f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING for f in dataclasses.fields(cls))
    defaults = load_config()  # every default config/schema.yaml gives
    for key in cls.SECTION:
        defaults = defaults[key]
    assert cls.from_values().to_dict() == {key: value for key, value in defaults.items() if key not in cls.OTHER_STAGE}


def test_given_values_win_and_the_object_is_frozen():
    options = OCROptions.from_values({"use_cls": False, "language": {"low_accuracy": True}})
    assert options.use_cls is False and options.language.low_accuracy is True
    assert options.text_score == schema_default("ocr", "text_score")
    assert options.language.languages == tuple(schema_default("ocr", "language", "languages"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.use_cls = True  # type: ignore[misc]
    assert OCROptions.from_values(options.to_dict()) == options


@pytest.mark.parametrize(
    ("cls", "values", "message"),
    [
        (GateOptions, {"max_sid": 512}, "gate.max_sid: unknown key (known: max_side, "),
        (OCROptions, {"language": {"min_letter": 3}}, "ocr.language.min_letter: unknown key (known: languages, "),
        (LanguageOptions, {"lowaccuracy": True}, "ocr.language.lowaccuracy: unknown key"),
        (EmbedOptions, {"batch_size": 8, "batchsize": 8}, "embed.batchsize: unknown key"),
        (GateOptions, {"max_side": 10}, "gate.max_side: 10 is less than the minimum of 64"),
        (OCROptions, {"engine": "tesseract"}, "ocr.engine: 'tesseract' is not one of"),
        (DetectOptions, {"classifier": {"backend": "clip", "modle": "m"}}, "detect.classifier.modle: unknown key"),
        (DetectOptions, {"vocabulary": ["cat"]}, "detect.vocabulary: not an option of this stage"),
        (Limits, {"max_byte": 10}, "limits.max_byte: unknown key (known: max_bytes, "),
        (Limits, {"decode_timeout_s": 0}, "limits.decode_timeout_s: 0 is less than or equal to the minimum of 0"),
        (IngestOptions, {"limits": {"max_pixel": 10}}, "limits.max_pixel: unknown key"),
        (IngestOptions, {"allow_outside": True}, "allow_outside: unknown key (known: limits, allow_outside_root)"),
        (IngestOptions, {"allow_outside_root": "yes"}, "listing.allow_outside_root: 'yes' is not of type 'boolean'"),
        (RegionsOptions, {"ontology": None, "vocabulary": None, "vocab": None}, "vocab: unknown key (known: ontology, vocabulary)"),
        (RegionsOptions, {"ontology": None}, "regions: missing key vocabulary"),
        (RegionsOptions, {"ontology": None, "vocabulary": {"terms": ["cat"]}}, "regions.vocabulary: missing key threshold"),
    ],
)
def test_unknown_keys_and_bad_values_are_one_line_errors(cls, values, message):
    with pytest.raises(ConfigError) as caught:
        cls.from_values(values)
    assert str(caught.value).startswith(message), str(caught.value)
    assert "\n" not in str(caught.value)


def test_complete_values_are_taken_without_reading_the_schema(monkeypatch):
    """A job gets every key in its params: it builds its options without loading the schema
    (yaml and the schema would add about 0.05 s to every job); a partial mapping is filled in."""
    import shardlens.options

    complete = stage_params(load_config(), "ocr")["options"]

    def refuse(config):
        raise AssertionError("the schema was read")

    monkeypatch.setattr(shardlens.options, "validate_config", refuse)
    assert OCROptions.from_values(complete).to_dict() == complete
    with pytest.raises(AssertionError, match="the schema was read"):
        OCROptions.from_values({key: value for key, value in complete.items() if key != "margin"})


def test_a_renamed_key_reaching_a_stage_is_an_error_not_dropped(tmp_path):
    """What the rule passes goes through the same check: a key the gate does not know (a config
    written for another version) stops the job with its name, before any image is read."""
    from shardlens.images.decoding import Limits
    from shardlens.stages import gate

    with pytest.raises(ConfigError, match=r"^gate\.box_thresh: unknown key"):
        gate.run_shard(tmp_path / "missing.jsonl", tmp_path, tmp_path / "out.jsonl", "0000", threads=1, limits=Limits.from_values(), box_thresh=0.5)
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize(
    "config",
    [
        {},
        {
            "gate": {"max_side": 512, "score_threshold": 0.7},
            "ocr": {"engine": "paddleocr", "min_side": 0, "language": {"languages": ["en", "de"], "low_accuracy": True}},
            "embed": {"backend": "sentence-transformers", "batch_size": 16},
        },
        {"detect": {"vocabulary": ["cat", "sign"], "top_k": 2, "classifier": {"backend": "clip", "model": "some/clip"}}},
        {"detect": {"backend": "owlv2", "model": "some/owlv2", "vocabulary": ["cat", "sign"], "flip": True}},
    ],
    ids=["defaults", "changed", "classifier", "open-vocabulary"],
)
def test_options_hold_exactly_the_values_the_params_record(config):
    """The stage scripts build the options from the rule's params: the same values, so that the
    params Snakemake and the manifest record (and a cached shard's re-run) are unchanged."""
    config = load_config(**config)
    for stage, cls in STAGE_OPTIONS.items():
        options = stage_options(config, stage)
        assert isinstance(options, cls)
        assert options.to_dict() == stage_params(config, stage)["options"]
        assert cls.from_values(options.to_dict()) == options
    assert stage_options(config, "detect").prompts == (("cat", "sign") if config["detect"]["vocabulary"] else None)


def test_limits_and_ingest_options_are_what_the_ingest_rule_passes():
    """scripts/ingest.py builds ``Limits(**params.limits)`` (the whole validated section) and
    passes ``allow_outside_root``; the options are the config's, and ``decode_timeout_s: null``
    (decode in the job process) stays None."""
    config = load_config()
    params = stage_params(config, "ingest")
    limits = Limits(**params["limits"])
    assert limits == Limits.from_values() == Limits.from_values(params["limits"])
    assert limits.to_dict() == params["limits"]
    options = IngestOptions(limits=limits, allow_outside_root=params["allow_outside_root"])
    assert options == IngestOptions.from_values() == IngestOptions.from_values(options.to_dict())
    assert options.allow_outside_root is schema_default("listing", "allow_outside_root")
    unguarded = load_config(limits={"decode_timeout_s": None})["limits"]
    assert Limits(**unguarded).decode_timeout_s is None and Limits.from_values({"decode_timeout_s": None}).decode_timeout_s is None
    assert IngestOptions.from_values({"limits": {"max_pixels": 5}, "allow_outside_root": True}) == IngestOptions(
        limits=Limits(**{**params["limits"], "max_pixels": 5}), allow_outside_root=True
    )


def test_regions_options_are_what_regions_options_derives(tmp_path):
    from shardlens.ontology import regions_options

    ontology = tmp_path / "ontology.yaml"
    ontology.write_text("classes:\n  animal: {native: [cat, dog]}\n")
    for config in (load_config(), load_config(detect={"vocabulary": ["cat", "sign"]}), load_config(ontology=str(ontology))):
        values = regions_options(config)
        options = RegionsOptions.from_values(values)
        assert options.to_dict() == values and RegionsOptions.from_values(options.to_dict()) == options
    assert options.ontology == values["ontology"] and options.vocabulary is None
    mapped = RegionsOptions.from_values(regions_options(load_config(detect={"vocabulary": ["cat", "sign"]})))
    assert mapped.ontology is None and mapped.vocabulary.terms == ("cat", "sign")
    assert mapped.vocabulary.threshold == schema_default("detect", "vocabulary_threshold")


# --- no defaults of their own -------------------------------------------------------------


def _stage_entry_points():
    for stage in SHARD_STAGES:
        module = importlib.import_module(f"shardlens.stages.{stage}")
        for name in ("run_shard", "run"):
            if hasattr(module, name):
                yield f"stages.{stage}.{name}", getattr(module, name)


def _engine_entry_points():
    from shardlens.models import ocr_engines
    from shardlens.models.crop_classifier import HFCropClassifier
    from shardlens.models.detectors import make_classifier, make_detector
    from shardlens.models.language import LanguageGuesser
    from shardlens.models.nanodet import NanoDetDetector
    from shardlens.models.open_vocab_detector import HFOpenVocabDetector
    from shardlens.models.paddle_bridge import PaddleBridgeEngine
    from shardlens.models.paddle_ocr import PaddleOCREngine
    from shardlens.models.rapid_ocr import RapidOCREngine
    from shardlens.models.text_embedder import OnnxTextEmbedder, SentenceTransformersEmbedder, make_text_embedder
    from shardlens.models.text_gate import TextGate
    from shardlens.stages.ingest import IsolatedIngest, ingest_file

    yield "TextGate", TextGate
    yield "LanguageGuesser", LanguageGuesser
    yield "RapidOCREngine", RapidOCREngine
    yield "PaddleOCREngine", PaddleOCREngine
    yield "PaddleBridgeEngine", PaddleBridgeEngine
    yield "make_ocr_engine", ocr_engines.make_ocr_engine
    yield "NanoDetDetector", NanoDetDetector
    yield "make_detector", make_detector
    yield "make_classifier", make_classifier
    yield "HFOpenVocabDetector", HFOpenVocabDetector
    yield "HFCropClassifier", HFCropClassifier
    yield "make_text_embedder", make_text_embedder
    yield "OnnxTextEmbedder", OnnxTextEmbedder
    yield "SentenceTransformersEmbedder", SentenceTransformersEmbedder
    for name, factory in ocr_engines.OCR_ENGINES.items():
        yield f"OCR_ENGINES[{name!r}]", factory
    # what ingest's run reads each file with, in the job process or in the worker
    yield "stages.ingest.ingest_file", ingest_file
    yield "stages.ingest.IsolatedIngest", IsolatedIngest


# Parameters that are no option of the config: how the bridge runs its worker process, and where
# the embedders and hub models find their files and device (keyword-only; None: the installed
# model, the best device; local_files_only: no hub download), and the callback the ingest worker
# hears of a read file by (keyword-only; None in the job process).
NOT_OPTIONS = {
    *(("PaddleBridgeEngine", name) for name in ("venv", "python_flags", "startup_timeout", "call_timeout")),
    ("OnnxTextEmbedder", "model_dir"),
    ("OnnxTextEmbedder", "onnx_path"),
    ("SentenceTransformersEmbedder", "model_dir"),
    ("SentenceTransformersEmbedder", "device"),
    *((engine, name) for engine in ("HFOpenVocabDetector", "HFCropClassifier") for name in ("device", "local_files_only")),
    ("stages.ingest.ingest_file", "on_read"),
}


def test_the_entry_points_are_found():
    stages = dict(_stage_entry_points())
    assert {f"stages.{stage}.run_shard" for stage in SHARD_STAGES} <= set(stages)
    assert {f"stages.{stage}.run" for stage in ("ingest", "gate", "ocr", "detect", "regions", "embed")} <= set(stages)
    assert len(dict(_engine_entry_points())) == 18


def test_no_stage_or_engine_signature_declares_a_default():
    found = {}
    for where, entry in [*_stage_entry_points(), *_engine_entry_points()]:
        own = [
            f"{name}={param.default!r}"
            for name, param in inspect.signature(entry).parameters.items()
            if param.default is not inspect.Parameter.empty and (where, name) not in NOT_OPTIONS
        ]
        if own:
            found[where] = own
    assert found == {}, "defaults belong in config/schema.yaml (shardlens/options.py reads them)"


def test_the_check_sees_a_default():
    def run_shard(ingest, options, threads=1): ...

    assert [n for n, p in inspect.signature(run_shard).parameters.items() if p.default is not inspect.Parameter.empty] == ["threads"]


def test_options_classes_are_stage_options():
    assert all(issubclass(cls, StageOptions) for cls in [*OPTIONS, IngestOptions, RegionsOptions])
