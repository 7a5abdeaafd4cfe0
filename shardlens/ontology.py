"""The ontology: the classes regions are labelled with, and how the detector's own names map onto them.

The detect stage records what the detector said (its native classes, or the prompts an
open-vocabulary detector matched); the per-shard ``regions`` stage applies the ontology to those
records (:func:`apply_ontology`), so a rename, a merge, a threshold or an exclusion re-runs no
detector. Only the prompts (:func:`detector_prompts`) reach detection, for the backends that take
text. docs/adr/0009-ontology.md says why; config/README.md documents the file.

The ontology comes from the workflow config: the file named by ``ontology`` (validated against
config/ontology.schema.yaml, :func:`load_ontology`), or, as a shorthand, ``detect.vocabulary``:
for an open-vocabulary backend its terms are the prompts and the classes; for a closed-set one
each native class maps onto its closest term by MiniLM embedding (:func:`vocabulary_ontology`),
which ``shardlens ontology suggest`` also prints as a file to edit (:func:`suggest_ontology`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

from .models.detector_backends import OPEN_VOCABULARY

ONTOLOGY_SCHEMA = Path(__file__).resolve().parent / "schemas" / "ontology.schema.yaml"  # config/ links to it
UNMAPPED = ("keep", "drop")
# why apply_ontology dropped a region (the regions job's summary counts each)
DROP_REASONS = ("excluded", "unmapped", "below_threshold")


class OntologyError(ValueError):
    """A bad ontology file or setting: one line naming the file and the key."""


@dataclass(frozen=True)
class OntologyClass:
    name: str
    prompts: tuple[str, ...]  # texts an open-vocabulary detector or crop classifier is given
    native: tuple[str, ...]  # a closed-set detector's classes mapped onto this class
    threshold: float


@dataclass(frozen=True)
class Ontology:
    """Classes, in order, with the detector names mapping onto each; names compare case-insensitively."""

    classes: tuple[OntologyClass, ...]
    exclude: tuple[str, ...] = ()
    unmapped: str = "keep"
    threshold: float = 0.0
    source: str = "ontology"  # where it came from, for messages
    lookup: dict[str, str] = field(init=False, repr=False, compare=False)  # casefolded name -> class
    excluded: frozenset[str] = field(init=False, repr=False, compare=False)
    thresholds: dict[str, float] = field(init=False, repr=False, compare=False)  # class -> threshold

    def __post_init__(self) -> None:
        lookup: dict[str, str] = {}
        where: dict[str, str] = {}
        for cls in self.classes:
            for key, names in (("", (cls.name,)), ("prompts", cls.prompts), ("native", cls.native)):
                for name in names:
                    folded = name.casefold()
                    place = f"classes.{cls.name}" + (f".{key}" if key else "")
                    if folded in lookup and lookup[folded] != cls.name:
                        raise OntologyError(
                            f"{self.source}: {place}: {name!r} already maps onto class {lookup[folded]!r} ({where[folded]}); a name maps onto one class"
                        )
                    lookup.setdefault(folded, cls.name)
                    where.setdefault(folded, place)
        for name in self.exclude:
            if name.casefold() in lookup:
                raise OntologyError(
                    f"{self.source}: exclude: {name!r} also maps onto class {lookup[name.casefold()]!r} ({where[name.casefold()]}); remove it from one"
                )
        if self.unmapped not in UNMAPPED:
            raise OntologyError(f"{self.source}: unmapped: {self.unmapped!r} is not one of {', '.join(UNMAPPED)}")
        object.__setattr__(self, "lookup", lookup)
        object.__setattr__(self, "excluded", frozenset(name.casefold() for name in self.exclude))
        object.__setattr__(self, "thresholds", {cls.name: cls.threshold for cls in self.classes})

    # --- the file's content, normalised (what the regions rule and the manifest hold) ---------

    @classmethod
    def from_dict(cls, data: dict, source: str = "ontology") -> Ontology:
        """From a mapping already valid against the schema (a loaded file, or :meth:`to_dict`)."""
        default = float(data.get("threshold", 0.0))
        classes = []
        for name, spec in (data.get("classes") or {}).items():
            spec = spec or {}
            classes.append(
                OntologyClass(
                    name=name,
                    prompts=tuple(spec.get("prompts") or (name,)),
                    native=tuple(spec.get("native") or ()),
                    threshold=float(spec["threshold"]) if spec.get("threshold") is not None else default,
                )
            )
        return cls(tuple(classes), tuple(data.get("exclude") or ()), data.get("unmapped", "keep"), default, source)

    def to_dict(self) -> dict:
        """Every default spelled out: equal ontologies give equal dicts (a comment or a default
        written out changes nothing, so it re-runs nothing)."""
        return {
            "classes": {c.name: {"prompts": list(c.prompts), "native": list(c.native), "threshold": c.threshold} for c in self.classes},
            "exclude": list(self.exclude),
            "unmapped": self.unmapped,
            "threshold": self.threshold,
        }

    # --- what it does ---------------------------------------------------------------------------

    def prompts(self) -> list[str]:
        """The texts an open-vocabulary detector or crop classifier is given, in class order, each
        once (compared case-insensitively, as names are)."""
        seen: set[str] = set()
        out = []
        for prompt in (prompt for cls in self.classes for prompt in cls.prompts):
            if prompt.casefold() not in seen:
                seen.add(prompt.casefold())
                out.append(prompt)
        return out

    def target(self, name: str) -> tuple[str | None, str | None]:
        """(label, None) for a detector name the ontology keeps, (None, reason) for one it drops."""
        folded = name.casefold()
        if folded in self.excluded:
            return None, "excluded"
        if folded in self.lookup:
            return self.lookup[folded], None
        return (name, None) if self.unmapped == "keep" else (None, "unmapped")

    def class_threshold(self, label: str) -> float:
        """The threshold of a class, or of an unmapped name kept (the top-level one)."""
        return self.thresholds.get(label, self.threshold)

    def label_space(self, native_classes: Iterable[str] = ()) -> list[str]:
        """The labels a region can carry: the classes in order, then (``unmapped: keep``) the
        closed-set detector's classes that map onto none and are not excluded."""
        labels = [cls.name for cls in self.classes]
        if self.unmapped == "keep":
            labels += [name for name in native_classes if self.target(name) == (name, None) and name not in labels]
        return labels


