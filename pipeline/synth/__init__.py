"""Spine phantoms with exact ground truth (``plexus synth``): our training data, sample data and truth."""

from .phantom import Phantom, PhantomConfig, generate_phantom
from .save import PRESETS, preset_config, save_phantom

__all__ = ["Phantom", "PhantomConfig", "generate_phantom", "save_phantom", "PRESETS", "preset_config"]
