"""Spine phantoms with exact ground truth: CT or MR image, plexus mask, vertebra map, true centrelines.

A case is drawn from a seed (deterministic): per-level anatomy (:mod:`.anatomy`), the plexus and
distractor vessels (:mod:`.vessels`), tissue intensities for contrast-enhanced venous-phase CT (HU) or
fat-suppressed contrast-enhanced T1 MR, the scanner's blur and noise (Gaussian for CT; bias field and
Rician noise for MR). The volume is rendered on an axis-aligned RAS grid, then stored in the orientation
asked for (RAS, LPS, sagittal PIR/PSR...), which changes the array and affine but not a single world point.

Level rule of the ground truth: a point takes the level of the vertebra whose body centre is nearest along
the spine axis (``s``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..core.levels import level_rank
from ..core.volume import Volume, reorient
from .anatomy import SpineAxis, Vertebra, level_span, make_vertebrae, superellipse
from .vessels import CHANNELS, Tube, build_plexus, canal_profile, draw_diameters, dura_geometry, render_tubes

# tissue codes of the internal label image
AIR, FAT, SOFT, MUSCLE, CSF, CORD, DISC, CANC, CORT, POST, EPIFAT, ROOT = range(12)
VESSEL = 12  # an enhanced vessel that is not plexus (aorta, IVC, segmental, vertebral artery), in ``tissues`` only
CT_HU = {AIR: -1000, FAT: -100, SOFT: 45, MUSCLE: 55, CSF: 8, CORD: 35, DISC: 85, CANC: 230, CORT: 850,
         POST: 450, EPIFAT: -95, ROOT: 30}
MR_SI = {AIR: 0, FAT: 60, SOFT: 260, MUSCLE: 220, CSF: 70, CORD: 320, DISC: 210, CANC: 230, CORT: 30,
         POST: 140, EPIFAT: 70, ROOT: 290}


@dataclass
class PhantomConfig:
    """Everything that defines a phantom; ``seed`` draws the rest.

    Parameters
    ----------
    modality : {'CT', 'MR'}
    levels : (str, str)
        Cranial and caudal vertebra in view, e.g. ``('L1', 'S1')``.
    spacing : (3,) float
        Voxel size (mm) along R, A, S before reorientation.
    orientation : str
        Storage axcodes, e.g. ``'RAS'``, ``'LPS'``, ``'PIR'`` (sagittal slices).
    fov_lr, fov_back, fov_front : float
        Field of view (mm) around the canal: half-width, behind and in front of the canal centre.
    """

    modality: str = "CT"
    levels: tuple[str, str] = ("L1", "S1")
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    orientation: str = "RAS"
    seed: int = 0
    lumbar_count: int = 5
    curvature: float = 1.0
    p_engorged: float = 0.15
    fov_lr: float = 55.0
    fov_back: float = 55.0
    fov_front: float = 70.0
    noise: float | None = None       # CT: HU sd; MR: Rician sd; None draws one
    blur_mm: float | None = None     # Gaussian PSF sd in mm; None draws one
    render_image: bool = True        # False: masks and truth only (fast, for measurement benchmarks)
    sacrum_mm: float = 0.0           # with S1 in the span: this much fused sacrum (S2...) drawn and in view below S1
    cranial_mm: float = 6.0          # field of view above the top vertebra (soft tissue; the skull is not drawn)

    def __post_init__(self):
        if self.modality not in ("CT", "MR"):
            raise ValueError(f"modality: expected 'CT' or 'MR', got {self.modality!r}")
        if len(self.spacing) != 3 or min(self.spacing) <= 0:
            raise ValueError(f"spacing: expected three positive values, got {self.spacing}")
        try:
            nib.orientations.axcodes2ornt(tuple(self.orientation))
        except Exception:
            raise ValueError(f"orientation: {self.orientation!r} is not an axcode string like 'RAS' or 'PIR'") from None
        if len(set(self.orientation.replace("L", "R").replace("P", "A").replace("I", "S"))) != 3:
            raise ValueError(f"orientation: {self.orientation!r} must name each of R/L, A/P, S/I once")
        level_span(*self.levels, lumbar_count=self.lumbar_count)
        if not 0 <= self.sacrum_mm <= 120:
            raise ValueError(f"sacrum_mm: expected 0 to 120 mm, got {self.sacrum_mm}")
        if not 0 <= self.cranial_mm <= 120:
            raise ValueError(f"cranial_mm: expected 0 to 120 mm, got {self.cranial_mm}")


@dataclass
class Phantom:
    """A generated case. Volumes share one grid; ``truth_calibre`` is ``[(level, channel, median_d, n)]``."""

    config: PhantomConfig
    image: Volume | None
    mask: Volume
    fraction: Volume
    vertebrae: Volume
    tubes: list[Tube]
    verts: list[Vertebra]
    axis: SpineAxis
    body_centres: dict[str, list[float]]
    truth_calibre: list[tuple[str, str, float, int]] = field(default_factory=list)
    info: dict = field(default_factory=dict)          # generator-specific facts written to phantom.json
    tissues: Volume | None = None                     # the tissue codes (AIR..ROOT, VESSEL) the image was drawn from


def _grid(axis: SpineAxis, verts: list[Vertebra], cfg: PhantomConfig):
    s0 = verts[0].s_centre - verts[0].height / 2 - cfg.cranial_mm
    s1 = verts[-1].s_centre + verts[-1].height / 2 + (cfg.sacrum_mm if _has_sacrum(verts, cfg) else 6)
    ss = np.linspace(s0, s1, 60)
    corners = [axis.to_world(u, v, ss) for u in (-cfg.fov_lr, cfg.fov_lr) for v in (-cfg.fov_back, cfg.fov_front)]
    pts = np.concatenate(corners)
    lo, hi = pts.min(0), pts.max(0)
    sp = np.asarray(cfg.spacing, dtype=np.float64)
    shape = np.ceil((hi - lo) / sp).astype(int) + 1
    aff = np.diag([*sp, 1.0])
    aff[:3, 3] = lo
    return tuple(int(x) for x in shape), aff


def _has_sacrum(verts: list[Vertebra], cfg: PhantomConfig) -> bool:
    return verts[-1].name == "S1" and cfg.sacrum_mm > 0


def _tissues(u, v, s, verts: list[Vertebra], diam, rng, sacrum_mm: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Tissue code and VerSe vertebra id per voxel (flat arrays); ``sacrum_mm`` of fused sacrum below S1."""
    n = u.shape[0]
    tis = np.full(n, AIR, dtype=np.uint8)
    vid = np.zeros(n, dtype=np.uint8)
    sc = np.array([x.s_centre for x in verts])
    bounds = np.array([x.s_centre + x.height / 2 + x.disc_below / 2 for x in verts[:-1]])
    idx = np.searchsorted(bounds, s)
    get = lambda attr: np.array([getattr(x, attr) for x in verts], dtype=np.float32)[idx]  # noqa: E731
    H, W, D, disc = get("height"), get("width"), get("depth"), get("disc_below")
    # s-dependent profiles on a 0.25 mm table, gathered per voxel
    s_tab = np.arange(float(s.min()) - 1, float(s.max()) + 1, 0.25)
    k_tab = np.clip(np.rint((s - s_tab[0]) / 0.25).astype(np.int64), 0, len(s_tab) - 1)
    ap_t, cw_t = canal_profile(s_tab, verts)
    ap, cw = ap_t.astype(np.float32)[k_tab], cw_t.astype(np.float32)[k_tab]
    ds = s - sc[idx]
    # body outline: neck / trunk ellipse in front of the spine
    region = np.array([x.name[0] for x in verts])[idx]
    half_u = np.where(region == "C", 55.0, 150.0).astype(np.float32)
    half_v = np.where(region == "C", 55.0, 115.0).astype(np.float32)
    vc = (ap / 2 + D) * 0.5 + np.where(region == "C", 15.0, 45.0)
    body = superellipse(u, v - vc, half_u, half_v) <= 1
    tis[body] = FAT
    inner = superellipse(u, v - vc, half_u - 12, half_v - 12) <= 1
    tis[inner] = SOFT
    muscle = inner & (v < -ap / 2) & (np.abs(u) < cw / 2 + 45)
    tis[muscle] = MUSCLE
    first, last = verts[0].s_centre - verts[0].height / 2, verts[-1].s_centre + verts[-1].height / 2
    in_span = (s >= first - 3) & (s <= last + 3)
    # vertebral body: cortical shell around cancellous core; discs between bodies
    vbc = ap / 2 + D / 2
    in_body_s = np.abs(ds) <= H / 2
    body_se = superellipse(u, v - vbc, W / 2, D / 2, 2.5)
    core_se = superellipse(u, v - vbc, W / 2 - 1.2, D / 2 - 1.2, 2.5)
    atlas = (idx == 0) & (verts[0].name == "C1")   # C1 has no body (see _atlas_axis)
    vb = in_body_s & (body_se <= 1) & in_span & ~atlas
    tis[vb] = CORT
    vid[vb] = np.array([x.verse_id for x in verts], dtype=np.uint8)[idx][vb]
    tis[vb & (core_se <= 1) & (np.abs(ds) <= H / 2 - 1.0)] = CANC
    in_disc = ~in_body_s & (body_se <= 1) & (s > first) & (s < last)
    tis[in_disc] = DISC
    if sacrum_mm > 0 and verts[-1].name == "S1":
        _sacrum(tis, vid, u, v, s, verts[-1], ap, cw, sacrum_mm + 20)
    if verts[0].name == "C1" and len(verts) > 1:
        _atlas_axis(tis, vid, u, v, s, verts[0], verts[1], ap, cw)
    # posterior arch: pedicles (upper part of the vertebra), laminae, spinous and transverse processes
    pw = np.clip(cw * 0.3, 4.5, 9.0)
    ped = (np.abs(u) >= cw / 2 - 1) & (np.abs(u) <= cw / 2 + pw) & (v > -ap / 2) & (v < ap / 2 + 2) & \
        (ds > -0.45 * H) & (ds < 0.1 * H)
    lam = (np.abs(u) <= cw / 2 + pw) & (v <= -ap * 0.3) & (v >= -ap / 2 - 6) & (ds > -0.3 * H) & (ds < 0.5 * H + 0.6 * disc)
    spin = (np.abs(u) <= 3.0) & (v < -ap / 2 - 3) & (v > -ap / 2 - 6 - np.clip(H * 1.4, 18, 40)) & \
        (ds > -0.25 * H + 0.2 * (v + ap / 2)) & (ds < 0.45 * H - 0.3 * (v + ap / 2))
    trans = (np.abs(u) > cw / 2) & (np.abs(u) <= cw / 2 + pw + np.clip(W * 0.45, 10, 25)) & \
        (np.abs(v + ap * 0.15) < 4.5) & (np.abs(ds + 0.15 * H) < np.clip(H * 0.22, 3, 7))
    arch = (ped | lam | spin | trans) & in_span & (tis != CORT) & (tis != CANC) & (tis != DISC)
    tis[arch] = POST
    vid[arch] = np.array([x.verse_id for x in verts], dtype=np.uint8)[idx][arch]
    # ligamentum flavum and foraminal fat at disc levels
    foramen = (np.abs(u) > cw / 2 - 1) & (np.abs(u) < cw / 2 + pw + 3) & (v > -ap / 4) & (v < ap / 2) & \
        ~(ped) & (tis != CORT) & (tis != CANC) & (tis != DISC) & in_span
    tis[foramen] = EPIFAT
    vid[foramen] = 0
    # canal: epidural fat, dural sac with CSF, cord (ends at L1/L2) or cauda equina roots
    canal = superellipse(u, v, cw / 2, ap / 2, 2.6) <= 1
    tis[canal] = EPIFAT
    vid[canal] = 0
    dvc, du, dv = (x.astype(np.float32)[k_tab] for x in dura_geometry(s_tab, verts, diam))
    dura = canal & (superellipse(u, v - dvc, du, dv) <= 1)
    tis[dura] = CSF
    conus = next((x.s_centre for x in verts if x.name == "L2"), np.inf)
    if verts[0].name.startswith("L") or verts[0].name.startswith("S"):
        conus = -np.inf if verts[0].name not in ("L1", "L2") else conus
    cord_r = np.where(region == "C", 4.5, 3.8).astype(np.float32)
    cord = dura & (superellipse(u * 0.8, v - dvc, np.minimum(cord_r * 1.25, du * 0.8), np.minimum(cord_r, dv * 0.8)) <= 1) & (s < conus)
    tis[cord] = CORD
    for k in range(6):  # cauda equina: roots in the dependent (posterior) sac below the conus
        uk = (k - 2.5) * 1.6
        root = dura & (s >= conus) & (((u - uk) ** 2 + (v - (dvc - dv * 0.45)) ** 2) <= 0.8 ** 2)
        tis[root] = ROOT
    return tis, vid