def apply_ontology(region: dict, ontology: Ontology | None) -> tuple[dict | None, str | None]:
    """One native detection record -> (its region record, None), or (None, why it is dropped).

    The region is what its first candidate says (the class the detector found it as, or with a
    crop classifier the best-scored label): when that name is excluded, or unmapped under
    ``unmapped: drop``, or its class's score is under the class's threshold, the region is
    dropped. Every candidate's name becomes its class; candidates of one class merge into one
    (the first place, the best score, its source); other candidates that are dropped or under
    their class's threshold are left out. ``region_id`` stays the detector's, so a region keeps
    its id (and its reviews) whatever the ontology drops around it."""
    labels: list[dict] = []
    index: dict[str, int] = {}
    for rank, candidate in enumerate(region["labels"]):
        label, reason = ontology.target(candidate["label"]) if ontology is not None else (candidate["label"], None)
        if label is None:
            if rank == 0:
                return None, reason
            continue
        if label in index:
            kept = labels[index[label]]
            if candidate["score"] > kept["score"]:
                kept["score"], kept["source"] = candidate["score"], candidate["source"]
            continue
        index[label] = len(labels)
        labels.append({"label": label, "score": candidate["score"], "source": candidate["source"]})
    if ontology is not None:
        if labels[0]["score"] < ontology.class_threshold(labels[0]["label"]):
            return None, "below_threshold"
        labels = labels[:1] + [c for c in labels[1:] if c["score"] >= ontology.class_threshold(c["label"])]
    record = {**region, "labels": labels, "caption": labels[0]["label"]}  # the detect record's fields, in its order
    return record, None


# --- loading ----------------------------------------------------------------------------------


@cache
def _schema() -> dict:
    return yaml.safe_load(ONTOLOGY_SCHEMA.read_text())


def _key_path(path: Iterable) -> str:
    return ".".join(str(part) for part in path)


