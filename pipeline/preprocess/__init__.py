"""Preprocessing shared by training and inference: the transform to the model grid and its exact inverse
(:mod:`.transform`), and resampling between voxel grids in world millimetres (:mod:`.grid`).

Kept empty of imports, so that stage 1 (which only resamples) does not load torch and MONAI.
"""
