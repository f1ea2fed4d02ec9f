"""Centrelines of a vessel mask as a graph of branches and junctions, in world millimetres.

The skeleton is scikit-image's topology-preserving 3-D thinning (Lee et al. 1994), which keeps every loop
of the venous rings (TEASAR-style skeletonizers such as kimimaro return trees and cut them). The skeleton
voxels become a graph: 26-neighbour edges, with the long side of every voxel triangle dropped so that
staircases do not look like junctions; adjacent junction voxels form one node. Spurs shorter than
``prune_ratio`` x the local radius (+ ``prune_min_mm``) are pruned, branches are mapped to RAS mm through the
affine (any storage orientation, anisotropic voxels), smoothed and resampled at a fixed arc-length step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter1d
from skimage.morphology import skeletonize

from .clean import distance_mm as edt_mm

_OFFS = np.array([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1) if (a, b, c) != (0, 0, 0)])


@dataclass
class Branch:
    """One vessel segment between two nodes: ``points`` (N, 3) RAS mm, ordered from ``start`` to ``end``."""

    points: np.ndarray
    start: int
    end: int
    data: dict = field(default_factory=dict)   # per-point arrays added by later stages

    @property
    def length(self) -> float:
        return float(np.linalg.norm(np.diff(self.points, axis=0), axis=1).sum()) if len(self.points) > 1 else 0.0


@dataclass
class CentrelineGraph:
    """Branches and nodes: ``nodes`` (M, 3) RAS mm, ``degree`` (M,) branch ends, ``node_radius`` (M,) mm."""

    branches: list[Branch]
    nodes: np.ndarray
    degree: np.ndarray
    node_radius: np.ndarray


def _edges(coords: np.ndarray, shape) -> list[set[int]]:
    lin = np.ravel_multi_index(coords.T, shape)
    order = np.argsort(lin)
    slin = lin[order]
    nbrs: list[set[int]] = [set() for _ in range(len(coords))]
    d2 = {}
    for off in _OFFS:
        q = coords + off
        ok = np.all((q >= 0) & (q < np.array(shape)), axis=1)
        ql = np.full(len(coords), -1, dtype=np.int64)
        ql[ok] = np.ravel_multi_index(q[ok].T, shape)
        pos = np.clip(np.searchsorted(slin, ql), 0, len(slin) - 1)
        hit = ok & (slin[pos] == ql)
        for a, b in zip(np.nonzero(hit)[0], order[pos[hit]]):
            nbrs[a].add(int(b))
    for a in range(len(coords)):  # drop the longest side of each voxel triangle
        for b in list(nbrs[a]):
            dab = d2.setdefault((a, b), int(((coords[a] - coords[b]) ** 2).sum()))
            if dab == 1 or b not in nbrs[a]:
                continue
            for c in nbrs[a] & nbrs[b]:
                if ((coords[a] - coords[c]) ** 2).sum() < dab and ((coords[b] - coords[c]) ** 2).sum() < dab:
                    nbrs[a].discard(b)
                    nbrs[b].discard(a)
                    break
    return nbrs


def _trace(nbrs: list[set[int]]):
    """Paths (voxel index lists) between node voxels, node clusters, and the cluster of every node voxel."""
    n = len(nbrs)
    deg = np.array([len(s) for s in nbrs])
    is_node = deg != 2
    cluster = -np.ones(n, dtype=np.int64)
    n_cl = 0
    for v in np.nonzero(is_node)[0]:  # junction voxels touching each other form one node
        if cluster[v] >= 0:
            continue
        stack, cluster[v] = [v], n_cl
        while stack:
            a = stack.pop()
            for b in nbrs[a]:
                if is_node[b] and deg[b] > 2 and deg[a] > 2 and cluster[b] < 0:
                    cluster[b] = n_cl
                    stack.append(b)
        n_cl += 1
    paths, seen = [], set()
    for v in np.nonzero(is_node)[0]:
        for w in nbrs[v]:
            if (v, w) in seen or (is_node[w] and cluster[w] == cluster[v]):
                continue
            path, prev, cur = [v], v, w
            seen.add((v, w))
            while not is_node[cur]:
                path.append(cur)
                nxt = [x for x in nbrs[cur] if x != prev]
                if not nxt:
                    break
                prev, cur = cur, nxt[0]
            path.append(cur)
            seen.add((cur, prev))
            paths.append(path)
    on_path = np.zeros(n, dtype=bool)
    for p in paths:
        on_path[p] = True
    for v in np.nonzero(~on_path & ~is_node)[0]:  # isolated loops: give each a node
        if on_path[v]:
            continue
        cluster[v] = n_cl
        path, prev, cur = [v], v, next(iter(nbrs[v]))
        while cur != v:
            path.append(cur)
            on_path[cur] = True
            nxt = [x for x in nbrs[cur] if x != prev]
            prev, cur = cur, nxt[0]
        path.append(v)
        on_path[v] = True
        paths.append(path)
        n_cl += 1
    return paths, cluster, n_cl


def _prune_and_merge(paths, ends, radius_at, lengths, prune_ratio, prune_min_mm, n_nodes):
    """Remove short terminal spurs, then join branches through nodes left with two ends."""
    alive = [True] * len(paths)
    for _ in range(6):
        deg = np.zeros(n_nodes, dtype=int)
        for k, (s, e) in enumerate(ends):
            if alive[k]:
                deg[s] += 1
                deg[e] += 1
        changed = False
        for k, (s, e) in enumerate(ends):
            if not alive[k] or s == e:
                continue
            for tip, base in ((s, e), (e, s)):
                if deg[tip] == 1 and deg[base] >= 3 and lengths[k] < prune_ratio * radius_at(base) + prune_min_mm:
                    alive[k] = False
                    deg[tip] -= 1
                    deg[base] -= 1
                    changed = True
                    break
        if not changed:
            break
    paths = [p for p, a in zip(paths, alive) if a]
    ends = [e for e, a in zip(ends, alive) if a]
    while True:  # merge through degree-2 nodes
        deg = np.zeros(n_nodes, dtype=int)
        for s, e in ends:
            deg[s] += 1
            deg[e] += 1
        cand = [n for n in range(n_nodes) if deg[n] == 2]
        merged = False
        for node in cand:
            ks = [k for k, (s, e) in enumerate(ends) if node in (s, e)]
            if len(ks) != 2:
                continue
            a, b = ks
            pa, pb = paths[a], paths[b]
            (sa, ea), (sb, eb) = ends[a], ends[b]
            if ea != node:
                pa, (sa, ea) = pa[::-1], (ea, sa)
            if sb != node:
                pb, (sb, eb) = pb[::-1], (eb, sb)
            paths[a], ends[a] = pa + pb[1:], (sa, eb)
            del paths[b], ends[b]
            merged = True
            break
        if not merged:
            return paths, ends


def extract_centrelines(mask: np.ndarray, affine: np.ndarray, *, distance_mm: np.ndarray | None = None,
                        prune_ratio: float = 2.0, prune_min_mm: float = 1.0, smooth_mm: float = 0.8,
                        step_mm: float = 0.5) -> CentrelineGraph:
    """Centreline graph of a binary mask.

    Parameters
    ----------
    mask : (I, J, K) bool ndarray
    affine : (4, 4) ndarray
        Voxel index -> RAS mm.
    distance_mm : (I, J, K) float ndarray, optional
        Distance to the background in mm (for pruning); computed when not given.
    prune_ratio, prune_min_mm : float
        A terminal branch shorter than ``prune_ratio * r + prune_min_mm`` (r: radius at its junction, mm)
        is a spur and is removed.
    smooth_mm : float
        Gaussian smoothing of the branch coordinates along their length (sd, mm); junctions stay fixed.
    step_mm : float
        Arc-length step of the resampled branches, mm.
    """
    for name, val in (("prune_ratio", prune_ratio), ("step_mm", step_mm)):
        if val <= 0:
            raise ValueError(f"{name}: must be > 0, got {val}")
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return CentrelineGraph([], np.zeros((0, 3)), np.zeros(0, dtype=int), np.zeros(0))
    if distance_mm is None:
        distance_mm = edt_mm(mask, spacing=np.linalg.norm(affine[:3, :3], axis=0))
    skel = skeletonize(mask)
    coords = np.argwhere(skel)
    nbrs = _edges(coords, mask.shape)
    paths, cluster, n_nodes = _trace(nbrs)
    world = (affine[:3, :3] @ coords.T).T + affine[:3, 3]
    node_pos = np.zeros((n_nodes, 3))
    node_r = np.zeros(n_nodes)
    for c in range(n_nodes):
        members = np.nonzero(cluster == c)[0]
        node_pos[c] = world[members].mean(0)
        node_r[c] = distance_mm[tuple(coords[members].T)].max()
    ends = [(int(cluster[p[0]]), int(cluster[p[-1]])) for p in paths]
    lengths = [float(np.linalg.norm(np.diff(world[p], axis=0), axis=1).sum()) for p in paths]
    paths, ends = _prune_and_merge(paths, ends, lambda n: node_r[n], lengths, prune_ratio, prune_min_mm, n_nodes)
    branches = []
    for p, (s, e) in zip(paths, ends):
        pts = np.concatenate([node_pos[s][None], world[p[1:-1]], node_pos[e][None]]) if len(p) > 2 else \
            np.stack([node_pos[s], node_pos[e]])
        pts = _smooth_resample(pts, smooth_mm, step_mm, closed=(s == e))
        branches.append(Branch(pts, s, e))
    deg = np.zeros(n_nodes, dtype=int)
    for b in branches:
        deg[b.start] += 1
        deg[b.end] += 1
    return CentrelineGraph(branches, node_pos, deg, node_r)


def _smooth_resample(pts: np.ndarray, smooth_mm: float, step_mm: float, closed: bool) -> np.ndarray:
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    keep = np.concatenate([[True], seg > 1e-6])
    pts = pts[keep]
    if len(pts) < 2:
        return pts
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    n = max(int(np.ceil(s[-1] / step_mm - 1e-6)), 1)  # a length of exactly k steps: k, whatever the float error
    t = np.linspace(0, s[-1], n + 1)
    res = np.stack([np.interp(t, s, pts[:, d]) for d in range(3)], 1)
    if smooth_mm > 0 and len(res) > 3:
        sigma = smooth_mm / (s[-1] / n)
        sm = gaussian_filter1d(res, sigma, axis=0, mode="wrap" if closed else "nearest")
        if not closed:  # blend towards the fixed junction positions at both ends
            w = np.clip(np.minimum(t, t[-1] - t) / (2 * smooth_mm), 0, 1)[:, None]
            sm = w * sm + (1 - w) * res
        res = sm
    return res
