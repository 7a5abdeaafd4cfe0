"""The shardlens command line: one-line errors, nothing created by a read, a version."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version


def test_export_of_a_missing_catalog_is_one_line_and_creates_nothing(tmp_path):
    for db in (tmp_path / "missing.sqlite", tmp_path / "notes.sqlite"):
        if db.name == "notes.sqlite":
            db.write_text("not a database")
        proc = subprocess.run([sys.executable, "-m", "shardlens.cli", "export", str(db), str(tmp_path / "out")], capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
        assert str(db) in proc.stderr
    assert not (tmp_path / "missing.sqlite").exists() and not (tmp_path / "out").exists()


def test_cli_version():
    proc = subprocess.run([sys.executable, "-m", "shardlens.cli", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == f"shardlens {version('shardlens')}"


def test_a_file_a_command_cannot_write_is_one_line_naming_it(small_catalog, tmp_path):
    """Every command shares one error handler: an OSError (here the output folder is a file)
    ends it with one line naming the file and the reason, exit 2, no traceback."""
    from conftest import one_line_error, shardlens_cli

    blocker = tmp_path / "results"
    blocker.write_text("a file where the export folder should be")
    proc = shardlens_cli("export", str(small_catalog), str(blocker), "--formats", "csv", cwd=tmp_path)
    one_line_error(proc, str(blocker))
    assert proc.stderr.rstrip().endswith(("File exists", "Not a directory")), proc.stderr
    assert blocker.read_text() == "a file where the export folder should be"
