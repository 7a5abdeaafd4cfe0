"""The typed options a stage and its engines run with: one frozen dataclass per stage.

Fields and their types are declared here; their defaults are not. :meth:`StageOptions.from_values`
refuses a key the stage does not know, naming it, and fills a missing key with the default
config/schema.yaml writes for it (the one source of every default), validating the values against
that schema (a value out of range is an error naming its key). The stage and its engines take this
object and declare no defaults of their own (``tests/test_options.py``).

The rules pass the config values of :func:`shardlens.stages.params.stage_params` (what Snakemake
and the manifest record; unchanged, so no cached shard re-runs), and each stage's ``run_shard``
takes them as its script passes them and builds the options object; the stage itself is its
``run``. The scripts' calls stay as they are: Snakemake re-runs every job of a script rule whose
script file is newer than the job's outputs, so editing a stage script re-runs that stage on every
cached shard. Ingest takes ``limits`` and ``listing.allow_outside_root`` as they are
(:class:`IngestOptions`, no one section of the config); regions takes what
:func:`shardlens.ontology.regions_options` derives from the ontology file (:class:`RegionsOptions`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Self

from .config import ConfigError, validate_config


@dataclass(frozen=True, slots=True)
class StageOptions:
    """Base of the options classes: ``SECTION`` is the path of config keys they come from, and
    ``NESTED`` maps a field holding an object of the schema to its own options class."""

    SECTION: ClassVar[tuple[str, ...]] = ()
    NESTED: ClassVar[dict[str, type[StageOptions]]] = {}
    # keys of the section that another stage takes (refused here), and fields that are no key of
    # the schema but derived from the config by shardlens.stages.params (None when absent)
    OTHER_STAGE: ClassVar[frozenset[str]] = frozenset()
    DERIVED: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def from_values(cls, values: Mapping[str, Any] | None = None) -> Self:
        """The options of ``values`` (one config section, e.g. ``config["gate"]``). An unknown key
        raises :class:`~shardlens.config.ConfigError`, one line naming it. A mapping with every
        key is taken as validated (the rules' params come from the config the workflow
        validated), so a job reads no schema; a partial one has its missing keys filled in from
        config/schema.yaml and is validated against it (a bad value: one line naming the key)."""
        section = copy.deepcopy(dict(values or {}))
        where = ".".join(cls.SECTION)
        for key in sorted(cls.OTHER_STAGE & set(section)):
            raise ConfigError(f"{where}.{key}: not an option of this stage (another stage takes it)")
        cls._check_keys(section)
        derived = {key: section.pop(key) for key in cls.DERIVED if key in section}
        if not cls._complete(section):
            config: dict[str, Any] = section
            for key in reversed(cls.SECTION):
                config = {key: config}
            validate_config(config)
        return cls._of({**section, **derived})

    @classmethod
    def _check_keys(cls, values: Mapping[str, Any]) -> None:
        known = [field.name for field in fields(cls)]
        for key in sorted(values):
            if key not in known:
                raise ConfigError(f"{'.'.join((*cls.SECTION, key))}: unknown key (known: {', '.join(known)})")
            if key in cls.NESTED and isinstance(values[key], Mapping):
                cls.NESTED[key]._check_keys(values[key])

    @classmethod
    def _complete(cls, values: Mapping[str, Any]) -> bool:
        for field in fields(cls):
            if field.name in cls.DERIVED:
                continue
            if field.name not in values:
                return False
            if field.name in cls.NESTED and not (isinstance(values[field.name], Mapping) and cls.NESTED[field.name]._complete(values[field.name])):
                return False
        return True

    @classmethod
    def _of(cls, filled: dict[str, Any]) -> Self:
        kwargs = {}
        for field in fields(cls):
            value = filled.get(field.name) if field.name in cls.DERIVED else filled[field.name]
            if field.name in cls.NESTED and value is not None:
                value = cls.NESTED[field.name]._of(value)
            elif isinstance(value, list):
                value = tuple(value)
            kwargs[field.name] = value
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """The values as config writes them (lists, nested dicts; a derived value only when set):
        ``from_values(o.to_dict()) == o``."""
        values = _plain(asdict(self))
        return {key: value for key, value in values.items() if not (key in self.DERIVED and value is None)}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


@dataclass(frozen=True, slots=True)
class Limits(StageOptions):
    """``limits``: safety limits for decoding untrusted files (shardlens/images/decoding.py, which
    every stage reading images takes; ``from shardlens.images import Limits``).

    ``decode_timeout_s``: ingest reads and decodes each file in a worker process and gives up on
    a file that takes longer (error ``decode_timeout``); ``None`` decodes in-process, unguarded.
    """

    SECTION: ClassVar[tuple[str, ...]] = ("limits",)

    max_bytes: int
    max_pixels: int
    decode_timeout_s: float | None


@dataclass(frozen=True, slots=True)
class IngestOptions(StageOptions):
    """The ingest stage's: ``limits`` and ``listing.allow_outside_root``, the two params its rule
    passes (:data:`shardlens.stages.params.STAGE_PARAMS`); no one section of the config holds
    both, so :meth:`from_values` fills and validates each at its own place."""

    NESTED: ClassVar[dict[str, type[StageOptions]]] = {"limits": Limits}

    limits: Limits
    allow_outside_root: bool

    @classmethod
    def from_values(cls, values: Mapping[str, Any] | None = None) -> Self:
        """The options of ``{"limits": config["limits"], "allow_outside_root":
        config["listing"]["allow_outside_root"]}``, as :meth:`StageOptions.from_values` (an
        unknown key is an error; a partial mapping is filled in from config/schema.yaml and
        validated there, a bad value naming its config key)."""
        values = copy.deepcopy(dict(values or {}))
        cls._check_keys(values)
        if not cls._complete(values):
            listing = {"allow_outside_root": values["allow_outside_root"]} if "allow_outside_root" in values else {}
            config = validate_config({"limits": values.get("limits", {}), "listing": listing})
            values = {"limits": config["limits"], "allow_outside_root": config["listing"]["allow_outside_root"]}
        return cls._of(values)


@dataclass(frozen=True, slots=True)
class VocabularyMapOptions(StageOptions):
    """The regions stage's ``vocabulary``: the terms of ``detect.vocabulary`` a closed-set
    detector's classes map onto by embedding, and the similarity a class needs
    (``detect.vocabulary_threshold``)."""

    terms: tuple[str, ...]
    threshold: float


@dataclass(frozen=True, slots=True)
class RegionsOptions(StageOptions):
    """The regions stage's, as :func:`shardlens.ontology.regions_options` derives them from the
    config and the ontology file (validated there): ``ontology`` (the file's content, normalised by
    :meth:`shardlens.ontology.Ontology.to_dict`) or ``vocabulary`` (the ``detect.vocabulary``
    shorthand), or neither (the detector's names are kept). No section of the config holds them:
    :meth:`from_values` takes both keys, refusing an unknown or a missing one."""

    NESTED: ClassVar[dict[str, type[StageOptions]]] = {"vocabulary": VocabularyMapOptions}

    ontology: dict[str, Any] | None
    vocabulary: VocabularyMapOptions | None

    @classmethod
    def from_values(cls, values: Mapping[str, Any] | None = None) -> Self:
        """The options of what :func:`shardlens.ontology.regions_options` returns; an unknown or
        missing key raises :class:`~shardlens.config.ConfigError`, one line naming it."""
        values = copy.deepcopy(dict(values or {}))
        cls._check_keys(values)
        vocabulary = values.get("vocabulary")
        for where, given, spec in (("regions", values, cls), ("regions.vocabulary", vocabulary, VocabularyMapOptions)):
            missing = [field.name for field in fields(spec) if isinstance(given, Mapping) and field.name not in given]
            if missing:
                raise ConfigError(f"{where}: missing key {missing[0]} (shardlens.ontology.regions_options gives every key)")
        return cls._of(values)


@dataclass(frozen=True, slots=True)
class GateOptions(StageOptions):
    """``gate``: the text gate (shardlens/models/text_gate.py) and the stage's decision."""

    SECTION: ClassVar[tuple[str, ...]] = ("gate",)

    max_side: int
    pixel_threshold: float
    box_threshold: float
    min_region_pixels: int
    max_thickness: float
    min_aspect: float
    upscale: float
    margin: float
    score_threshold: float
    batch_size: int


@dataclass(frozen=True, slots=True)
class LanguageOptions(StageOptions):
    """``ocr.language``: the per-line language guess (shardlens/models/language.py)."""

    SECTION: ClassVar[tuple[str, ...]] = ("ocr", "language")

    languages: tuple[str, ...]
    min_confidence: float
    min_letters: int
    low_accuracy: bool


@dataclass(frozen=True, slots=True)
class OCROptions(StageOptions):
    """``ocr``: the OCR engine (shardlens/models/ocr_engines.py) and the language guess."""

    SECTION: ClassVar[tuple[str, ...]] = ("ocr",)
    NESTED: ClassVar[dict[str, type[StageOptions]]] = {"language": LanguageOptions}

    engine: str
    text_score: float
    box_thresh: float
    use_cls: bool
    max_side: int
    min_side: int
    margin: float
    language: LanguageOptions


@dataclass(frozen=True, slots=True)
class EmbedOptions(StageOptions):
    """``embed``: the sentence embedder (shardlens/models/text_embedder.py)."""

    SECTION: ClassVar[tuple[str, ...]] = ("embed",)

    backend: str
    batch_size: int
    min_ocr_chars: int


@dataclass(frozen=True, slots=True)
class ClassifierOptions(StageOptions):
    """``detect.classifier``: the optional crop classifier."""

    SECTION: ClassVar[tuple[str, ...]] = ("detect", "classifier")

    backend: str | None
    model: str | None
    prompt_template: str


@dataclass(frozen=True, slots=True)
class DetectOptions(StageOptions):
    """``detect`` without the vocabulary (the regions stage's), with the prompts when the detector
    or the crop classifier takes text (:func:`shardlens.ontology.detector_options`)."""

    SECTION: ClassVar[tuple[str, ...]] = ("detect",)
    NESTED: ClassVar[dict[str, type[StageOptions]]] = {"classifier": ClassifierOptions}
    OTHER_STAGE: ClassVar[frozenset[str]] = frozenset({"vocabulary", "vocabulary_threshold"})
    DERIVED: ClassVar[frozenset[str]] = frozenset({"prompts"})

    backend: str
    model: str | None
    score_threshold: float
    iou_threshold: float
    resize: str
    flip: bool
    max_detections: int
    top_k: int
    batch_size: int
    decode_max_side: int
    allow_changed_weights: bool
    classifier: ClassifierOptions
    prompts: tuple[str, ...] | None