def _sacrum(tis, vid, u, v, s, s1: Vertebra, ap, cw, length: float) -> None:
    """The fused sacrum (S2 down) under the S1 body: a tapering column of bone with the alae beside its top and
    the fused laminae behind the sacral canal, all labelled 26 (VerSe: sacrum)."""
    top = s1.s_centre + s1.height / 2
    below = (s > top) & (s <= top + length)
    t = np.clip((s - top) / length, 0.0, 1.0)
    W, D = s1.width * (1 - 0.55 * t), s1.depth * (1 - 0.45 * t)
    vbc = ap / 2 + D / 2
    col = below & (superellipse(u, v - vbc, W / 2, D / 2, 2.5) <= 1)
    core = col & (superellipse(u, v - vbc, W / 2 - 1.2, D / 2 - 1.2, 2.5) <= 1)
    ala = below & (t < 0.35) & (np.abs(u) > cw / 2 + 1) & (np.abs(u) <= W / 2 + 28 * (1 - t / 0.35)) & \
        (np.abs(v - ap / 2) < 0.45 * D)
    back = below & (np.abs(u) <= cw / 2 + 6) & (v <= -ap / 2) & (v >= -ap / 2 - 6)
    canal = superellipse(u, v, cw / 2, ap / 2, 2.6) <= 1
    for region, code in ((col, CORT), (core, CANC), (ala & ~canal, CANC), (back & ~canal, POST)):
        tis[region] = code
        vid[region] = 26


