"""The shardlens command line: one-line errors, nothing created by a read, a version."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version


def test_export_of_a_missing_catalog_is_one_line_and_creates_nothing(tmp_path):
    for db in (tmp_path / "missing.sqlite", tmp_path / "notes.sqlite"):
        if db.name == "notes.sqlite":
            db.write_text("not a database")
        proc = subprocess.run(
            [sys.executable, "-m", "shardlens.cli", "export", str(db), str(tmp_path / "out")], capture_output=True, text=True, cwd=tmp_path
        )
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
        assert str(db) in proc.stderr
    assert not (tmp_path / "missing.sqlite").exists() and not (tmp_path / "out").exists()


def test_cli_version():
    proc = subprocess.run([sys.executable, "-m", "shardlens.cli", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == f"shardlens {version('shardlens')}"
