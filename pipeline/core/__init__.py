"""The core every stage stands on: :class:`~pipeline.core.volume.Volume`, errors, the vertebral levels'
vocabulary, atomic writes and memory layout. It imports no other part of plexus."""
