"""The ground floor: what every other part of brachycryo shares and nothing of ours it imports.

* :mod:`~brachycryo.core.grid` - :class:`Grid`, the one geometry type (LPS mm, any orientation).
* :mod:`~brachycryo.core.errors` - the exception hierarchy (:class:`BrachyCryoError`).
* :mod:`~brachycryo.core.backend` - numpy / numba / cupy selection, never a silent fallback.
* :mod:`~brachycryo.core.atomic` - output files written atomically, never overwritten unasked.
* :mod:`~brachycryo.core.progress` - progress callbacks for long work.
* :mod:`~brachycryo.core.seeds` - :class:`Seeds`, the one representation of a set of seeds.
* :mod:`~brachycryo.core.seed_capsule` - nominal capsule geometry of an I-125 seed.
"""
