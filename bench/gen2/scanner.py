"""What the scanner makes of the tissue: values per tissue, blur, texture, noise, bias (all drawn per case).

CT: HU per tissue drawn from wide literature ranges (venous phase: plexus 110-250 HU); reconstruction blur
(a Gaussian point spread in the acquisition plane and a slice sensitivity profile across it); noise shaped to a
filtered-back-projection noise power spectrum, ``NPS(f) ~ f exp(-f^2 / f0^2)`` in the acquisition plane, slightly
correlated across slices; a band-passed trabecular texture in cancellous bone.

MR: per tissue T1, T2 and proton density drawn, signal from the spin-echo equation
``PD (1 - exp(-TR/T1)) exp(-TE/T2)`` with TR/TE of the weighting drawn: T1 with gadolinium (veins bright, fat
saturated or not) or T2 (veins a partial flow void, arteries a full one); a bias field (a random quadratic
polynomial of position times a posterior spine-coil fall-off); Gaussian point spread and slice profile;
non-central chi noise of a sum-of-squares over N coils (N = 1: Rician).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .ranges import Gen2Ranges, uniform


def ct_values(rng: np.random.Generator, R: Gen2Ranges, region: str) -> dict[str, float]:
    """HU of every tissue, drawn."""
    v = {k: uniform(rng, r) for k, r in R.ct_hu.items()}
    v["epidural_fat_share"] = uniform(rng, R.epidural_fat[region])
    return v


def mr_values(rng: np.random.Generator, R: Gen2Ranges, region: str) -> dict[str, float]:
    """Signal (before scaling) of every tissue, and the sequence drawn."""
    wt = str(rng.choice(R.mr_weightings))
    (tr0, tr1), (te0, te1) = R.mr_tr_te[wt]
    TR, TE = rng.uniform(tr0, tr1), rng.uniform(te0, te1)
    par = {k: [uniform(rng, r) for r in rr] for k, rr in R.mr_tissue.items()}
    sig = lambda t1, t2, pd: pd * (1 - np.exp(-TR / t1)) * np.exp(-TE / t2)
    v = {k: float(sig(*p)) for k, p in par.items()}
    b1, b2, bpd = par["blood"]
    fat_sat = wt == "T1c" and rng.random() < R.mr_fat_sat_probability
    fsf = uniform(rng, R.mr_fat_sat_factor)
    vflow, aflow = uniform(rng, R.mr_vein_flow_factor), uniform(rng, R.mr_artery_flow_factor)
    t1c, t1a = uniform(rng, R.mr_contrast_t1_ms), uniform(rng, R.mr_arterial_t1_ms)
    if wt == "T1c":
        v["plexus"] = float(sig(t1c, b2, bpd))
        v["vein"] = float(sig(t1c * rng.uniform(1.0, 1.4), b2, bpd))
        v["artery"] = float(sig(t1a, b2, bpd) * rng.uniform(0.6, 1.1))
    else:
        v["plexus"] = float(sig(b1, b2, bpd) * vflow)
        v["vein"] = float(sig(b1, b2, bpd) * vflow * rng.uniform(0.3, 0.8))
        v["artery"] = float(sig(b1, b2, bpd) * aflow)
    if fat_sat:
        v["fat"] *= fsf
        v["cancellous"] *= 0.6 + 0.4 * fsf  # marrow keeps its water signal (and enhances a little)
    v["epidural_fat_share"] = uniform(rng, R.epidural_fat[region])
    v.update(TR_ms=float(TR), TE_ms=float(TE), fat_sat=float(fat_sat))
    v["weighting"] = wt
    return v


def _sigma(fwhm_mm, spacing) -> np.ndarray:
    return np.asarray(fwhm_mm, float) / 2.3548 / np.asarray(spacing, float)


def _blur(img: np.ndarray, spacing, slice_axis: int, psf_mm: float, slice_fwhm_mm: float) -> np.ndarray:
    """Point spread ``psf_mm`` in the acquisition plane, profile ``slice_fwhm_mm`` across it, beyond the one
    voxel of averaging the image already has."""
    sp = np.asarray(spacing, float)
    fwhm = np.full(3, psf_mm)
    fwhm[slice_axis] = slice_fwhm_mm
    extra = np.sqrt(np.maximum(fwhm ** 2 - sp ** 2 * 0.5, 0.0))
    return ndimage.gaussian_filter(img, _sigma(extra, sp), mode="nearest", truncate=3.0)


def texture(shape, spacing, rng: np.random.Generator, fine_mm: float = 0.7, coarse_mm: float = 2.5) -> np.ndarray:
    """Band-passed Gaussian noise of unit sd (trabecular / marrow texture)."""
    w = rng.standard_normal(shape).astype(np.float32)
    t = ndimage.gaussian_filter(w, _sigma(fine_mm, spacing)) - ndimage.gaussian_filter(w, _sigma(coarse_mm, spacing))
    return t / max(float(t.std()), 1e-6)


def ct_noise(shape, spacing, slice_axis: int, peak: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-sd noise with a ramp-times-apodisation power spectrum in the acquisition plane."""
    w = rng.standard_normal(shape).astype(np.float32)
    axes = [a for a in range(3) if a != slice_axis]
    F = np.fft.rfftn(w, axes=axes)
    f0 = np.fft.fftfreq(shape[axes[0]], spacing[axes[0]])
    f1 = np.fft.rfftfreq(shape[axes[1]], spacing[axes[1]])
    fr = np.hypot(f0[:, None], f1[None, :])
    amp = np.sqrt(fr * np.exp(-(fr / (peak * np.sqrt(2))) ** 2)).astype(np.float32)
    sh = [1, 1, 1]
    sh[axes[0]], sh[axes[1]] = amp.shape
    n = np.fft.irfftn(F * amp.reshape(sh), s=[shape[a] for a in axes], axes=axes).astype(np.float32)
    n = ndimage.gaussian_filter1d(n, 0.4, axis=slice_axis)
    return n / max(float(n.std()), 1e-6)


