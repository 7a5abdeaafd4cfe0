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


# The scripts of the per-shard rules, as released. Snakemake re-runs a job whose output is older
# than its rule's script, so any edit to one of these (a `git pull` gives the file a new mtime)
# redoes that rule for every shard of every existing cache, and the listing's rule everything
# after it. Change one only when that re-run is wanted, and say so in CHANGELOG.md; then update
# the hash here.
SHARD_SCRIPTS = {
    "shard_listing": "2f6c1fce0b157f03928392a0dd1ac75f239ec40c803744eb4e1c527434f47b82",
    "ingest": "57274c9e7eb50a886345256d82b952cf5f014eaeb2e127c70dd417b1eb7c0c53",
    "gate": "f9d16c2d8756026e0b56e49108a3eb725ec4653827b42e550f8d97c4cc2816ab",
    "ocr": "1d76179a5add81f769fd046a07d79cd9f23d349a142eef726756e8fc16be2ae7",
    "detect": "034c854d34743e972bfbaf55daeb0a2d5d782d9f457b8a5a3fd75fd04caaecb2",
    "regions": "e19e7cf8838dd947e5d0aad4f594312ba0956d66095bc7f1708e0022a254e280",
    "embed": "3f48d8e4d5ddbfc4986e465690a09200b9bb7612d7c5f88254af66b599cafded",
    "shard_jobs": "50064c62d9f21768c0b6192f0013fa888a8e54bf4a239fe27dbfaa58a7aece83",
}


def test_the_per_shard_scripts_are_unchanged():
    import hashlib

    changed = [
        name for name, sha in SHARD_SCRIPTS.items()
        if hashlib.sha256((REPO / "scripts" / f"{name}.py").read_bytes()).hexdigest() != sha
    ]  # fmt: skip
    assert not changed, f"scripts {changed} changed: every existing cache re-runs these rules for every shard (see the comment above SHARD_SCRIPTS)"
    rules = "\n".join(p.read_text() for p in (REPO / "rules").glob("*.smk"))
    for name in SHARD_SCRIPTS:  # the list names the scripts the rules really use
        assert f'"../scripts/{name}.py"' in rules, name
