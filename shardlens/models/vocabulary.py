"""Mapping a closed-set detector's classes onto the user's vocabulary with sentence embeddings,
so a prompt such as "automobile" finds COCO's "car". A class with no vocabulary term above the
threshold keeps its own name. The regions stage applies it for the ``detect.vocabulary``
shorthand, and ``shardlens ontology suggest`` prints it as an ontology file (shardlens/ontology.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VocabularyMap:
    mapping: dict[str, str]  # detector class -> vocabulary term (or the class itself)
    similarity: dict[str, float]  # detector class -> cosine similarity of the chosen term

    def __call__(self, detector_class: str) -> str:
        return self.mapping.get(detector_class, detector_class)


def build_vocabulary_map(classes: list[str], vocabulary: list[str], embed, threshold: float) -> VocabularyMap:
    """``embed(texts) -> (n, d)`` L2-normalised vectors. Exact (case-insensitive) matches win."""
    if not vocabulary:
        return VocabularyMap({c: c for c in classes}, {c: 1.0 for c in classes})
    lowered = {v.lower(): v for v in vocabulary}
    vectors = embed(list(classes) + list(vocabulary))
    class_vecs, vocab_vecs = vectors[: len(classes)], vectors[len(classes) :]
    sims = class_vecs @ vocab_vecs.T
    mapping, similarity = {}, {}
    for i, cls in enumerate(classes):
        if cls.lower() in lowered:
            mapping[cls], similarity[cls] = lowered[cls.lower()], 1.0
            continue
        j = int(np.argmax(sims[i]))
        if sims[i, j] >= threshold:
            mapping[cls], similarity[cls] = vocabulary[j], float(sims[i, j])
        else:
            mapping[cls], similarity[cls] = cls, 1.0
    return VocabularyMap(mapping, similarity)
