"""The rule files read as a model workflow's do (#20 item 9): every rule and checkpoint has a
comment right above it saying what it makes (a ``message:`` would repeat it in every job's log)."""

from __future__ import annotations

import re

from conftest import REPO

RULE = re.compile(r"^(?:rule|checkpoint) (\w+):$")


def rule_comments() -> dict[str, str]:
    """Every rule of the Snakefile and rules/*.smk, with the comment lines right above it ('' when none)."""
    found = {}
    for path in [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]:
        lines = path.read_text().splitlines()
        for n, line in enumerate(lines):
            match = RULE.match(line)
            if match:
                above = []
                for previous in reversed(lines[:n]):
                    if not previous.startswith("#"):
                        break
                    above.insert(0, previous.lstrip("# "))
                found[match.group(1)] = " ".join(above)
    return found


def test_every_rule_says_what_it_makes():
    comments = rule_comments()
    assert {"all", "demo_images", "ingest", "gate", "ocr", "detect", "regions", "embed", "cluster", "catalog", "export", "import_reviews"} <= set(comments)
    assert {rule: text for rule, text in comments.items() if not text} == {}
    makers = {rule for rule, text in comments.items() if text.startswith("Makes ")}
    assert set(comments) - makers == {"all"}, "a rule's comment starts with 'Makes <what>'"


def test_a_rule_without_a_comment_is_found(tmp_path, monkeypatch):
    import test_rules

    (tmp_path / "rules").mkdir()
    (tmp_path / "Snakefile").write_text("# Makes x.\nrule a:\n    output: 'x'\n\n\nrule b:\n    output: 'y'\n")
    monkeypatch.setattr(test_rules, "REPO", tmp_path)
    assert test_rules.rule_comments() == {"a": "Makes x.", "b": ""}
