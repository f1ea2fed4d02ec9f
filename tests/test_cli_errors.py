"""What ``plexus`` says when a command fails: a usage error (exit 2, one line) is the user's; any exception that
is not a PlexusError is a bug (exit 1, its traceback, then one line naming the command)."""

from __future__ import annotations

import pytest

from pipeline.batch.options import InferOptions
from pipeline.cli import data, main
from pipeline.core.errors import PlexusError, UsageError


def test_a_bug_exits_1_with_its_traceback_and_one_line_naming_the_command(monkeypatch, tmp_path, capsys, caplog):
    def broken(args):
        raise ZeroDivisionError("a numerical bug")

    monkeypatch.setattr(data, "_run_info", broken)
    assert main(["info", str(tmp_path / "x.nii.gz")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: plexus info: bug: ZeroDivisionError: a numerical bug"]
    logged = [r for r in caplog.records if r.exc_info]
    assert len(logged) == 1 and "a bug" in logged[0].getMessage() and logged[0].exc_info[0] is ZeroDivisionError


def test_a_value_error_is_a_bug_not_a_usage_error(monkeypatch, tmp_path, capsys):
    def broken(args):
        raise ValueError("shapes (3,) and (4,) not aligned")

    monkeypatch.setattr(data, "_run_info", broken)
    assert main(["info", str(tmp_path / "x.nii.gz")]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: plexus info: bug: ValueError")


def test_usage_errors_exit_2_with_one_line(tmp_path, capsys):
    assert main(["infer", "x.nii.gz", "-o", str(tmp_path), "--workers", "-1"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["error: --workers: expected 0 or more, got -1"]
    assert main(["measure", "m.nii.gz", "-o", str(tmp_path), "--min-volume", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: min_volume_mm3")


def test_infer_options_are_checked_once_and_name_the_flag():
    assert issubclass(UsageError, PlexusError) and issubclass(UsageError, ValueError)
    with pytest.raises(UsageError, match="--overlap"):
        InferOptions(overlap=1.0)
    with pytest.raises(UsageError, match="--executor ray"):
        InferOptions(ray_cpus=2)
    opts = InferOptions(modality="ct")
    assert opts.modality_name == "CT" and InferOptions().modality_name is None
    with pytest.raises(AttributeError):  # frozen: nothing is written back into the options
        opts.device = "cuda"
