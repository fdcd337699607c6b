"""An ice-ball simulation on a patient CT: CT + RTSTRUCT in, isotherm RTSTRUCT out.

This module composes :mod:`brachycryo.dicom_io` (reading the CT series and the structure set,
rasterising ROIs, writing an RTSTRUCT) with :mod:`brachycryo.cryo_iceball` (which knows nothing of
DICOM), for the ``[ct]`` form of the ``brachycryo iceball`` config
(:mod:`brachycryo.cryo_iceball.config`).

* **Grid.** The simulation grid is the CT's grid - its direction matrix kept, so an oblique
  or decubitus CT is simulated in its own frame - cropped to the probes' active zones plus
  ``margin_mm`` (clipped at the CT's edges) and resampled to ``spacing_mm``
  (:func:`simulation_grid`).  A probe whose active zone leaves the CT is a
  :class:`~brachycryo.core.errors.GeometryError`.
* **Tissues.** CT numbers are resampled (trilinear) onto that grid and classed by
  :func:`brachycryo.cryo_iceball.tissue.tissue_label_map`; the ``[structures]`` ROIs then override
  them, in the order given.
* **Vessels.** The ``vessels`` ROIs are held at ``BioheatOptions.vessel_temp_c`` (37 C):
  large vessels as heat sinks.
* **OARs.** ``oar_min_distance_mm`` is the smallest distance between the centre of a
  simulation voxel inside the 0 C isotherm and the centre of a CT voxel inside the OAR,
  0 when an ice voxel centre lies in an OAR voxel (:func:`oar_min_distances_mm`).  OARs
  are rasterised on the CT grid, so an OAR beyond the simulation grid still gets its true
  distance.
* **Isotherm RTSTRUCT.** The minimum-temperature map is interpolated (trilinear) onto the
  CT voxels the simulation grid covers and each isotherm written as one ROI on the CT's
  series and Frame of Reference (:func:`write_isotherm_rtstruct`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from brachycryo.core.errors import GeometryError, StructureError
from brachycryo.core.grid import Grid
from brachycryo.cryo_iceball.bioheat import BioheatResult
from brachycryo.cryo_iceball.config import CtSource, IceballConfig, check_grid_size
from brachycryo.cryo_iceball.isotherms import isotherm_key
from brachycryo.cryo_iceball.probes import Probe
from brachycryo.cryo_iceball.tissue import Tissue, tissue_label_map
from brachycryo.dicom_io.common import SERIES_NUMBERS
from brachycryo.dicom_io.ct_series import CTImage, load_ct_series
from brachycryo.dicom_io.rasterize import roi_mask
from brachycryo.dicom_io.rtstruct import StructureSet, check_against_image, read_rtstruct
from brachycryo.dicom_io.rtstruct_write import RoiSpec, write_rtstruct

#: File name of the isotherm structure set in the output folder.
ISOTHERM_RTSTRUCT_NAME = "RS.iceball.dcm"


@dataclass
class CryoCtCase:
    """Everything the bioheat run and its outputs need from the CT and structure set.

    ``grid`` is the simulation grid; ``tissue_labels`` index ``tissues``; ``oar_masks`` are
    on ``grid`` (for figures), ``oar_masks_ct`` on the CT grid (for distances).
    """

    ct: CTImage
    structures: StructureSet
    grid: Grid
    tissue_labels: np.ndarray
    tissues: list[Tissue]
    tissue_voxels: dict[str, int]
    vessel_mask: np.ndarray | None
    oar_masks: dict[str, np.ndarray]
    oar_masks_ct: dict[str, np.ndarray]
    notes: list[str] = field(default_factory=list)


def simulation_grid(
    ct_grid: Grid, probes: Sequence[Probe], *, spacing_mm: float, margin_mm: float
) -> Grid:
    """The CT grid cropped to the probes' active zones + ``margin_mm``, resampled.

    The crop is clipped at the CT's edges; the direction matrix is the CT's.
    """
    if not probes:
        raise GeometryError("no probe given: the simulation grid is built around the probes")
    ends = []
    for n, probe in enumerate(probes):
        seg = np.asarray(probe.active_segment_mm())
        if not np.all(ct_grid.contains_mm(seg, margin_voxels=0.5)):
            lo, hi = ct_grid.bounds_mm()
            raise GeometryError(
                f"probe {n} ({probe.model.model}): its active zone from "
                f"{np.round(seg[0], 1).tolist()} to {np.round(seg[1], 1).tolist()} mm lies "
                f"(partly) outside the CT, which spans {np.round(lo, 1).tolist()} to "
                f"{np.round(hi, 1).tolist()} mm (LPS)"
            )
        ends.append(seg)
    ijk = ct_grid.mm_to_ijk(np.concatenate(ends))
    pad = float(margin_mm) / np.asarray(ct_grid.spacing_mm)
    size = np.asarray(ct_grid.size_ijk)
    lo = np.clip(np.floor(ijk.min(axis=0) - pad + 1e-9), 0, size - 1).astype(int)
    hi = np.clip(np.ceil(ijk.max(axis=0) + pad - 1e-9) + 1, 1, size).astype(int)
    grid = ct_grid.cropped(lo, hi).resampled(spacing_mm)
    check_grid_size(grid)
    return grid


def resample_linear(
    volume: np.ndarray, source: Grid, target: Grid, *, outside: float = math.nan
) -> np.ndarray:
    """``volume`` on ``source`` sampled (trilinear) at the voxel centres of ``target``.

    Centres up to half a voxel beyond ``source`` take the nearest edge value; farther ones
    ``outside``.  Result in float32.
    """
    source.check_volume(volume, "volume")
    centres = target.voxel_centres_mm().reshape(-1, 3)
    ijk = source.mm_to_ijk(centres)
    out = ndimage.map_coordinates(
        np.asarray(volume, dtype=np.float32), ijk[:, ::-1].T, order=1, mode="nearest"
    )
    out[~source.contains_mm(centres, margin_voxels=0.5)] = outside
    return out.reshape(target.shape).astype(np.float32)


def _roi(structures: StructureSet, name: str, role: str):
    try:
        return structures.roi(name)
    except StructureError:
        raise StructureError(
            f"the {role} ROI is not in {structures.path}; ROIs present: {structures.roi_names}",
            roi=name,
        ) from None


def _probe_axis_points(probe: Probe, step_mm: float = 0.25) -> np.ndarray:
    a, b = (np.asarray(p) for p in probe.active_segment_mm())
    n = max(2, int(np.ceil(np.linalg.norm(b - a) / step_mm)) + 1)
    return a + np.linspace(0.0, 1.0, n)[:, None] * (b - a)


def load_ct_case(cfg: IceballConfig) -> CryoCtCase:
    """Read the config's CT + RTSTRUCT and build the simulation grid, tissues and masks."""
    src: CtSource | None = cfg.ct
    if src is None:
        raise ValueError("load_ct_case needs a config with a [ct] table")
    ct = load_ct_series(src.series_dir, series_uid=src.series_uid)
    structures = read_rtstruct(src.rtstruct)
    notes = list(
        check_against_image(
            structures,
            frame_of_reference_uid=ct.frame_of_reference_uid,
            series_instance_uid=ct.series_instance_uid,
            sop_instance_uids=set(ct.sop_instance_uids),
            strict=False,
        )
    )
    # every ROI name first, before any heavy work
    override_rois = [(_roi(structures, r, "[structures]"), t) for r, t in src.structures]
    vessel_rois = [_roi(structures, r, "[ct] vessels") for r in src.vessels]
    oar_rois = [_roi(structures, r, "[ct] oars") for r in src.oars]

    grid = simulation_grid(ct.grid, cfg.probes, spacing_mm=cfg.spacing_mm, margin_mm=cfg.margin_mm)
    thickness = ct.grid.spacing_mm[2]

    def mask(roi, on: Grid) -> np.ndarray:
        return roi_mask(roi, on, slice_thickness_mm=thickness)

    hu = resample_linear(ct.hu, ct.grid, grid)
    overrides = []
    for roi, tissue in override_rois:
        m = mask(roi, grid)
        if not m.any():
            notes.append(f"[structures] {roi.name!r} does not reach the simulation grid")
        overrides.append((tissue, m))
    labels, tissues, counts = tissue_label_map(hu, cfg.tissue_table, overrides=overrides)
    vessel_mask = None
    for roi in vessel_rois:
        m = mask(roi, grid)
        if not m.any():
            notes.append(f"vessel {roi.name!r} does not reach the simulation grid")
            continue
        for n, probe in enumerate(cfg.probes):
            if np.any(grid.sample_nearest(m, _probe_axis_points(probe), outside=False)):
                raise GeometryError(
                    f"probe {n} ({probe.model.model}) runs through vessel {roi.name!r}: a "
                    "probe's active zone cannot lie in a vessel held at body temperature"
                )
        vessel_mask = m if vessel_mask is None else vessel_mask | m
    shapes = cfg.vessel_mask(grid)
    if shapes is not None:
        vessel_mask = shapes if vessel_mask is None else vessel_mask | shapes
    oar_masks = {roi.name: mask(roi, grid) for roi in oar_rois}
    oar_masks_ct = {roi.name: mask(roi, ct.grid) for roi in oar_rois}
    for name, m in oar_masks_ct.items():
        if not m.any():
            notes.append(f"OAR {name!r} has no voxel on the CT grid; its distance is null")
    return CryoCtCase(
        ct=ct,
        structures=structures,
        grid=grid,
        tissue_labels=labels,
        tissues=tissues,
        tissue_voxels=counts,
        vessel_mask=vessel_mask,
        oar_masks=oar_masks,
        oar_masks_ct=oar_masks_ct,
        notes=notes,
    )


