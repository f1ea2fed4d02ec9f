"""Domain randomisation: a training image synthesised from a label map, so that the scanner's look carries no
information about where the veins are (the SynthSeg recipe, with vein-specific distractors).

Every structure of a label map (:mod:`.labelmaps`) gets a random intensity and texture; the veins get a random
contrast to the tissue around them, bright (enhanced), dark (flow voids) or barely different; vein-like
distractors (the source's own arteries and veins, random extra tubes, table-like plates, CSF flow spots) take the
veins' intensity more often than not; then the scanner: blur and resampling to a random resolution and slice
thickness, bias field, Gaussian or Rician noise, gamma, Gibbs ringing and motion ghosts, and a random window.
The image comes out in [0, 1], as the model's preprocessing makes of a real scan.

All ranges are data, in :class:`RandomisationRanges` (one place, as SynthSeg's generator keeps them); an image is
a pure function of its label map and the random generator passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .labelmaps import CSF_LABEL, DISTRACTOR


@dataclass(frozen=True)
class RandomisationRanges:
    """The randomisation ranges of :func:`randomise` (``(lo, hi)`` are uniform ranges; ``p_*`` probabilities).

    Intensities are in the model's [0, 1] units; lengths in mm.
    """

    p_source_contrast: float = 0.3                  # tissue means near the source's own contrast, else drawn anew
    mean_jitter: float = 0.08                       # sd of the jitter of a source-contrast mean
    tissue_sd: tuple[float, float] = (0.0, 0.06)    # within-structure sd
    texture_mm: tuple[float, float] = (0.0, 1.5)    # smoothing of the within-structure noise
    p_vein_bright: float = 0.6                      # enhanced veins
    p_vein_dark: float = 0.3                        # flow voids (else: intermediate, barely different)
    vein_contrast: tuple[float, float] = (0.1, 0.6)  # |vein - surrounding tissue| of bright and dark veins
    faint_contrast: tuple[float, float] = (0.04, 0.12)
    p_distractor_as_vein: float = 0.7               # the map's non-plexus vessels look like the veins
    extra_tubes: tuple[int, int] = (0, 4)           # random vessel-like tubes away from the plexus
    tube_radius_mm: tuple[float, float] = (0.5, 3.5)
    p_plate: float = 0.15                           # a table- or skin-like slab
    p_flow: float = 0.3                             # CSF flow spots in the dural sac
    p_low_resolution: float = 0.7
    resolution_mm: tuple[float, float] = (0.5, 3.0)  # in-plane voxel of the simulated acquisition
    slice_mm: tuple[float, float] = (0.5, 5.0)      # its slice thickness, along a random axis
    p_bias: float = 0.5
    bias_amplitude: tuple[float, float] = (0.0, 0.35)
    noise_sd: tuple[float, float] = (0.0, 0.08)
    p_rician: float = 0.4
    gamma_sd: float = 0.25                          # log-normal gamma
    p_ringing: float = 0.15
    ringing_keep: tuple[float, float] = (0.35, 0.8)  # fraction of k-space kept along one axis
    p_motion: float = 0.1
    ghost_amplitude: tuple[float, float] = (0.05, 0.25)
    p_window: float = 0.3                           # a CT-like window that saturates the brightest tissue

    def __post_init__(self):
        for name in ("tissue_sd", "texture_mm", "vein_contrast", "faint_contrast", "tube_radius_mm",
                     "resolution_mm", "slice_mm", "bias_amplitude", "noise_sd", "ringing_keep", "ghost_amplitude",
                     "extra_tubes"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"{name}: expected 0 <= lo <= hi, got {(lo, hi)}")
        if self.p_vein_bright + self.p_vein_dark > 1:
            raise ValueError("p_vein_bright + p_vein_dark: must not exceed 1")


RANGES = RandomisationRanges()


def _u(rng, lo_hi) -> float:
    return float(rng.uniform(*lo_hi))


@dataclass(frozen=True)
class Draw:
    """The random choices of one image (:func:`draw`), so they can be logged and tested; ``seed`` drives what
    depends on the label map itself (the mean per structure, textures, where the tubes run)."""

    seed: int
    source_contrast: bool
    texture_mm: float
    vein_mode: str                 # 'bright', 'dark' or 'faint'
    vein_contrast: float           # signed: vein - surrounding tissue, [0, 1] units
    distractor_as_vein: bool
    n_tubes: int
    plate: bool
    flow: bool
    acquisition_mm: tuple[float, float, float] | None   # simulated voxel (one axis the slice), None: none
    bias: float                    # amplitude of the log bias field (0: none)
    noise_sd: float
    rician: bool
    ringing_keep: float | None
    ghost: float | None
    gamma: float
    window_top: float | None


def draw(rng: np.random.Generator, ranges: RandomisationRanges = RANGES) -> Draw:
    """Draw the random choices of one image from ``ranges``."""
    r = ranges
    u = rng.random()
    mode = "bright" if u < r.p_vein_bright else "dark" if u < r.p_vein_bright + r.p_vein_dark else "faint"
    contrast = _u(rng, r.faint_contrast) * rng.choice([-1, 1]) if mode == "faint" else \
        _u(rng, r.vein_contrast) * (1 if mode == "bright" else -1)
    acq = None
    if rng.random() < r.p_low_resolution:
        a = np.full(3, _u(rng, r.resolution_mm))
        a[int(rng.integers(3))] = _u(rng, r.slice_mm)
        acq = tuple(float(x) for x in a)
    return Draw(
        seed=int(rng.integers(2**31 - 1)), source_contrast=bool(rng.random() < r.p_source_contrast),
        texture_mm=_u(rng, r.texture_mm), vein_mode=mode, vein_contrast=float(contrast),
        distractor_as_vein=bool(rng.random() < r.p_distractor_as_vein),
        n_tubes=int(rng.integers(r.extra_tubes[0], r.extra_tubes[1] + 1)), plate=bool(rng.random() < r.p_plate),
        flow=bool(rng.random() < r.p_flow), acquisition_mm=acq,
        bias=_u(rng, r.bias_amplitude) if rng.random() < r.p_bias else 0.0, noise_sd=_u(rng, r.noise_sd),
        rician=bool(rng.random() < r.p_rician),
        ringing_keep=_u(rng, r.ringing_keep) if rng.random() < r.p_ringing else None,
        ghost=_u(rng, r.ghost_amplitude) if rng.random() < r.p_motion else None,
        gamma=float(np.exp(rng.normal(0, r.gamma_sd))),
        window_top=float(rng.uniform(0.6, 0.95)) if rng.random() < r.p_window else None)


def _means(labels: np.ndarray, centres: dict[int, float], rng, source: bool, jitter: float) -> dict[int, float]:
    """A mean intensity per label present: the source's contrast jittered, or drawn anew in [0, 1]."""
    present = [int(v) for v in np.unique(labels)]
    if source:
        return {v: float(np.clip(centres.get(v, rng.random()) + rng.normal(0, jitter), 0, 1)) for v in present}
    return {v: float(rng.random()) for v in present}