def _atlas_axis(tis, vid, u, v, s, c1: Vertebra, c2: Vertebra, ap, cw) -> None:
    """C1 and C2: the atlas has no body: an anterior arch and two lateral masses ring the dens, the peg of C2
    that rises from the C2 body through the atlas in front of the canal (VerSe 1 and 2)."""
    top, c2_top = c1.s_centre - c1.height / 2, c2.s_centre - c2.height / 2
    rd = 0.28 * c2.width                                  # dens radius (~9-10 mm wide)
    vd = ap / 2 + rd + 0.5                                # just in front of the canal
    dens = (s >= top - 2.0) & (s <= c2_top + 0.5) & ((u ** 2 + (v - vd) ** 2) <= rd ** 2)   # tip a little above the ring
    ring = (s >= top) & (s <= c2_top)
    arch = ring & (np.abs(u) <= 9.0) & (v >= vd + rd + 1.5) & (v <= vd + rd + 6.5)
    lateral = ring & (np.abs(u) >= cw / 2 - 2.0) & (np.abs(u) <= cw / 2 + 10.0) & (v >= -2.0) & (v <= vd + rd + 2.0)
    for region, code, label in ((dens, CORT, c2.verse_id), (arch, CORT, c1.verse_id), (lateral, POST, c1.verse_id)):
        tis[region] = code
        vid[region] = label
    core = dens & ((u ** 2 + (v - vd) ** 2) <= (rd - 1.2) ** 2)
    tis[core] = CANC