def _centres(mask: np.ndarray, grid: Grid) -> np.ndarray:
    return grid.ijk_to_mm(np.argwhere(mask)[:, ::-1].astype(float))


def oar_min_distances_mm(
    ice_mask: np.ndarray, grid: Grid, oar_masks_ct: dict[str, np.ndarray], ct_grid: Grid
) -> dict[str, float | None]:
    """Distance from the ice (``ice_mask`` on ``grid``) to each OAR (masks on ``ct_grid``).

    0 when the centre of an ice voxel lies in an OAR voxel; otherwise the smallest distance
    between an ice voxel centre and an OAR voxel centre (the nearest OAR voxel is then on
    the OAR's boundary, so only boundary voxels are searched); None when either is empty.
    """
    grid.check_volume(ice_mask, "ice_mask")
    ice_pts = _centres(ice_mask, grid)
    out: dict[str, float | None] = {}
    for name, m in oar_masks_ct.items():
        ct_grid.check_volume(m, f"OAR {name!r}")
        if len(ice_pts) == 0 or not m.any():
            out[name] = None
            continue
        if np.any(ct_grid.sample_nearest(m, ice_pts, outside=False)):
            out[name] = 0.0
            continue
        edge = m & ~ndimage.binary_erosion(m, border_value=0)
        d, _ = cKDTree(_centres(edge, ct_grid)).query(ice_pts)
        out[name] = float(d.min())
    return out


