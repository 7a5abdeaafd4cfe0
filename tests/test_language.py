"""Language guesses: only where they are safe, in either lingua mode."""

from __future__ import annotations

import pytest

from shardlens.models.language import LanguageGuesser
from shardlens.options import LanguageOptions


@pytest.mark.parametrize("low_accuracy", [False, True])
def test_guesses_and_nulls(low_accuracy):
    guesser = LanguageGuesser(LanguageOptions.from_values({"low_accuracy": low_accuracy}))
    assert guesser.guess("Schließfächer im Untergeschoss").language == "de"
    assert guesser.guess("Boulangerie pâtisserie").language == "fr"
    assert guesser.guess("EXIT").language is None  # too short to say
    assert guesser.guess("12:45").language is None


def test_languages_are_checked():
    with pytest.raises(ValueError, match="unknown ISO 639-1 language code 'xx'"):
        LanguageGuesser(LanguageOptions.from_values({"languages": ["en", "xx"]}))
