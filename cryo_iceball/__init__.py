"""Cryoablation ice-ball modelling: Pennes bioheat with phase change and empirical isotherms.

Modules (import what you need; nothing here compiles or imports numba at import time):

* :mod:`brachycryo.cryo_iceball.tissue` - tissue classes (``data/tissues.csv``, cited), enthalpy
  ``H(T)``, CT-number classes.
* :mod:`brachycryo.cryo_iceball.probes` - probe catalogue (``data/probes.csv``, generic classes,
  user-extendable), placed probes (line segments in any orientation), protocol phases,
  rasterisation with a sub-voxel probe surface.
* :mod:`brachycryo.cryo_iceball.bioheat` - :func:`~brachycryo.cryo_iceball.bioheat.simulate`:
  explicit enthalpy
  scheme with a checked stability limit; backends ``numpy`` (reference,
  :mod:`~brachycryo.cryo_iceball.kernels_numpy`), ``numba``
  (:mod:`~brachycryo.cryo_iceball.kernels_numba`) and
  ``cupy`` (numba.cuda kernels launched on CuPy arrays,
  :mod:`~brachycryo.cryo_iceball.kernels_cuda`).
* :mod:`brachycryo.cryo_iceball.isotherms` - isotherm masks, volumes, principal axes, OAR distances.
* :mod:`brachycryo.cryo_iceball.empirical` - fast ellipsoid mode (approximation; error stated
  there).
* :mod:`brachycryo.cryo_iceball.placement` - probe layouts covering a core while sparing OARs.
* :mod:`brachycryo.cryo_iceball.config`, :mod:`brachycryo.cryo_iceball.report` - ``brachycryo
  iceball`` input/output.

Example::

    from brachycryo.core.grid import Grid
    from brachycryo.cryo_iceball.bioheat import simulate
    from brachycryo.cryo_iceball.probes import Probe, load_probe_catalogue, protocol
    from brachycryo.cryo_iceball.tissue import load_tissues

    cat = load_probe_catalogue()
    grid = Grid.from_bounds((-30, -30, -50), (30, 30, 50), 1.0)
    probe = Probe(cat["generic_17g"], tip_mm=(0, 0, -11), direction=(0, 0, 1))
    res = simulate(grid, [probe], protocol(("freeze", 10), ("passive_thaw", 8), ("freeze", 10)),
                   tissues=[load_tissues()["liver"]], backend="auto")
    lethal = res.lethal_mask(-40.0)
"""