def isotherm_masks_on_ct(
    result: BioheatResult, ct_grid: Grid, temps_c: Sequence[float]
) -> dict[float, np.ndarray]:
    """``{T: mask on the CT grid}``: the minimum temperature interpolated onto CT voxels.

    Only the CT voxels the simulation grid covers are computed; the others are unfrozen.
    """
    sim = result.grid
    size = np.asarray(ct_grid.size_ijk)
    corners = ct_grid.mm_to_ijk(sim.corners_mm())
    lo = np.clip(np.floor(corners.min(axis=0)), 0, size - 1).astype(int)
    hi = np.clip(np.ceil(corners.max(axis=0)) + 1, 1, size).astype(int)
    sub = ct_grid.cropped(lo, hi)
    tmin = resample_linear(result.min_temp_c, sim, sub, outside=math.inf)
    out = {}
    for t in temps_c:
        m = np.zeros(ct_grid.shape, dtype=bool)
        m[lo[2] : hi[2], lo[1] : hi[1], lo[0] : hi[0]] = tmin <= float(t)
        out[float(t)] = m
    return out


def isotherm_roi_name(temp_c: float) -> str:
    return f"Isotherm {isotherm_key(temp_c)} C"


def write_isotherm_rtstruct(
    path: str | Path,
    result: BioheatResult,
    ct: CTImage,
    isotherms_c: Sequence[float],
    *,
    lethal_isotherm_c: float,
    overwrite: bool = False,
) -> tuple[StructureSet | None, list[str]]:
    """Write the isotherms as ROIs (``"Isotherm -40 C"``, ...) on the CT's series.

    The lethal isotherm is a ``TREATED_VOLUME``, the others ``CONTROL`` ROIs.  Isotherms
    that no CT voxel reached are left out (an empty ROI would not be valid); returns the
    structure set read back (None when no isotherm has a voxel) and notes on what was left
    out.
    """
    masks = isotherm_masks_on_ct(result, ct.grid, isotherms_c)
    rois, notes = [], []
    for t, m in sorted(masks.items(), reverse=True):
        if not m.any():
            notes.append(f"isotherm {isotherm_key(t)} C reached no CT voxel; not in the RTSTRUCT")
            continue
        lethal = math.isclose(t, lethal_isotherm_c)
        rois.append(
            RoiSpec(
                name=isotherm_roi_name(t),
                mask=m,
                interpreted_type="TREATED_VOLUME" if lethal else "CONTROL",
                generation_algorithm="AUTOMATIC",
            )
        )
    if not rois:
        return None, notes
    written = write_rtstruct(
        path,
        rois,
        ct,
        label="iceball",
        series_description="brachycryo ice-ball isotherms",
        series_number=SERIES_NUMBERS["rtstruct_iceball"],
        overwrite=overwrite,
    )
    return written, notes