def _render_structures(labels, means, spacing, rng, r, tex: float) -> np.ndarray:
    lut = np.zeros(int(labels.max()) + 1, np.float32)
    sds = np.zeros_like(lut)
    for v, m in means.items():
        lut[v], sds[v] = m, _u(rng, r.tissue_sd)
    noise = rng.standard_normal(labels.shape).astype(np.float32)
    if tex > 0.2:
        noise = ndimage.gaussian_filter(noise, tex / np.asarray(spacing))
        noise /= max(float(noise.std()), 1e-6)
    return lut[labels] + sds[labels] * noise


def _vein_value(img: np.ndarray, to_plexus: np.ndarray, contrast: float) -> float:
    """The veins' intensity: ``contrast`` to the mean of the tissue within 2 mm of them (``to_plexus``: the
    distance to the nearest vein voxel, mm)."""
    around = img[(to_plexus > 0) & (to_plexus <= 2.0)]
    ref = float(around.mean()) if around.size else float(img.mean())
    return max(ref + contrast, 0.0)


def _tubes(shape, spacing, rng, r, n: int) -> np.ndarray:
    """``n`` random gently bent tubes across the patch, as one partial-volume fraction (one distance transform)."""
    ext = np.asarray(shape) * spacing
    seeds = np.zeros(shape, bool)
    radius = np.zeros(shape, np.float32)
    for _ in range(n):
        p0, p2 = rng.uniform(0, 1, 3) * ext, rng.uniform(0, 1, 3) * ext
        p1 = (p0 + p2) / 2 + rng.normal(0, 0.15, 3) * ext
        t = np.linspace(0, 1, int(np.linalg.norm(p2 - p0) / (0.3 * spacing.min())) + 2)[:, None]
        pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2
        ijk = np.floor(pts / spacing).astype(int)
        ijk = ijk[np.all((ijk >= 0) & (ijk < shape), axis=1)]
        seeds[tuple(ijk.T)] = True
        radius[tuple(ijk.T)] = _u(rng, r.tube_radius_mm)
    if not seeds.any():
        return np.zeros(shape, np.float32)
    d, idx = ndimage.distance_transform_edt(~seeds, sampling=spacing, return_indices=True)
    return np.clip(radius[tuple(idx)] - d + 0.5, 0, 1).astype(np.float32)


