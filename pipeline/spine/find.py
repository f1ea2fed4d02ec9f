"""Stage 1: find the spine and the vertebral canal in a whole scan, fast, before any plexus is looked for.

``find_canal`` puts the scan on a coarse RAS grid (:mod:`.grid`), collects canal candidates per axial slice
(:mod:`.candidates`: CT bone enclosure; :mod:`.mr`: MR tubes brighter or darker than their ring), keeps the one chain that runs like a canal
(:mod:`.track`) and decides whether a spine is in view at all: a canal followed over at least ``min_length_mm``,
seen on most of its slices, with clear candidates. A scan that fails is reported ``no spine in view`` with the
reason (a status, not an error): a brain, a knee, an abdomen above the spine, an empty field.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from ..core.volume import Volume
from .candidates import ct_candidates
from .grid import CoarseGrid, coarse_spacing, to_coarse, to_input_grid
from .mr import mirror_symmetry, mr_candidates, normalise, pick_chain
from .track import Chain, best_chain, body_depth, body_midline, ct_wall, disc_mask, star_mask

log = logging.getLogger("plexus")

SPINE_FOUND = "ok"
NO_SPINE = "no spine in view"
MR_CANAL_RADIUS_MM = 9.0  # half the width of an adult dural sac with its epidural space
# a chain's least coverage (0.5) where its slices with a candidate add up to 4x min_length_mm
LONG_COVERAGE, LONG_SEEN = 0.5, 4.0
MR_MIN_SYMMETRY = 0.45    # least median mirror symmetry about an MR canal (real canals 0.58-0.70, phantoms 0.66-0.85;
                          # a vessel or a tube in a textured field 0.27-0.43)


@dataclass
class CanalResult:
    """What stage 1 found in one scan.

    Attributes
    ----------
    status : str
        ``'ok'`` or ``'no spine in view'``.
    reason : str
        Why (one line), for the warning and the run record.
    canal : (I, J, K) uint8 ndarray or None
        The vertebral canal on exactly the input grid (1 inside).
    centreline : (M, 3) float ndarray
        The canal's centre in each axial slice of the coarse grid, RAS mm, caudal to cranial.
    area_mm2 : (M,) float ndarray
        The canal's axial cross-section at each centreline point, mm^2.
    modality : str
    seconds : float
    """

    status: str
    reason: str
    canal: np.ndarray | None = None
    centreline: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    area_mm2: np.ndarray = field(default_factory=lambda: np.zeros(0))
    modality: str = "CT"
    seconds: float = 0.0

    @property
    def found(self) -> bool:
        return self.status == SPINE_FOUND

    def summary(self) -> dict:
        """A small JSON-ready record (``measurements.json``, ``run.json``)."""
        out = {"status": self.status, "reason": self.reason, "modality": self.modality, "seconds": round(self.seconds, 3)}
        if self.found:
            out.update({"length_mm": round(float(np.linalg.norm(np.diff(self.centreline, axis=0), axis=1).sum()), 1),
                        "median_area_mm2": round(float(np.median(self.area_mm2)), 1),
                        "z_range_mm": [round(float(self.centreline[:, 2].min()), 1),
                                       round(float(self.centreline[:, 2].max()), 1)]})
        return out


def find_canal(vol: Volume, modality: str, *, min_length_mm: float = 25.0, min_coverage: float = 0.6,
               min_score: float = 0.5) -> CanalResult:
    """Stage 1 on ``vol`` (see the module docstring).

    Parameters
    ----------
    vol : Volume
        The scan (CT in HU, MR in any units), any storage order and voxel size.
    modality : {'CT', 'MR'}
        The rules to look by (CT: bone enclosing the canal; MR: the bright tube of CSF).
    min_length_mm : float
        Shortest canal that counts as a spine in view, mm.
    min_coverage, min_score : float
        Share of the canal's slices that must hold a candidate, and their least mean score (0..1).

    Returns
    -------
    CanalResult
        ``status`` ``'ok'`` with the (I, J, K) uint8 ``canal`` on ``vol``'s grid, its centreline (M, 3) in RAS mm
        and cross-sections (M,) in mm^2; or ``'no spine in view'`` with the reason.

    Raises
    ------
    ValueError
        An unknown ``modality`` or a ``min_length_mm`` that is not positive (naming the parameter).
    """
    if modality not in ("CT", "MR"):
        raise ValueError(f"modality: expected 'CT' or 'MR', got {modality!r}")
    if min_length_mm <= 0:
        raise ValueError(f"min_length_mm: expected a positive length in mm, got {min_length_mm}")
    t0 = time.perf_counter()
    extent = vol.spacing * np.asarray(vol.shape)  # along each voxel axis, mm
    if extent.min() < 20.0:  # a slab thinner than a vertebral canal can hold none
        return CanalResult(NO_SPINE, f"the field of view is {extent.min():.0f} mm across at its "
                           "narrowest; no vertebral canal fits", modality=modality, seconds=time.perf_counter() - t0)
    grid = to_coarse(vol, coarse_spacing(vol))
    body = _body(grid, modality)
    midline = body_midline(body)
    if modality == "CT":
        chain = best_chain(ct_candidates(grid), grid.spacing, dz=grid.dz, midline=midline)
    else:  # both polarities (T2: bright CSF; T1: dark CSF), the chain that runs like the canal kept
        depth, norm = body_depth(body), normalise(grid.array)
        sym = mirror_symmetry(norm, grid.spacing)
        chains = {p: best_chain(mr_candidates(grid, p, normalised=norm, symmetry=sym, midline=midline),
                                grid.spacing, dz=grid.dz, midline=midline, depth=depth) for p in ("bright", "dark")}
        _, chain = pick_chain(chains, grid.dz, grid.spacing, depth)
    verdict = _verdict(chain, grid, min_length_mm, min_coverage, min_score)
    if not verdict and modality == "MR":
        verdict = _asymmetric(chain, sym)
    if verdict:
        return CanalResult(NO_SPINE, verdict, modality=modality, seconds=time.perf_counter() - t0)
    # CT: out to the bony wall; MR: a circle of an adult canal's half-width around the centre found (the MR wall
    # is not detected: cortex, ligament and CSF are all dark on T1)
    mask = star_mask(grid.array, chain, grid.spacing, wall=ct_wall) if modality == "CT" else \
        disc_mask(grid.array.shape, chain, grid.spacing, MR_CANAL_RADIUS_MM)
    canal = to_input_grid(mask, grid, vol)
    centre = grid.world(np.column_stack([chain.centres, chain.slices]))
    area = mask[:, :, chain.slices].sum(axis=(0, 1)) * grid.spacing ** 2
    length = len(chain.slices) * grid.dz
    return CanalResult(SPINE_FOUND, f"vertebral canal followed over {length:.0f} mm", canal, centre,
                       area.astype(float), modality, time.perf_counter() - t0)


def _body(grid: CoarseGrid, modality: str) -> np.ndarray:
    a = grid.array
    if modality == "CT":
        return a > -300.0
    return a > 0.2 * np.percentile(a, 95)


def _asymmetric(chain: Chain, sym: np.ndarray, min_symmetry: float = MR_MIN_SYMMETRY) -> str:
    """Why an MR chain is no canal ('' when it may be one): an axial slice through the spine is mirror-symmetric
    about its canal (:func:`pipeline.spine.mr.mirror_symmetry`), the median over the chain's members at least
    ``min_symmetry``; a vessel beside the midline, a tube in a knee or in a textured field is not."""
    at = np.array([np.rint(m.centre).astype(int).tolist() + [m.k] for m in chain.members])
    at[:, :2] = np.clip(at[:, :2], 0, np.array(sym.shape[:2]) - 1)
    got = float(np.median(sym[tuple(at.T)]))
    if got < min_symmetry:
        return (f"no vertebral canal found: the best candidate's surroundings are mirror-symmetric about it at "
                f"{got:.2f} (at least {min_symmetry:g}): a vessel or a tube, not a canal")
    return ""


def _verdict(chain: Chain | None, grid: CoarseGrid, min_length_mm: float, min_coverage: float,
             min_score: float) -> str:
    """Why there is no spine in view ('' when there is one)."""
    if chain is None:
        return "no vertebral canal found: nothing in the scan is walled in like a canal"
    length = len(chain.slices) * grid.dz
    score = float(np.mean([m.score for m in chain.members]))
    if length < min_length_mm:
        return f"no vertebral canal found: the best candidate runs over {length:.0f} mm (at least {min_length_mm:g})"
    if grid.dz > 3.0:  # thick slices fall alternately through discs and bodies: half of them may show no ring
        min_coverage = min(min_coverage, 0.45)
    seen = len(chain.members) * grid.dz
    # a long column seen on half its slices (a lumbar canal on a fat-suppressed T1 merges, at every arch, with the
    # dark pedicles and laminae around it) has more canal in view than the shortest spine
    if chain.coverage < min_coverage and not (chain.coverage >= LONG_COVERAGE and seen >= LONG_SEEN * min_length_mm):
        return (f"no vertebral canal found: the best candidate is seen on {100 * chain.coverage:.0f} % of its "
                f"slices (at least {100 * min_coverage:.0f} %)")
    if score < min_score:
        return f"no vertebral canal found: the best candidate scores {score:.2f} (at least {min_score:g})"
    return ""
