"""Accuracy against truth: the metrics (:mod:`.metrics`: Dice, clDice, HD95, centreline precision/recall, calibre
score) and ``plexus evaluate`` (:mod:`.evaluate`)."""
