"""The static batch report: content, flags, and rendering in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.export.cohort import case_values, cohort_section, outliers
from pipeline.export.measure_case import measure_case
from pipeline.export.report import build_report, case_flags
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
    assert page.count("<tr class='ok' id='case-") == 2 and page.count("<tr class='failed' id='case-") == 1
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


def _rows(values: dict) -> list[dict]:
    return [{"level": lv, "channel": ch, "median_diameter_mm": v} for (lv, ch), v in values.items()]


def test_cohort_flags_a_level_far_from_the_batch():
    """Seven cases: one with a wide L4 anterior_left (and so a left/right asymmetry there) is flagged; the
    others are not; fewer than three cases flag nothing."""
    rng = np.random.default_rng(3)
    cases = {f"c{i}": _rows({("L4", ch): 3.0 + rng.normal(0, 0.1) for ch in
                             ("anterior_left", "anterior_right", "posterior_left", "posterior_right")})
             for i in range(7)}
    cases["c6"][0]["median_diameter_mm"] = 5.0  # anterior_left of c6
    block, flags = cohort_section(cases)
    assert any(f.startswith("cohort: L4 anterior_left 5.00 mm") for f in flags["c6"])
    assert any(f.startswith("cohort: L4 AI anterior") for f in flags["c6"])
    assert all(not flags[c] for c in cases if c != "c6")
    assert block.count("class='mark out'") == 2 and "href='#case-c6'" in block
    ai = case_values(cases["c6"])[("L4", "AI anterior")]
    l, r = 5.0, cases["c6"][1]["median_diameter_mm"]
    assert ai == pytest.approx(200 * (l - r) / (l + r))
    two = {c: case_values(cases[c]) for c in ("c0", "c6")}
    assert outliers(two) == {"c0": [], "c6": []}
    with pytest.raises(ValueError, match="z"):
        outliers(two, z=0)


def _expected_marks(batch) -> int:
    """Marks the cohort plots should draw: every finite (level, channel) median and left/right index."""
    import csv

    n = 0
    for case in ("ct_phantom", "mr_phantom"):
        rows = [dict(r, median_diameter_mm=float(r["median_diameter_mm"]) if r["median_diameter_mm"] else np.nan)
                for r in csv.DictReader(open(batch / case / "calibre.csv"))]
        n += len(case_values(rows))
    return n


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
    assert dom.count("<svg class=\"cohort\"") == 6  # four channels, two left/right indices
    assert f'data-cohort-marks="{_expected_marks(batch)}"' in dom, re.findall("<body[^>]*>", dom)
    assert "href=\"#case-ct_phantom\"" in dom and "id=\"case-ct_phantom\"" in dom
    shot = tmp_path / "report.png"
    subprocess.run([chromium, *flags, f"--screenshot={shot}", "--window-size=1400,1000", url],
                   capture_output=True, timeout=120)
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)
    assert img.shape[0] >= 900 and img.std() > 0.05  # something was drawn, not a blank page
    marks = np.all(np.abs(img[..., :3] - np.array([0x3b, 0x5b, 0xdb]) / 255) < 0.12, axis=-1)
    assert marks.sum() > 100  # the cohort marks are on screen, in their colour
