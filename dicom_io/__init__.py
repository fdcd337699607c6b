"""DICOM input and output: CT series, RTSTRUCT, RTPLAN (seed implants), RTDOSE.

This package knows nothing of physics.  Readers return plain data objects on the shared
:class:`brachycryo.core.grid.Grid`; writers create fresh UIDs, cross-reference what they are
given and write files atomically.
"""
