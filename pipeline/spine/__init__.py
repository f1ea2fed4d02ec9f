"""Stage 1 of segmentation: the spine and the vertebral canal, found on the whole scan before any plexus."""

from .find import NO_SPINE, SPINE_FOUND, CanalResult, find_canal

__all__ = ["NO_SPINE", "SPINE_FOUND", "CanalResult", "find_canal"]
