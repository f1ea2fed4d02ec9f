"""``report.html``: a static batch report that opens from disk, with no server and no internet.

One row per case: status, levels measured, the four channels' median diameters per level, flags (failed
cases, missing levels or channels, unusually wide or narrow channels, values far from the batch's own) and the
case's QC picture. Columns sort on click (inline script); pictures are linked by relative path. Above the
table, the cohort pictures of :mod:`pipeline.export.cohort` (inline SVG; each mark links to its case's row).
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from ..core.atomic import write_text
from ..core.levels import level_rank
from .cohort import cohort_section
from .tables import read_calibre_csv

CHANNELS = ("anterior_left", "anterior_right", "posterior_left", "posterior_right")
WIDE_MM, NARROW_MM = 6.0, 1.0   # flag thresholds for a channel's median diameter at one level


def case_flags(rows: list[dict]) -> list[str]:
    """Review flags of one case from its calibre rows."""
    flags = []
    for r in rows:
        if r["channel"] not in CHANNELS:
            continue
        d = r["median_diameter_mm"]
        where = f"{r['level']} {r['channel']}"
        if d in ("", None) or (isinstance(d, float) and np.isnan(d)):
            flags.append(f"missing: {where}")
        elif float(d) > WIDE_MM:
            flags.append(f"wide: {where} {float(d):.1f} mm")
        elif float(d) < NARROW_MM:
            flags.append(f"narrow: {where} {float(d):.1f} mm")
    if rows and all(r["level"] == "NA" for r in rows):
        flags.append("levels unknown (no vertebra map)")
    return flags


def _read_rows(path: Path) -> list[dict]:
    """A case's calibre rows; none for a case without ``calibre.csv`` (no spine in view, failed)."""
    return read_calibre_csv(path) if path.exists() else []


def _calibre_cell(rows: list[dict]) -> str:
    levels = sorted({r["level"] for r in rows if r["channel"] in CHANNELS}, key=level_rank)
    if not levels:
        return "<em>no plexus measured</em>"
    table = {(r["level"], r["channel"]): r["median_diameter_mm"] for r in rows}
    head = "".join(f"<th>{c.replace('_', ' ')}</th>" for c in CHANNELS)
    body = "".join("<tr><th>" + html.escape(lv) + "</th>" + "".join(
        f"<td>{'' if np.isnan(table.get((lv, c), np.nan)) else f'{table[(lv, c)]:.2f}'}</td>" for c in CHANNELS)
        + "</tr>" for lv in levels)
    return f"<table class='inner'><tr><th>level</th>{head}</tr>{body}</table>"


