"""Tumor-zoned treatment planning: zones, needle tracks, seed/probe optimisation."""