def _below(a: str, b: str) -> bool:
    """True when level ``a`` lies cranial to level ``b``."""
    return level_rank(a) < level_rank(b)


def _distractors(axis: SpineAxis, verts: list[Vertebra], rng) -> list[Tube]:
    """Aorta, IVC, segmental vessels and cervical vertebral arteries: enhanced, but not plexus."""
    out = []
    s = np.linspace(verts[0].s_centre - verts[0].height, verts[-1].s_centre + verts[-1].height / 2, 200)
    front = lambda x: canal_profile(x, verts)[0] / 2 + np.interp(x, [v.s_centre for v in verts], [v.depth for v in verts])  # noqa: E731
    trunk = [v for v in verts if v.name[0] in "TL"]
    sc = {v.name: v.s_centre for v in verts}

    def span(top: str, bottom: str) -> np.ndarray:  # axis positions between two levels, where in view
        lo = sc[top] if top in sc else (s[0] if _below(top, verts[0].name) else np.inf)
        hi = sc[bottom] if bottom in sc else (s[-1] if _below(verts[-1].name, bottom) else -np.inf)
        return s[(s >= lo) & (s <= hi)]

    st = span("T4", "L4")  # descending aorta, left-anterior of the bodies
    if len(st) > 2:
        ra = rng.uniform(9.0, 12.0)
        out.append(Tube("aorta", "aorta", axis.to_world(rng.uniform(8, 16), front(st) + ra + 2, st), np.full(len(st), ra), st, plexus=False))
    st = span("T10", "L5")  # inferior vena cava, right-anterior
    if len(st) > 2:
        ri = rng.uniform(8.0, 12.0)
        out.append(Tube("ivc", "ivc", axis.to_world(-rng.uniform(18, 26), front(st) + ri + 4, st), np.full(len(st), ri), st, plexus=False))
    if trunk:
        for v in trunk:
            if v.name == "S1":
                continue
            for side in (1.0, -1.0):  # segmental vessel hugging the body, towards the foramen
                ang = np.linspace(np.pi / 2.2, -np.pi / 2.6, 30)
                vbc = v.canal_ap / 2 + v.depth / 2
                uu = side * (v.width / 2 + 2.5) * np.cos(ang)
                vv = vbc + (v.depth / 2 + 2.5) * np.sin(ang)
                uu = np.concatenate([uu, side * np.linspace(v.width / 2 + 3, v.canal_width / 2 + 12, 8)])
                vv = np.concatenate([vv, np.linspace(vv[-1], -2.0, 8)])
                ss = np.full(len(uu), v.s_centre + rng.uniform(-2, 2))
                out.append(Tube(f"{v.name} segmental", "segmental", axis.to_world(uu, vv, ss), np.full(len(uu), rng.uniform(0.9, 1.4)), ss, plexus=False))
    cerv = [v for v in verts if v.name[0] == "C" and v.name not in ("C7",)]
    if cerv:
        st = s[(s >= cerv[0].s_centre - 10) & (s <= cerv[-1].s_centre + 10)]
        for side in (1.0, -1.0):
            u = side * (np.interp(st, [v.s_centre for v in verts], [v.canal_width for v in verts]) / 2 + 6.5)
            out.append(Tube(f"vertebral artery {'left' if side > 0 else 'right'}", "vertebral_artery",
                            axis.to_world(u, np.full(len(st), 1.0), st), np.full(len(st), rng.uniform(1.6, 2.2)), st, plexus=False))
    return out


