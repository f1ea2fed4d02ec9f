"""plexus: find the internal vertebral (epidural) venous plexus in spine CT/MR and measure its calibre.

Data flows one way::

    io -> preprocess -> inference -> postprocess (clean, centreline, calibre, levels) -> export

with :mod:`pipeline.cli` and :mod:`pipeline.train` at the edges and :mod:`pipeline.synth` making phantoms
with exact ground truth.
"""

__version__ = "0.1.0"