def _plate(shape, spacing, rng) -> np.ndarray:
    """A flat slab (a scanner table, a skin fold) at a random place and tilt, 2-8 mm thick."""
    n = rng.normal(size=3)
    n /= np.linalg.norm(n)
    grid = np.stack(np.meshgrid(*[(np.arange(k) + 0.5) * s for k, s in zip(shape, spacing)], indexing="ij"), -1)
    dist = grid @ n - rng.uniform(0, 1) * float(np.asarray(shape) @ (np.asarray(spacing) * np.abs(n)))
    return np.clip(rng.uniform(1, 4) - np.abs(dist) + 0.5, 0, 1).astype(np.float32)


def _flow_spots(labels, spacing, rng) -> np.ndarray:
    """A few blurred spots inside the CSF (pulsation artefacts: dark or bright)."""
    csf = np.argwhere(labels == CSF_LABEL)
    out = np.zeros(labels.shape, np.float32)
    for c in csf[rng.integers(len(csf), size=min(len(csf), int(rng.integers(1, 5))))] if len(csf) else []:
        out[tuple(c)] = 1.0
    if out.any():
        out = ndimage.gaussian_filter(out, rng.uniform(0.8, 2.0) / np.asarray(spacing))
        out = np.clip(out / out.max(), 0, 1) * (labels == CSF_LABEL)
    return out


def _resolution(img, spacing, acquisition) -> np.ndarray:
    """Blur and resample to the ``acquisition`` voxel (mm) and back."""
    target = np.maximum(np.asarray(acquisition), spacing)
    sigma = 0.42 * np.sqrt(np.maximum(target ** 2 - np.asarray(spacing) ** 2, 0)) / spacing
    img = ndimage.gaussian_filter(img, sigma, mode="nearest")
    zoom = np.asarray(spacing) / target
    if np.all(zoom > 0.95):
        return img
    low = ndimage.zoom(img, zoom, order=1, mode="nearest")
    back = ndimage.zoom(low, np.asarray(img.shape) / np.asarray(low.shape), order=1, mode="nearest")
    out = np.empty_like(img)
    sl = tuple(slice(0, min(a, b)) for a, b in zip(img.shape, back.shape))
    out[...] = np.pad(back[sl], [(0, a - b.stop) for a, b in zip(img.shape, sl)], mode="edge")
    return out


def _bias(shape, rng, amplitude: float) -> np.ndarray:
    coarse = rng.normal(0, 1, size=(4, 4, 4)).astype(np.float32)
    field = ndimage.zoom(coarse, np.asarray(shape) / 4, order=1, mode="nearest")[: shape[0], : shape[1], : shape[2]]
    field = np.pad(field, [(0, s - f) for s, f in zip(shape, field.shape)], mode="edge")
    return np.exp(amplitude * field / max(float(np.abs(field).max()), 1e-6))


