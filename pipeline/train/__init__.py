"""Training (``plexus train``): configs, data, loop, metrics and the model folder."""
