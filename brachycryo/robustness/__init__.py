"""Robustness of a seed plan to needle placement error (``brachycryo robust``)."""