def _ringing(img, rng, keep: float) -> np.ndarray:
    """Gibbs ringing: k-space cut to ``keep`` of its extent along a random axis."""
    ax = int(rng.integers(3))
    k = np.fft.fftshift(np.fft.fft(img, axis=ax), axes=ax)
    n = img.shape[ax]
    half = max(2, int(n * keep / 2))
    mask = np.zeros(n, bool)
    mask[n // 2 - half: n // 2 + half] = True
    shape = [1, 1, 1]
    shape[ax] = n
    k = k * mask.reshape(shape)
    return np.real(np.fft.ifft(np.fft.ifftshift(k, axes=ax), axis=ax)).astype(np.float32)


def _ghosts(img, rng, amplitude: float) -> np.ndarray:
    """Motion ghosts: a shifted, attenuated copy along a random phase-encoding axis."""
    ax = int(rng.integers(3))
    shift = int(img.shape[ax] // rng.integers(2, 5))
    return (img + amplitude * np.roll(img, shift, axis=ax)) / (1 + amplitude)


def randomise(labels: np.ndarray, fraction: np.ndarray, *, spacing, centres: dict[int, float],
              rng: np.random.Generator, ranges: RandomisationRanges = RANGES) -> np.ndarray:
    """A random image of a label map: :func:`render` of :func:`draw`.

    Parameters
    ----------
    labels : (X, Y, Z) uint8 array
        Structure labels (:mod:`.labelmaps`); ``PLEXUS`` marks the veins.
    fraction : (X, Y, Z) float array
        The fraction of each voxel inside a vein, in [0, 1] (partial volume of the truth).
    spacing : (3,) float, mm
        Voxel size of the label map.
    centres : dict
        Label -> its intensity in the source's own contrast, in [0, 1] (used with ``p_source_contrast``).
    rng : numpy.random.Generator
        The only source of randomness: the same generator state gives the same image.

    Returns
    -------
    (X, Y, Z) float32 array in [0, 1]
    """
    return render(labels, fraction, spacing=spacing, centres=centres, choice=draw(rng, ranges), ranges=ranges)


def render(labels: np.ndarray, fraction: np.ndarray, *, spacing, centres: dict[int, float], choice: Draw,
           ranges: RandomisationRanges = RANGES) -> np.ndarray:
    """The image of a label map under the random choices ``choice`` (arguments as :func:`randomise`)."""
    if labels.shape != fraction.shape:
        raise ValueError(f"fraction: shape {fraction.shape} differs from the labels' {labels.shape}")
    spacing = np.asarray(spacing, float)
    if spacing.shape != (3,) or np.any(spacing <= 0):
        raise ValueError(f"spacing: expected three positive voxel sizes (mm), got {spacing}")
    r, c = ranges, choice
    rng = np.random.default_rng(c.seed)
    labels = labels.astype(np.int32)
    plexus = fraction >= 0.5
    means = _means(labels, centres, rng, c.source_contrast, r.mean_jitter)
    img = _render_structures(labels, means, spacing, rng, r, c.texture_mm)
    to_plexus = ndimage.distance_transform_edt(~plexus, sampling=spacing) if plexus.any() else np.full(plexus.shape, np.inf)
    vein = _vein_value(img, to_plexus, c.vein_contrast)
    keep_out = to_plexus < 4.0
    if (labels == DISTRACTOR).any():  # the source's own arteries and veins
        img[labels == DISTRACTOR] = vein * rng.uniform(0.85, 1.15) if c.distractor_as_vein else rng.random()
    if c.n_tubes:
        f = _tubes(labels.shape, spacing, rng, r, c.n_tubes)
        f[keep_out] = 0
        value = vein * rng.uniform(0.8, 1.2) if c.distractor_as_vein else rng.random()
        img += f * (value - img)
    if c.plate:
        f = _plate(labels.shape, spacing, rng)
        f[keep_out] = 0
        img += f * (rng.uniform(0.5, 1.2) - img)
    if c.flow:
        img += _flow_spots(labels, spacing, rng) * (rng.uniform(0, 1) - img)
    img += fraction.astype(np.float32) * (vein - img)
    if c.acquisition_mm is not None:
        img = _resolution(img, spacing, c.acquisition_mm)
    if c.bias > 0:
        img = img * _bias(img.shape, rng, c.bias)
    if c.rician:
        img = np.sqrt((img + c.noise_sd * rng.standard_normal(img.shape)) ** 2
                      + (c.noise_sd * rng.standard_normal(img.shape)) ** 2)
    else:
        img = img + c.noise_sd * rng.standard_normal(img.shape)
    if c.ringing_keep is not None:
        img = _ringing(img.astype(np.float32), rng, c.ringing_keep)
    if c.ghost is not None:
        img = _ghosts(img, rng, c.ghost)
    lo, hi = np.percentile(img, [0.5, 99.8])
    img = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1) ** c.gamma
    if c.window_top is not None:  # saturate the brightest tissue as a CT window does
        img = np.clip(img / c.window_top, 0, 1)
    return img.astype(np.float32)