def build_report(out_dir: str | Path, failures: dict[str, str] | None = None) -> Path:
    """Write ``out_dir/report.html`` from the case folders of ``out_dir`` (and failed cases); return its path."""
    out = Path(out_dir)
    failures = dict(failures or {})
    run = out / "run.json"
    if run.exists():
        failures.update({f["case_id"]: f["error"] for f in json.loads(run.read_text()).get("failures", [])})
    cases = sorted(p.parent for p in out.glob("*/measurements.json") if not p.parent.name.startswith("."))
    rows_of = {case.name: _read_rows(case / "calibre.csv") for case in cases}
    cohort, cohort_flags = cohort_section(rows_of)
    trs = []
    for case in cases:
        rows = rows_of[case.name]
        meas = json.loads((case / "measurements.json").read_text())
        flags = case_flags(rows) + cohort_flags.get(case.name, [])
        med = [r["median_diameter_mm"] for r in rows if r["channel"] in CHANNELS and not np.isnan(r["median_diameter_mm"])]
        qc = f"{case.name}/qc.png"
        img = f"<a href='{html.escape(qc)}'><img src='{html.escape(qc)}' alt='QC picture of {html.escape(case.name)}'></a>" \
            if (case / "qc.png").exists() else ""
        trs.append((case.name, meas.get("status", "ok"), len({r['level'] for r in rows}), float(np.median(med)) if med else float("nan"),
                    len(flags), _calibre_cell(rows), "<br>".join(html.escape(f) for f in flags)
                    or html.escape(meas.get("reason", "none")),
                    f"{meas.get('total_volume_mm3', 0):.0f}", img))
    for case_id, err in sorted(failures.items()):
        trs.append((case_id, "failed", 0, float("nan"), 1, "", html.escape(err), "", ""))
    body = "\n".join(
        f"<tr class='{status.replace(' ', '-')}' id='case-{html.escape(cid)}'><td data-v='{html.escape(cid)}'>{html.escape(cid)}</td><td data-v='{status}'>{status}</td>"
        f"<td data-v='{nlev}'>{nlev}</td><td data-v='{'' if np.isnan(m) else f'{m:.3f}'}'>{'' if np.isnan(m) else f'{m:.2f}'}</td>"
        f"<td data-v='{nflag}'>{flagtxt}</td><td data-v='{vol}'>{vol}</td><td>{cal}</td><td>{img}</td></tr>"
        for cid, status, nlev, m, nflag, cal, flagtxt, vol, img in trs)
    n_fail = sum(1 for t in trs if t[1] == "failed")
    n_status = sum(1 for t in trs if t[1] not in ("ok", "failed"))  # no spine in view: a status, no plexus
    others = f", {n_status} with no spine in view" if n_status else ""
    page = _PAGE.format(n=len(trs), ok=len(trs) - n_fail - n_status, failed=f"{n_fail} failed{others}", rows=body,
                        wide=WIDE_MM, narrow=NARROW_MM,
                        cohort=cohort)
    path = out / "report.html"
    write_text(path, page)
    return path


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>plexus batch report</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
table.cases {{ border-collapse: collapse; width: 100%; }}
table.cases > tbody > tr > td, table.cases > thead > tr > th {{ border-bottom: 1px solid #ccc; padding: 6px; vertical-align: top; }}
table.cases > thead th {{ cursor: pointer; background: #f0f0f4; position: sticky; top: 0; }}
table.cases > thead th:hover {{ background: #dde; }}
tr.failed {{ background: #fde8e8; }}
table.inner {{ border-collapse: collapse; font-size: 85%; }}
table.inner td, table.inner th {{ border: 1px solid #ddd; padding: 2px 5px; text-align: right; }}
img {{ max-width: 520px; border: 1px solid #aaa; }}
tr:target {{ background: #fff6c8; }}
.panels {{ display: flex; flex-wrap: wrap; gap: 10px; }}
svg.cohort {{ background: #fff; border: 1px solid #ddd; font-size: 11px; }}
svg.cohort .ttl {{ font-weight: bold; font-size: 12px; }}
svg.cohort .frame {{ fill: none; stroke: #999; }} svg.cohort .grid {{ stroke: #eee; }}
svg.cohort .zero {{ stroke: #666; stroke-dasharray: 3 2; }} svg.cohort .median {{ stroke: #000; stroke-width: 2; }}
svg.cohort .mark {{ fill: #3b5bdb; fill-opacity: 0.75; stroke: #fff; }} svg.cohort .mark.out {{ fill: #e03131; }}
svg.cohort a:hover .mark {{ stroke: #000; stroke-width: 2; }}
</style></head><body>
<h1>plexus batch report</h1>
<p>{n} cases: {ok} measured, {failed}. Median diameters in mm per level and channel (patient's sides).
Flags: missing (level, channel), wide (&gt; {wide} mm), narrow (&lt; {narrow} mm), cohort (far from the batch).
Click a column header to sort.</p>
{cohort}
<table class="cases" id="cases"><thead><tr><th>case</th><th>status</th><th>levels</th><th>median diameter (mm)</th>
<th>flags</th><th>volume (mm&sup3;)</th><th>calibre per level (mm)</th><th>QC picture</th></tr></thead>
<tbody>
{rows}
</tbody></table>
<script>
document.querySelectorAll('#cases thead th').forEach(function (th, col) {{
  th.addEventListener('click', function () {{
    var body = document.querySelector('#cases tbody');
    var rows = Array.prototype.slice.call(body.rows);
    var asc = th.dataset.asc !== '1'; th.dataset.asc = asc ? '1' : '0';
    rows.sort(function (a, b) {{
      var x = a.cells[col].dataset.v || '', y = b.cells[col].dataset.v || '';
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? c : -c;
    }});
    rows.forEach(function (r) {{ body.appendChild(r); }});
  }});
}});
window.addEventListener('load', function () {{
  var ok = Array.prototype.filter.call(document.images, function (i) {{ return i.complete && i.naturalWidth > 0; }});
  document.body.setAttribute('data-images-loaded', ok.length);
  document.body.setAttribute('data-rows', document.querySelectorAll('#cases > tbody > tr').length);
  var drawn = Array.prototype.filter.call(document.querySelectorAll('svg.cohort circle.mark'), function (c) {{
    var b = c.getBoundingClientRect(); return b.width > 0 && b.height > 0; }});
  document.body.setAttribute('data-cohort-marks', drawn.length);
}});
</script>
</body></html>
"""
