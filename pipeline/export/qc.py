"""One QC picture per case that a reviewer can judge in two seconds.

Axial slices at three heights and a sagittal slice through the canal with the plexus outlined, a coronal
maximum-intensity projection of the plexus (coloured by vein diameter when centrelines are given), and,
with a calibre table, a per-level chart of the four channels' median diameters. Everything is drawn in
the RAS frame (the image is reoriented first), so pictures look the same whatever the storage order.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..core.atomic import atomic_path  # noqa: E402
from ..core.levels import level_rank
from ..core.volume import Volume, reorient  # noqa: E402
from ..inference.crop import crop_box, sub_volume  # noqa: E402

CHANNEL_COLOURS = {"anterior_left": "#d62728", "anterior_right": "#1f77b4", "posterior_left": "#ff7f0e",
                   "posterior_right": "#2ca02c", "transverse": "#7f7f7f"}


def _box_of(a: np.ndarray, spacing, margin_mm: float) -> tuple[slice, slice, slice]:
    return crop_box(a > 0, np.diag([*np.asarray(spacing, float), 1.0]), margin_mm)


def _crop_to(image: Volume, mask: Volume, margin_mm: float) -> tuple[Volume, Volume]:
    """Both volumes cropped to the mask's bounding box plus ``margin_mm`` (same grid required)."""
    if image.shape != mask.shape:
        return image, mask
    a = mask.array
    lo, hi = [], []
    for i in range(3):
        idx = np.nonzero(a.any(axis=tuple(j for j in range(3) if j != i)))[0]
        pad = int(np.ceil(margin_mm / image.spacing[i]))
        lo.append(max(int(idx.min()) - pad, 0))
        hi.append(min(int(idx.max()) + pad + 1, a.shape[i]))
    sl = tuple(slice(a_, b_) for a_, b_ in zip(lo, hi))
    aff = image.affine.copy()
    aff[:3, 3] = image.affine[:3, :3] @ np.array(lo) + image.affine[:3, 3]
    return Volume(image.array[sl], aff, image.meta), Volume(mask.array[sl], aff, mask.meta)


def _window(modality: str | None, arr: np.ndarray) -> tuple[float, float]:
    if modality == "CT":
        return -250.0, 600.0
    lo, hi = np.percentile(arr[:: 3, :: 3, :: 3], [1, 99.7])
    return float(lo), float(hi)


def qc_picture(image: Volume, path: str | Path, *, mask: Volume | None = None, centerlines: list | None = None,
               calibre_rows: list[dict] | None = None, title: str = "", canal: Volume | None = None) -> Path:
    """Write the QC picture of a case to ``path`` (PNG) and return the path.

    Parameters
    ----------
    image : Volume
        The scan.
    mask : Volume, optional
        Plexus mask on the image grid (outlined in red).
    centerlines : list of dict, optional
        Branches with ``points`` (RAS mm) and ``diameter`` (mm) for the coloured projection.
    calibre_rows : list of dict, optional
        Rows of ``calibre.csv`` for the per-level chart.
    canal : Volume, optional
        The vertebral canal stage 1 found, image grid (outlined in yellow).
    """
    if canal is not None and np.any(canal.array):  # the spine, not the whole field of view
        box = _box_of(canal.array, canal.spacing, 35.0)
        image, canal = sub_volume(image, box), sub_volume(canal, box)
        mask = sub_volume(mask, box) if mask is not None else None
    elif mask is not None and np.any(mask.array):
        image, mask = _crop_to(image, mask, margin_mm=35.0)
    ras = reorient(image)
    arr, aff = ras.array, ras.affine
    m = reorient(mask).array > 0 if mask is not None else None
    c = reorient(canal).array > 0 if canal is not None else None
    sp = np.linalg.norm(aff[:3, :3], axis=0)
    vmin, vmax = _window(image.meta.get("modality"), arr)
    if (c if c is not None else m) is not None and (c if c is not None else m).any():
        idx = np.argwhere(c if c is not None else m)
        cx = int(round(float(np.median(idx[:, 0]))))
        zs = np.linspace(idx[:, 2].min(), idx[:, 2].max(), 5)[1:4].astype(int)
    else:
        cx = arr.shape[0] // 2
        zs = np.linspace(0, arr.shape[2] - 1, 5)[1:4].astype(int)
    ratios = [1, 1, 1.3] + ([1.1] if calibre_rows else [])
    fig = plt.figure(figsize=(4.0 * sum(ratios), 8.5), dpi=90)
    gs = fig.add_gridspec(2, len(ratios), width_ratios=ratios)
    for i, z in enumerate(zs):
        ax = fig.add_subplot(gs[0 if i < 2 else 1, i % 2 if i < 2 else 0])
        ax.imshow(arr[:, :, z].T, origin="lower", cmap="gray", vmin=vmin, vmax=vmax, aspect=sp[1] / sp[0])
        if c is not None and c[:, :, z].any():
            ax.contour(c[:, :, z].T, [0.5], colors="gold", linewidths=0.8)
        if m is not None and m[:, :, z].any():
            ax.contour(m[:, :, z].T, [0.5], colors="red", linewidths=0.8)
        # titles at a fixed height: matplotlib's automatic title placement measures every tick label (a sixth of
        # the picture's time), and no axes here has labels above it
        ax.set_title(f"axial z={aff[2, 3] + z * sp[2]:.0f} mm", y=1.0)
        ax.invert_xaxis()  # radiological convention: patient's right on the left of the picture
        ax.set_axis_off()
    ax = fig.add_subplot(gs[1, 1])
    ax.imshow(arr[cx].T, origin="lower", cmap="gray", vmin=vmin, vmax=vmax, aspect=sp[2] / sp[1])
    if c is not None and c[cx].any():
        ax.contour(c[cx].T, [0.5], colors="gold", linewidths=0.8)
    if m is not None and m[cx].any():
        ax.contour(m[cx].T, [0.5], colors="red", linewidths=0.8)
    ax.set_title("sagittal (anterior right)" + ("; canal in yellow" if c is not None else ""), y=1.0)
    ax.set_axis_off()
    ax = fig.add_subplot(gs[:, 2])
    _coronal(ax, arr, aff, m, centerlines)
    if calibre_rows:
        _chart(fig.add_subplot(gs[:, 3]), calibre_rows)
    fig.suptitle(title or image.path, fontsize=11)
    # a fixed layout (tight_layout costs a third of the picture's time): room for the titles, the colour bar's
    # label, the chart's level names and its legend below
    fig.subplots_adjust(left=0.01, right=0.99, top=0.9, bottom=0.14, wspace=0.3, hspace=0.15)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", pil_kwargs={"compress_level": 1})  # fast; a QC picture is small anyway
    plt.close(fig)
    return Path(path)


