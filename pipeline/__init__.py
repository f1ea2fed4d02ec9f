"""plexus: find the internal vertebral (epidural) venous plexus in spine CT/MR and measure its calibre.

The folders are the stages; data flows one way::

    io -> spine (stage 1: the canal) -> preprocess -> inference (stage 2: the plexus network on the canal's crop)
       -> postprocess (clean, centreline, calibre, levels) -> export

:mod:`pipeline.batch` runs them over many cases, :mod:`pipeline.cli` is the command line, :mod:`pipeline.train` and
:mod:`pipeline.evaluation` make and score models, :mod:`pipeline.synth` makes phantoms with exact ground truth, and
:mod:`pipeline.core` (Volume, errors, levels) is what every stage stands on. Imports point down this list only
(``tests/test_architecture.py``).
"""

__version__ = "0.1.0"
