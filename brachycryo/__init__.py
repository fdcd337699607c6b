"""brachycryo: treatment planning for combined I-125 seed brachytherapy and cryoablation.

The distribution ships five top-level packages (``dicom_io``, ``dose_kernels``,
``cryo_iceball``, ``planning``, ``qa``) and this one, which holds what all of them share:
the :class:`~brachycryo.grid.Grid` geometry type, the project's exception hierarchy,
backend selection, atomic output files, and the command-line interface.
"""

__version__ = "0.1.0"
