"""The static batch report: content, flags, and rendering in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from pipeline.cli import main
from pipeline.export.report import build_report, case_flags
from pipeline.measure_case import measure_case
from tests.conftest import SAMPLE_DATA


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    out = tmp_path_factory.mktemp("batch")
    for case in ("ct_phantom", "mr_phantom"):
        d = SAMPLE_DATA / case
        measure_case(d / "plexus_mask.nii.gz", out / case, image_path=d / "image.nii.gz",
                     vertebrae_path=d / "vertebrae.nii.gz")
    (out / "run.json").write_text(json.dumps({"failures": [
        {"case_id": "broken_case", "error": "broken.nii.gz: cannot read NIfTI data, file truncated or corrupt"}]}))
    build_report(out)
    return out


def test_report_lists_cases_failures_and_pictures(batch):
    page = (batch / "report.html").read_text()
    assert page.count("<tr class='ok'>") == 2 and page.count("<tr class='failed'>") == 1
    assert "file truncated or corrupt" in page
    assert "ct_phantom/qc.png" in page and "mr_phantom/qc.png" in page
    assert "http://" not in page and "https://" not in page  # opens with no internet
    assert re.search(r"<th>L4</th>", page)


def test_flags_catch_missing_wide_and_narrow():
    rows = [{"level": "L3", "channel": "anterior_left", "median_diameter_mm": 7.2},
            {"level": "L3", "channel": "posterior_left", "median_diameter_mm": 0.6},
            {"level": "L3", "channel": "anterior_right", "median_diameter_mm": float("nan")},
            {"level": "L3", "channel": "transverse", "median_diameter_mm": 9.0}]
    flags = case_flags(rows)
    assert any(f.startswith("wide: L3 anterior_left") for f in flags)
    assert any(f.startswith("narrow: L3 posterior_left") for f in flags)
    assert "missing: L3 anterior_right" in flags and len(flags) == 3


def test_cli_report(batch, capsys):
    assert main(["report", str(batch)]) == 0
    assert "report.html" in capsys.readouterr().out
    assert main(["report", str(batch / "nope")]) == 2


def test_report_renders_in_headless_chromium(batch, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("Chromium is not installed (make test installs Debian's chromium when run as root)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--allow-file-access-from-files",
             "--virtual-time-budget=3000"]
    url = (batch / "report.html").resolve().as_uri()
    dom = subprocess.run([chromium, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    assert 'data-rows="3"' in dom, re.findall("<body[^>]*>", dom)
    assert 'data-images-loaded="2"' in dom
    shot = tmp_path / "report.png"
    subprocess.run([chromium, *flags, f"--screenshot={shot}", "--window-size=1400,1000", url],
                   capture_output=True, timeout=120)
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)
    assert img.shape[0] >= 900 and img.std() > 0.05  # something was drawn, not a blank page