def ct_finish(img, cancellous, spacing, slice_axis, rng, R: Gen2Ranges) -> tuple[np.ndarray, dict]:
    """Texture, blur, noise; int16 HU."""
    tex = uniform(rng, R.ct_trabecular_hu)
    img = img + tex * texture(img.shape, spacing, rng) * cancellous
    psf, prof = uniform(rng, R.ct_psf_fwhm_mm), uniform(rng, R.ct_slice_profile)
    img = _blur(img, spacing, slice_axis, psf, prof * spacing[slice_axis])
    sd, peak = uniform(rng, R.ct_noise_hu), uniform(rng, R.ct_nps_peak)
    img = img + sd * ct_noise(img.shape, spacing, slice_axis, peak, rng)
    info = {"trabecular_hu": tex, "psf_fwhm_mm": psf, "slice_profile": prof, "noise_hu": sd, "nps_peak_per_mm": peak}
    return np.clip(np.rint(img), -1024, 3071).astype(np.int16), info


def mr_finish(img, cancellous, axes, spacing, slice_axis, ref: float, rng, R: Gen2Ranges) -> tuple[np.ndarray, dict]:
    """Marrow texture, bias field, blur, multi-coil noise; int16 arbitrary units."""
    tex = uniform(rng, R.mr_marrow_texture)
    img = img * (1.0 + tex * texture(img.shape, spacing, rng) * cancellous)
    c = [(a - a.mean()) / max(np.ptp(a), 1.0) * 2 for a in axes]
    strength = uniform(rng, R.mr_bias_strength)
    coef = rng.normal(0, 1, 9)
    X, Y, Z = c[0][:, None, None], c[1][None, :, None], c[2][None, None, :]
    poly = (coef[0] * X + coef[1] * Y + coef[2] * Z + coef[3] * X * Y + coef[4] * Y * Z + coef[5] * X * Z
            + coef[6] * (X ** 2 - 1 / 3) + coef[7] * (Y ** 2 - 1 / 3) + coef[8] * (Z ** 2 - 1 / 3))
    fall = uniform(rng, R.mr_coil_falloff_mm)
    coil = 0.55 + 0.45 * np.exp(-(axes[1] - axes[1].min()) / fall)[None, :, None]
    bias = (np.exp(strength * poly / 2.0) * coil).astype(np.float32)
    img = img * bias
    psf, prof = uniform(rng, R.mr_psf_fwhm) * min(spacing), uniform(rng, R.mr_slice_profile) * spacing[slice_axis]
    img = _blur(img, spacing, slice_axis, psf, prof)
    coils = int(rng.integers(R.mr_coils[0], R.mr_coils[1] + 1))
    snr = uniform(rng, R.mr_snr)
    sigma = ref * float(np.median(bias)) / snr
    z = rng.standard_normal(img.shape).astype(np.float32)
    chi = rng.chisquare(2 * coils - 1, img.shape).astype(np.float32)
    mag = np.sqrt((img + sigma * z) ** 2 + sigma ** 2 * chi)
    peak = uniform(rng, R.mr_peak)
    mag *= peak / max(float(np.percentile(mag[::2, ::2, ::2], 99.5)), 1e-6)
    info = {"marrow_texture": tex, "bias_strength": strength, "coil_falloff_mm": fall, "psf_fwhm_mm": float(psf),
            "slice_fwhm_mm": float(prof), "coils": coils, "snr": snr, "peak": peak}
    return np.clip(np.rint(mag), 0, 32767).astype(np.int16), info
