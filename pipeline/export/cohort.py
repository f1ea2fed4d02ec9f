"""Cohort pictures for ``report.html``: inline SVG strip plots over the cases of one batch.

- per longitudinal channel, the median diameter (mm) of every case at every level: one mark per case, a link
  to its row of the report; the batch median per level as a black bar;
- per case and level, the left/right asymmetry index of the anterior and of the posterior channels,
  ``AI = 200 (L - R) / (L + R)`` in % (0: symmetric; +: the patient's left wider);
- flags for a (level, channel) value more than ``Z_FLAG`` standard deviations (of the batch's cases at that
  level, ddof=1) from the batch's mean there; flagged marks are drawn red.
"""

from __future__ import annotations

import html
import math

import numpy as np

from ..core.levels import level_rank

CHANNELS = ("anterior_left", "anterior_right", "posterior_left", "posterior_right")
PAIRS = {"anterior": ("anterior_left", "anterior_right"), "posterior": ("posterior_left", "posterior_right")}
Z_FLAG = 2.0
MIN_CASES = 3  # a standard deviation of fewer cases says nothing
W, H, LEFT, BOTTOM, TOP = 330, 210, 42, 26, 22  # panel size and margins, px


def case_values(rows: list[dict]) -> dict[tuple[str, str], float]:
    """{(level, channel): median diameter mm} of one case (finite values only), plus
    {(level, 'AI anterior'|'AI posterior'): asymmetry index %} where both sides were measured."""
    out = {}
    for r in rows:
        d = r["median_diameter_mm"]
        if r["channel"] in CHANNELS and r["level"] != "NA" and d is not None and np.isfinite(d):
            out[(r["level"], r["channel"])] = float(d)
    for pair, (left, right) in PAIRS.items():
        for level in {lv for lv, _ in out}:
            lv, rv = out.get((level, left)), out.get((level, right))
            if lv is not None and rv is not None and lv + rv > 0:
                out[(level, f"AI {pair}")] = 200.0 * (lv - rv) / (lv + rv)
    return out


def outliers(values: dict[str, dict[tuple[str, str], float]], *, z: float = Z_FLAG) -> dict[str, list[tuple]]:
    """{case: [(level, quantity, value, batch mean, batch sd, z)]} for values more than ``z`` SD from the mean
    of the batch's cases at that level (only where at least ``MIN_CASES`` cases have a value)."""
    if z <= 0:
        raise ValueError(f"z: must be > 0, got {z}")
    keys = {k for v in values.values() for k in v}
    out: dict[str, list[tuple]] = {c: [] for c in values}
    for key in sorted(keys, key=lambda k: (level_rank(k[0]), k[1])):
        have = {c: v[key] for c, v in values.items() if key in v}
        if len(have) < MIN_CASES:
            continue
        x = np.array(list(have.values()))
        mean, sd = float(x.mean()), float(x.std(ddof=1))
        if sd <= 0:
            continue
        for c, v in have.items():
            if abs(v - mean) > z * sd:
                out[c].append((key[0], key[1], v, mean, sd, (v - mean) / sd))
    return out


def outlier_flag(level: str, quantity: str, value: float, mean: float, sd: float, zv: float) -> str:
    """The report's text for one outlier."""
    unit = "%" if quantity.startswith("AI") else " mm"
    return (f"cohort: {level} {quantity} {value:.2f}{unit} is {zv:+.2f} SD from the batch "
            f"({mean:.2f} ± {sd:.2f}{unit})")


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    step = (hi - lo) / max(n, 1) or 1.0
    mag = 10 ** math.floor(math.log10(step))
    step = min((m * mag for m in (1, 2, 5, 10) if m * mag >= step), default=step)
    return [round(t, 10) for t in np.arange(math.floor(lo / step) * step, hi + step * 0.5, step)]