def validate_ontology(data, source: str) -> Ontology:
    """A parsed ontology file -> :class:`Ontology`; :class:`OntologyError` naming ``source`` and
    the key otherwise."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    if not isinstance(data, dict):
        kind = "an empty file" if data is None else f"a {type(data).__name__}"
        raise OntologyError(f"{source}: an ontology is a mapping with classes: (and exclude:, unmapped:, threshold:), not {kind}")
    error = best_match(Draft202012Validator(_schema()).iter_errors(data))
    if error is not None:
        where, message = _key_path(error.absolute_path), error.message
        if error.validator == "pattern" or (error.validator == "propertyNames" and isinstance(error.instance, dict)):
            message = "a name has no spaces at either end" + (f" ({error.instance!r})" if isinstance(error.instance, str) else "")
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = list(error.schema.get("properties", {}))
            unknown = sorted(set(error.instance) - set(known))
            where = _key_path([*error.absolute_path, unknown[0]])
            message = f"unknown key (expected one of {', '.join(known)})"
        raise OntologyError(f"{source}: {where + ': ' if where else ''}{message}")
    return Ontology.from_dict(data, source=source)


def load_ontology(path: str | Path) -> Ontology:
    """Read and validate an ontology file; :class:`OntologyError` (one line: the file, the key,
    the reason) when it is missing, not YAML or not valid."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise OntologyError(f"{path}: not found (the workflow config's ontology key names it)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise OntologyError(f"{path}: cannot be read ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise OntologyError(f"{path}: YAML syntax: {getattr(exc, 'problem', None) or exc}{where}") from None
    return validate_ontology(data, str(path))


# --- from the workflow config -----------------------------------------------------------------


def is_open_vocabulary(detect: dict) -> bool:
    return detect["backend"] in OPEN_VOCABULARY


def config_ontology(config: dict) -> Ontology | None:
    """The ontology the config names (``ontology``), or the one ``detect.vocabulary`` stands for
    when it is explicit (an open-vocabulary backend: each term a class of its own); None when
    regions keep the detector's names (nothing set), or when a closed-set detector's classes map
    onto the vocabulary by embedding, which the regions job works out (:func:`vocabulary_ontology`)."""
    path, vocabulary = config.get("ontology"), list(config["detect"]["vocabulary"])
    if path is not None:
        if vocabulary:
            raise OntologyError(
                f"{path}: set either ontology or detect.vocabulary, not both (the vocabulary is a shorthand for an "
                "ontology; `shardlens ontology suggest` turns it into a file)"
            )
        return load_ontology(path)
    if vocabulary and is_open_vocabulary(config["detect"]):
        return validate_ontology({"classes": dict.fromkeys(vocabulary)}, "detect.vocabulary")
    return None


def detector_prompts(config: dict) -> list[str]:
    """The texts the configured open-vocabulary detector or crop classifier is given."""
    ontology = config_ontology(config)
    return ontology.prompts() if ontology is not None else list(config["detect"]["vocabulary"])


def detector_options(config: dict) -> dict:
    """The detect stage's options: ``detect`` without what only the regions stage uses (the
    vocabulary and its threshold), with the prompts when the detector or the crop classifier
    takes text. A closed-set detector without a classifier thus re-runs for no ontology or
    vocabulary change; an open-vocabulary one re-runs when its prompts change, not otherwise."""
    detect = config["detect"]
    options = {key: value for key, value in detect.items() if key not in ("vocabulary", "vocabulary_threshold")}
    if is_open_vocabulary(detect) or (detect.get("classifier") or {}).get("backend"):
        options["prompts"] = detector_prompts(config)
    return options


def regions_options(config: dict) -> dict:
    """The regions stage's options: the ontology, normalised (a comment or a spelled-out default
    re-runs nothing), or the vocabulary a closed-set detector's classes map onto by embedding."""
    ontology = config_ontology(config)
    vocabulary = list(config["detect"]["vocabulary"])
    embedding_map = None
    if ontology is None and vocabulary:
        embedding_map = {"terms": vocabulary, "threshold": config["detect"]["vocabulary_threshold"]}
    return {"ontology": ontology.to_dict() if ontology is not None else None, "vocabulary": embedding_map}


def uses_vocabulary_embedder(config: dict) -> bool:
    """Whether the regions stage maps classes onto ``detect.vocabulary`` with MiniLM."""
    return config.get("ontology") is None and bool(config["detect"]["vocabulary"]) and not is_open_vocabulary(config["detect"])


def native_classes(detect: dict) -> list[str]:
    """A closed-set detector's classes (none for open-vocabulary detectors: their names are the prompts)."""
    if detect["backend"] == "nanodet":
        from .models.nanodet import COCO_CLASSES

        return list(COCO_CLASSES)
    return []


def label_space(config: dict) -> list[str]:
    """The labels a region can carry before review, in order (the first categories of the
    exports): the ontology's classes (then the native classes kept unmapped), else the
    vocabulary, else a closed-set detector's classes."""
    ontology = config_ontology(config)
    if ontology is not None:
        return ontology.label_space(native_classes(config["detect"]))
    if config["detect"]["vocabulary"]:
        return list(config["detect"]["vocabulary"])
    return native_classes(config["detect"])


# --- the vocabulary shorthand and `shardlens ontology suggest` ----------------------------------


def vocabulary_ontology(names: Iterable[str], terms: list[str], embed: Callable, threshold: float) -> Ontology:
    """The ontology ``detect.vocabulary`` stands for with a closed-set detector: each of
    ``names`` (its classes) maps onto the closest term by MiniLM embedding when the cosine
    similarity reaches ``threshold`` (an exact, case-insensitive match always does); the others
    keep their own names. ``embed(texts) -> (n, d)`` L2-normalised vectors."""
    from .models.vocabulary import build_vocabulary_map

    names = sorted(set(names))
    mapping = build_vocabulary_map(names, terms, embed, threshold).mapping if names else {}
    classes = {term: {"native": [n for n in names if mapping[n] == term and n.casefold() != term.casefold()]} for term in terms}
    return validate_ontology({"classes": classes}, "detect.vocabulary")


def suggest_ontology(config: dict, terms: list[str], embed: Callable | None = None, threshold: float | None = None) -> str:
    """A commented ontology file mapping the configured detector's native classes onto ``terms``
    by MiniLM similarity (an open-vocabulary detector: each term a class prompted by itself)."""
    from .models.vocabulary import build_vocabulary_map

    detect = config["detect"]
    threshold = detect["vocabulary_threshold"] if threshold is None else threshold
    classes = native_classes(detect)
    lines = [
        f"# Suggested by `shardlens ontology suggest` for detect.backend {detect['backend']}: "
        + (
            f"its {len(classes)} classes mapped onto {len(terms)} terms by MiniLM cosine similarity >= {threshold}."
            if classes
            else f"{len(terms)} terms, each a class prompted by itself."
        ),
        "# Similarity is not meaning: check each mapping, then name this file in the config (ontology: FILE).",
        "classes:",
    ]
    similarity: dict[str, float] = {}
    mapping: dict[str, str] = {}
    if classes:
        if embed is None:
            from .models.text_embedder import OnnxTextEmbedder

            embed = OnnxTextEmbedder(threads=1).encode
        vocab = build_vocabulary_map(classes, terms, embed, threshold)
        mapping, similarity = vocab.mapping, vocab.similarity
    for term in terms:
        native = [c for c in classes if mapping.get(c) == term and c.casefold() != term.casefold()]
        exact = any(c.casefold() == term.casefold() for c in classes)
        if native:
            lines.append(f"  {_scalar(term)}:")
            lines.append(f"    native: {_flow(native)}  # similarity {', '.join(f'{similarity[c]:.2f}' for c in native)}")
        else:
            note = ""
            if classes:
                note = "  # the detector's class of this name" if exact else "  # no detector class is close: add native names, or drop it"
            lines.append(f"  {_scalar(term)}: {{}}{note}")
    unmapped = [c for c in classes if c not in mapping or mapping[c] == c]
    unmapped = [c for c in unmapped if not any(c.casefold() == t.casefold() for t in terms)]
    if unmapped:
        lines.append(f"# {len(unmapped)} classes map onto no term and keep their own names (unmapped: keep); list those you")
        lines.append("# do not want under exclude:, or set unmapped: drop. They are:")
        lines.append(f"#   {_flow(unmapped)}")
    lines.append("unmapped: keep")
    text = "\n".join(lines) + "\n"
    validate_ontology(yaml.safe_load(text), "suggested ontology")  # what it prints always loads
    return text


def _scalar(value: str) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 20, allow_unicode=True).strip()
    return text.removesuffix("\n...").strip()


def _flow(values: list[str]) -> str:
    return yaml.safe_dump(list(values), default_flow_style=True, width=1 << 20, allow_unicode=True).strip()
