"""Stage 2, the plexus network: the model folder (:mod:`.model`: loading, network, checksum), the one
sliding-window predictor (:mod:`.predictor`), the canal's crop (:mod:`.crop`) and segmenting a scan or its canal
(:mod:`.segmentation`).

Kept empty of imports, so that the exports which only crop (:mod:`pipeline.export.qc`) do not load torch.
"""
