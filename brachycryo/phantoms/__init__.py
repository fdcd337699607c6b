"""Deterministic synthetic patients (CT + RTSTRUCT) for examples, tests and benchmarks."""

from brachycryo.phantoms.case import PhantomCase, PhantomFiles, build_phantom, write_phantom

__all__ = ["PhantomCase", "PhantomFiles", "build_phantom", "write_phantom"]