def truth_calibre(tubes: list[Tube], verts: list[Vertebra], inside) -> list[tuple[str, str, float, int]]:
    """True median diameter per (level, longitudinal channel), by the nearest-body-centre rule.

    Only the points inside the field of view count (``inside``: points (N, 3) -> bool (N,)).
    """
    sc = np.array([v.s_centre for v in verts])
    rows = []
    for t in tubes:
        if t.kind not in CHANNELS:
            continue
        lvl = np.argmin(np.abs(t.s[:, None] - sc[None, :]), axis=1)
        ok = inside(t.points)
        for k, v in enumerate(verts):
            sel = (lvl == k) & ok
            if sel.any():
                rows.append((v.name, t.kind, float(np.median(2 * t.radius[sel])), int(sel.sum())))
    return rows


def point_levels(s: np.ndarray, verts: list[Vertebra]) -> list[str]:
    sc = np.array([v.s_centre for v in verts])
    return [verts[i].name for i in np.argmin(np.abs(np.asarray(s)[:, None] - sc[None, :]), axis=1)]


def generate_phantom(cfg: PhantomConfig) -> Phantom:
    """Generate one phantom case from ``cfg`` (deterministic for a given config and seed)."""
    rng = np.random.default_rng(cfg.seed)
    names = level_span(*cfg.levels, lumbar_count=cfg.lumbar_count)
    verts = make_vertebrae(names, rng)
    axis = SpineAxis(verts[-1].s_centre + verts[-1].height, rng, origin=rng.uniform(-20, 20, size=3),
                     curvature=cfg.curvature)
    diam = draw_diameters(verts, rng, cfg.p_engorged)
    plexus = build_plexus(axis, verts, diam, rng)
    shape, aff = _grid(axis, verts, cfg)

    sdf, fraction = render_tubes(plexus, shape, aff)
    mask = (sdf <= 0).astype(np.uint8)
    del sdf

    if cfg.render_image:
        ii, jj, kk = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
        xyz = np.stack([aff[d, d] * g.ravel() + aff[d, 3] for d, g in enumerate((ii, jj, kk))], axis=1)
        del ii, jj, kk
        u, v, s = axis.to_straight(xyz)
        del xyz
        tis, vid = _tissues(u, v, s, verts, diam, rng, cfg.sacrum_mm if _has_sacrum(verts, cfg) else 0.0)
        vid = vid.reshape(shape)
        table = CT_HU if cfg.modality == "CT" else MR_SI
        jitter = {k: val + (rng.normal(0, 15) if cfg.modality == "CT" else rng.normal(0, 20)) for k, val in table.items()}
        lut = np.array([jitter[k] for k in range(len(table))], dtype=np.float32)
        img = lut[tis].reshape(shape)
        tis = tis.reshape(shape).astype(np.uint8)
        del u, v, s
        distract = _distractors(axis, verts, rng)
        vessel_val = rng.uniform(150, 230) if cfg.modality == "CT" else rng.uniform(700, 1000)
        for tube in distract:
            f = render_tubes([tube], shape, aff)[1]
            val = vessel_val * rng.uniform(0.8, 1.1)
            img += f * (val - img)
            tis[f >= 0.5] = VESSEL
        img += fraction * (vessel_val - img)
        sp = np.asarray(cfg.spacing)
        blur = cfg.blur_mm if cfg.blur_mm is not None else rng.uniform(0.35, 0.7)
        img = ndimage.gaussian_filter(img, sigma=blur / sp, mode="nearest")
        sd = cfg.noise if cfg.noise is not None else (rng.uniform(8, 25) if cfg.modality == "CT" else rng.uniform(12, 35))
        if cfg.modality == "CT":
            img += rng.normal(0, sd, size=shape).astype(np.float32)
            img = np.clip(np.round(img), -1024, 3071).astype(np.int16)
        else:
            bias = _bias_field(shape, rng)
            img = img * bias
            n1 = rng.normal(0, sd, size=shape).astype(np.float32)
            n2 = rng.normal(0, sd, size=shape).astype(np.float32)
            img = np.sqrt((img + n1) ** 2 + n2 ** 2)
            img = np.clip(np.round(img), 0, 32767).astype(np.int16)
    else:
        vid = np.zeros(shape, dtype=np.uint8)
        tis = None

    def vol(a, **meta):
        return reorient(Volume(a, aff, {"modality": cfg.modality, "warnings": [], **meta}), cfg.orientation)

    centres = {v.name: axis.to_world(0.0, v.canal_ap / 2 + v.depth / 2, v.s_centre).tolist() for v in verts}
    lo_w, hi_w = aff[:3, 3], aff[:3, 3] + np.diag(aff)[:3] * (np.array(shape) - 1)

    def inside(p: np.ndarray) -> np.ndarray:  # within the field of view, a voxel away from its faces
        return np.all((p >= lo_w + np.diag(aff)[:3]) & (p <= hi_w - np.diag(aff)[:3]), axis=1)

    return Phantom(cfg, vol(img, kind="image") if cfg.render_image else None,
                   vol(mask, kind="plexus_mask"), vol(fraction, kind="plexus_fraction"), vol(vid, kind="vertebrae"),
                   plexus, verts, axis, centres, truth_calibre(plexus, verts, inside),
                   tissues=vol(tis, kind="tissues") if tis is not None else None)


def _bias_field(shape, rng) -> np.ndarray:
    """Smooth multiplicative MR bias field (+-25 %) from a few low-frequency cosines."""
    grids = np.meshgrid(*[np.linspace(0, 1, n, dtype=np.float32) for n in shape], indexing="ij", sparse=True)
    log_b = np.zeros(shape, dtype=np.float32)
    for _ in range(4):
        f = rng.uniform(0.3, 1.2, size=3)
        ph = rng.uniform(0, 2 * np.pi, size=3)
        log_b = log_b + rng.uniform(-0.12, 0.12) * np.cos(2 * np.pi * f[0] * grids[0] + ph[0]) * \
            np.cos(2 * np.pi * f[1] * grids[1] + ph[1]) * np.cos(2 * np.pi * f[2] * grids[2] + ph[2])
    return np.exp(log_b)


def config_dict(cfg) -> dict:
    """A generator config (a dataclass) as JSON-ready values."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}
