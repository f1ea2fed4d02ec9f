"""Postprocessing of a plexus mask: clean -> centrelines -> calibre -> channels and levels."""