def _coronal(ax, arr, aff, m, centerlines) -> None:
    sp = np.linalg.norm(aff[:3, :3], axis=0)
    ext = [aff[0, 3], aff[0, 3] + sp[0] * arr.shape[0], aff[2, 3], aff[2, 3] + sp[2] * arr.shape[2]]
    if m is not None:
        ax.imshow(m.max(axis=1).T, origin="lower", cmap="Greys", extent=ext, alpha=0.35)
    if centerlines:
        pts = np.concatenate([np.asarray(b["points"]) for b in centerlines if len(b["points"])])
        dia = np.concatenate([np.asarray(b["diameter"]) for b in centerlines if len(b["points"])])
        sc = ax.scatter(pts[:, 0], pts[:, 2], c=dia, s=4, cmap="viridis", vmin=0, vmax=max(4.0, np.percentile(dia, 98)))
        plt.colorbar(sc, ax=ax, fraction=0.04, label="diameter (mm)")
        title = "coronal projection,\ncentrelines coloured by diameter"
    else:
        title = "coronal projection of the plexus mask\n"
    ax.set_xlim(ext[1], ext[0])
    ax.set_aspect("equal")
    ax.set_title(title + " (patient's right on the left)", y=1.0)
    ax.set_xlabel("x (mm, RAS)")
    ax.set_ylabel("z (mm, RAS)")


def _chart(ax, rows: list[dict]) -> None:
    levels = sorted({r["level"] for r in rows}, key=level_rank)
    if len(levels) > 1 and "NA" in levels:  # points beyond the labelled vertebrae: not worth a row here
        levels.remove("NA")
        rows = [r for r in rows if r["level"] != "NA"]
    y = {lv: i for i, lv in enumerate(levels)}
    for ch, col in CHANNEL_COLOURS.items():
        pts = [(float(r["median_diameter_mm"]), y[r["level"]]) for r in rows if r["channel"] == ch
               and str(r["median_diameter_mm"]) not in ("", "nan")]
        if pts:
            d, yy = zip(*sorted(pts, key=lambda p: p[1]))
            ax.plot(d, yy, "o-", color=col, label=ch, markersize=4)
    ax.set_yticks(range(len(levels)), levels)
    ax.invert_yaxis()
    ax.set_xlabel("median diameter (mm)")
    ax.set_title("calibre per level", y=1.0)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=2, frameon=False)
