"""Every randomisation range of the gen2 phantoms, as data, in one place (:data:`GEN2_RANGES`).

A range ``(lo, hi)`` is drawn uniformly per case unless its comment says otherwise. Lengths are mm, angles
degrees, CT values HU, MR relaxation times ms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType


def _frozen(d: dict) -> MappingProxyType:
    return MappingProxyType(d)


@dataclass(frozen=True)
class Gen2Ranges:
    """The ranges every gen2 draw comes from (see the module docstring for units)."""

    # scanner grid
    inplane_mm: tuple = (0.6, 1.5)
    slice_mm: tuple = (0.8, 3.0)
    orientations: tuple = ("RAS", "LPS", "PIR", "PSR", "LAS")
    max_long_axis_voxels: int = 320          # levels are dropped until the spine fits
    # spine shape
    size_scale: tuple = (0.88, 1.12)         # one factor for every dimension of the case
    level_jitter: float = 0.04               # sd of the per-vertebra relative size jitter (normal)
    tilt_deg: tuple = (-8.0, 8.0)            # sagittal tilt of the whole span
    curve_deg: MappingProxyType = field(default_factory=lambda: _frozen(
        {"cervical": (10.0, 40.0), "thoracic": (15.0, 45.0), "lumbar": (30.0, 60.0)}))  # lordosis / kyphosis
    sacral_bend_deg: tuple = (8.0, 20.0)     # extra bend below the L5/S1 disc
    scoliosis_mm: tuple = (0.0, 4.0)         # amplitude of a lateral sine
    scoliosis_wavelength_mm: tuple = (250.0, 600.0)
    sac_fraction: tuple = (0.62, 0.78)       # dural sac radii / canal radii
    fov_front_extra_mm: tuple = (12.0, 28.0)  # beyond the body front (or aorta)
    fov_back_extra_mm: tuple = (4.0, 16.0)    # beyond the spinous tips
    fov_lateral_mm: tuple = (38.0, 55.0)      # half width from the canal centre
    subcut_fat_mm: tuple = (3.0, 12.0)        # posterior soft tissue beyond the spinous tips before fat
    intermuscular_fat: tuple = (0.05, 0.2)    # fraction of the paraspinal muscle that is fat
    epidural_fat: MappingProxyType = field(default_factory=lambda: _frozen(
        {"cervical": (0.1, 0.4), "thoracic": (0.4, 0.8), "lumbar": (0.6, 0.95)}))  # fat share of the epidural space
    # plexus (diameters, mm)
    anterior_diameter_mm: tuple = (1.5, 3.2)
    posterior_ratio: tuple = (0.6, 0.95)     # posterior / anterior diameter
    side_asymmetry: tuple = (0.85, 1.15)
    level_sigma: float = 0.18                 # sd of the log per-level calibre factor
    engorged_probability: float = 0.15        # per level
    engorged_factor: tuple = (1.4, 2.0)
    diameter_limits_mm: tuple = (1.0, 5.0)    # engorged levels up to engorged_max_mm
    engorged_max_mm: float = 6.0
    anterior_angle_deg: tuple = (28.0, 45.0)  # from the anterior midline
    posterior_angle_deg: tuple = (135.0, 155.0)
    wall_gap_mm: tuple = (0.4, 0.8)           # vein surface to canal wall
    ring_ratio: tuple = (0.4, 0.7)            # ring / longitudinal diameter at that level
    basivertebral_diameter_mm: tuple = (1.0, 2.0)
    basivertebral_depth: tuple = (0.3, 0.5)   # share of the body depth
    intervertebral_diameter_mm: tuple = (1.0, 2.2)
    # distractors (radii, mm)
    aorta_radius_mm: tuple = (8.0, 13.0)
    ivc_radius_mm: tuple = (7.0, 11.0)
    azygos_radius_mm: tuple = (2.0, 3.8)
    segmental_radius_mm: tuple = (0.7, 1.4)
    vertebral_artery_radius_mm: tuple = (1.5, 2.4)
    carotid_radius_mm: tuple = (2.8, 4.0)
    jugular_radius_mm: tuple = (4.0, 7.0)
    # CT
    ct_hu: MappingProxyType = field(default_factory=lambda: _frozen({
        "fat": (-120.0, -80.0), "muscle": (35.0, 60.0), "organ": (25.0, 60.0), "lung": (-900.0, -750.0),
        "csf": (0.0, 15.0), "cord": (25.0, 42.0), "root": (28.0, 45.0), "annulus": (70.0, 110.0),
        "nucleus": (55.0, 90.0), "cancellous": (120.0, 350.0), "cortical": (600.0, 1300.0),
        "plexus": (110.0, 250.0), "vein": (110.0, 220.0), "artery": (130.0, 300.0), "epidural_soft": (30.0, 60.0)}))
    ct_noise_hu: tuple = (8.0, 35.0)          # noise sd
    ct_nps_peak: tuple = (0.15, 0.4)          # noise power peak, cycles/mm
    ct_psf_fwhm_mm: tuple = (0.5, 1.1)        # in-plane reconstruction blur
    ct_slice_profile: tuple = (1.0, 1.4)      # slice sensitivity FWHM / slice spacing
    ct_trabecular_hu: tuple = (25.0, 70.0)    # sd of the cancellous texture
    # MR: (T1 ms, T2 ms, proton density) ranges per tissue
    mr_tissue: MappingProxyType = field(default_factory=lambda: _frozen({
        "fat": ((250, 350), (70, 110), (0.9, 1.0)), "muscle": ((850, 1050), (30, 45), (0.7, 0.8)),
        "organ": ((600, 1100), (40, 90), (0.7, 0.9)), "lung": ((1200, 1400), (20, 40), (0.03, 0.08)),
        "csf": ((3000, 4500), (1500, 2500), (0.95, 1.0)), "cord": ((700, 900), (70, 90), (0.65, 0.75)),
        "root": ((900, 1100), (60, 90), (0.6, 0.75)), "annulus": ((900, 1100), (35, 60), (0.5, 0.65)),
        "nucleus": ((1000, 1300), (80, 140), (0.75, 0.9)), "cancellous": ((400, 650), (50, 80), (0.7, 0.9)),
        "cortical": ((900, 1100), (1, 3), (0.03, 0.08)), "blood": ((1300, 1600), (150, 250), (0.8, 0.9)),
        "epidural_soft": ((800, 1100), (50, 80), (0.6, 0.8))}))
    mr_weightings: tuple = ("T1c", "T2")      # drawn with equal odds
    mr_tr_te: MappingProxyType = field(default_factory=lambda: _frozen(
        {"T1c": ((400.0, 700.0), (8.0, 15.0)), "T2": ((2500.0, 4500.0), (80.0, 120.0))}))
    mr_contrast_t1_ms: tuple = (180.0, 350.0)  # blood T1 with gadolinium (T1c)
    mr_arterial_t1_ms: tuple = (250.0, 600.0)
    mr_fat_sat_probability: float = 0.5        # T1c only
    mr_fat_sat_factor: tuple = (0.08, 0.25)
    mr_vein_flow_factor: tuple = (0.15, 0.7)   # T2: partial flow void of the slow epidural veins
    mr_artery_flow_factor: tuple = (0.03, 0.2)  # T2: arterial flow void
    mr_coils: tuple = (1, 8)                   # integers; 1 = Rician
    mr_snr: tuple = (12.0, 40.0)               # muscle-to-noise (T2: cord-to-noise)
    mr_bias_strength: tuple = (0.05, 0.3)      # sd of the log bias field (polynomial part)
    mr_coil_falloff_mm: tuple = (60.0, 160.0)  # posterior spine-coil sensitivity decay length
    mr_psf_fwhm: tuple = (0.8, 1.3)            # in-plane FWHM / in-plane spacing
    mr_slice_profile: tuple = (0.9, 1.3)       # slice FWHM / slice spacing
    mr_peak: tuple = (800.0, 3000.0)           # 99.5th percentile of the stored image
    mr_marrow_texture: tuple = (0.04, 0.12)    # relative sd of the marrow texture


GEN2_RANGES = Gen2Ranges()


def uniform(rng, pair) -> float:
    """One uniform draw in ``pair = (lo, hi)``."""
    return float(rng.uniform(pair[0], pair[1]))