def strip_svg(title: str, quantity: str, values: dict[str, dict[tuple[str, str], float]],
              flagged: set[tuple[str, str, str]], *, unit: str, zero: bool = False) -> str:
    """One panel: levels along x, ``values[case][(level, quantity)]`` along y, one linked mark per case."""
    cases = sorted(values)
    levels = sorted({lv for v in values.values() for lv, q in v if q == quantity}, key=level_rank)
    pts = [(c, lv, values[c][(lv, quantity)]) for c in cases for lv in levels if (lv, quantity) in values[c]]
    head = f"<svg class='cohort' data-quantity='{html.escape(quantity)}' width='{W}' height='{H}' " \
           f"viewBox='0 0 {W} {H}' role='img' aria-label='{html.escape(title)}'>" \
           f"<text x='{W / 2}' y='14' text-anchor='middle' class='ttl'>{html.escape(title)}</text>"
    if not pts:
        return head + f"<text x='{W / 2}' y='{H / 2}' text-anchor='middle'>no values</text></svg>"
    ys = [p[2] for p in pts] + ([0.0] if zero else [])
    lo, hi = min(ys), max(ys)
    pad = (hi - lo) * 0.08 or 1.0
    lo, hi = lo - pad, hi + pad
    if not zero:
        lo = max(lo, 0.0)
    ticks = [t for t in _ticks(lo, hi) if lo <= t <= hi]
    pw, ph = W - LEFT - 8, H - TOP - BOTTOM
    dx = pw / len(levels)

    def y(v: float) -> float:
        return TOP + ph * (1 - (v - lo) / (hi - lo))

    parts = [head, f"<rect x='{LEFT}' y='{TOP}' width='{pw}' height='{ph}' class='frame'/>"]
    for t in ticks:
        parts.append(f"<line x1='{LEFT}' x2='{LEFT + pw}' y1='{y(t):.1f}' y2='{y(t):.1f}' class='grid'/>"
                     f"<text x='{LEFT - 4}' y='{y(t) + 4:.1f}' text-anchor='end'>{t:g}</text>")
    if zero:
        parts.append(f"<line x1='{LEFT}' x2='{LEFT + pw}' y1='{y(0):.1f}' y2='{y(0):.1f}' class='zero'/>")
    parts.append(f"<text x='10' y='{TOP + ph / 2}' transform='rotate(-90 10 {TOP + ph / 2})' "
                 f"text-anchor='middle'>{html.escape(unit)}</text>")
    n = len(cases)
    jitter = min(dx * 0.6 / max(n, 1), 7.0)
    for i, lv in enumerate(levels):
        cx = LEFT + dx * (i + 0.5)
        parts.append(f"<text x='{cx:.1f}' y='{H - 8}' text-anchor='middle'>{html.escape(lv)}</text>")
        here = [v for c, level, v in pts if level == lv]
        med = float(np.median(here))
        parts.append(f"<line x1='{cx - dx * 0.38:.1f}' x2='{cx + dx * 0.38:.1f}' y1='{y(med):.1f}' "
                     f"y2='{y(med):.1f}' class='median'><title>batch median {lv}: {med:.2f}{unit}</title></line>")
    for c, lv, v in pts:
        k = cases.index(c)
        cx = LEFT + dx * (levels.index(lv) + 0.5) + (k - (n - 1) / 2) * jitter
        cls = "mark out" if (c, lv, quantity) in flagged else "mark"
        parts.append(f"<a href='#case-{html.escape(c)}'><circle cx='{cx:.1f}' cy='{y(v):.1f}' r='4' class='{cls}' "
                     f"data-case='{html.escape(c)}'><title>{html.escape(c)} {lv}: {v:.2f}{unit}</title></circle></a>")
    return "".join(parts) + "</svg>"


def cohort_section(rows_by_case: dict[str, list[dict]], *, z: float = Z_FLAG) -> tuple[str, dict[str, list[str]]]:
    """The report's cohort block (HTML with inline SVG) and the cohort flags of every case."""
    values = {c: case_values(rows) for c, rows in rows_by_case.items()}
    found = outliers(values, z=z)
    flagged = {(c, lv, q) for c, hits in found.items() for lv, q, *_ in hits}
    panels = [strip_svg(f"{ch.replace('_', ' ')}: median diameter", ch, values, flagged, unit="mm")
              for ch in CHANNELS]
    panels += [strip_svg(f"{pair} left/right asymmetry", f"AI {pair}", values, flagged, unit="%", zero=True)
               for pair in PAIRS]
    note = (f"<p>Each mark is one case (click: its row); black bars: the batch median per level. Asymmetry index "
            f"AI = 200 (L &minus; R) / (L + R) %. Red: more than {z:g} SD from the batch's mean at that level "
            f"(with at least {MIN_CASES} cases).</p>")
    block = f"<section id='cohort'><h2>Cohort</h2>{note}<div class='panels'>{''.join(panels)}</div></section>"
    return block, {c: [outlier_flag(*h) for h in hits] for c, hits in found.items()}
