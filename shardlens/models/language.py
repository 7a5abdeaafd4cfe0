"""Per-line language guess with lingua (its models ship inside the wheel; nothing is downloaded).

Short strings fool every language detector ("EXIT" reads as Latin or Finnish as easily as
English), so a guess is only given when the line has at least ``min_letters`` letters and the
detector's confidence is at least ``min_confidence``; otherwise the language is null.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..options import LanguageOptions


@dataclass(frozen=True, slots=True)
class LanguageGuess:
    language: str | None
    confidence: float | None


class LanguageGuesser:
    """The guesser of the ``ocr.language`` options."""

    def __init__(self, options: LanguageOptions):
        from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

        chosen = []
        for code in options.languages:
            try:
                chosen.append(Language.from_iso_code_639_1(getattr(IsoCode639_1, code.upper())))
            except AttributeError:
                raise ValueError(f"unknown ISO 639-1 language code {code!r} in ocr.language.languages") from None
        if len(chosen) < 2:
            raise ValueError("ocr.language.languages needs at least two languages")
        builder = LanguageDetectorBuilder.from_languages(*chosen)
        if options.low_accuracy:  # trigram models only: loads in a fraction of the time
            builder = builder.with_low_accuracy_mode()
        self._detector = builder.build()
        self.min_confidence = options.min_confidence
        self.min_letters = options.min_letters

    def guess(self, text: str) -> LanguageGuess:
        letters = sum(ch.isalpha() for ch in text)
        # CJK scripts carry a lot per character: count each as two letters.
        letters += sum(1 for ch in text if "\u3040" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af")
        if letters < self.min_letters:
            return LanguageGuess(None, None)
        values = self._detector.compute_language_confidence_values(text)
        if not values:
            return LanguageGuess(None, None)
        best = values[0]
        if best.value < self.min_confidence:
            return LanguageGuess(None, None)
        return LanguageGuess(best.language.iso_code_639_1.name.lower(), round(float(best.value), 4))
