"""The patient a plan is made on: CT + structures (from DICOM or the built-in phantom),
and the planning grid with the masks the planner needs.

The plan's first two stages: :func:`load_case` (the case) and :func:`structures_on_grid`
(the planning grid and every structure the plan uses, on it).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brachycryo.core.errors import ConfigError, GeometryError, OutputExistsError, StructureError
from brachycryo.core.grid import Grid
from brachycryo.core.progress import ProgressCallback, scaled
from brachycryo.dicom_io.ct_series import CTImage, load_ct_series
from brachycryo.dicom_io.rasterize import contour_stack, roi_fraction
from brachycryo.dicom_io.rtstruct import (
    ROI,
    Contour,
    StructureSet,
    check_against_image,
    read_rtstruct,
)
from brachycryo.dicom_io.rtstruct_write import mask_to_contours_mm
from brachycryo.phantoms import build_phantom, write_phantom
from brachycryo.planning.spec import CaseSpec, PlanSpec

log = logging.getLogger(__name__)

#: The planning grid extends this far beyond the lesions' margins (half of it on each side
#: of the outermost structure), so OARs next to the targets lie inside it.
OAR_NEIGHBOURHOOD_MM = 40.0


#: CT number above which a voxel counts as patient when the body outline is derived from the
#: CT: air is -1000 HU, lung -900 to -500 HU (inside the outline: filled as holes), fat about
#: -100 HU and soft tissue 0-100 HU, so -500 HU lies halfway between air and water and keeps
#: the skin voxels that partial volume with air pulls down.
BODY_THRESHOLD_HU = -500.0


@dataclass(frozen=True)
class PlanningCase:
    """CT, structures and where they came from; ``notes`` say what was supplied for the
    user (e.g. a body outline derived from the CT), for the log and ``metrics.json``."""

    ct: CTImage
    structures: StructureSet
    rtstruct_path: Path
    notes: tuple[str, ...] = ()


def load_case(
    spec: CaseSpec,
    work_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> PlanningCase:
    """CT + RTSTRUCT of the plan; the phantom is written to ``work_dir/case`` first (an
    existing ``case/`` is replaced only with ``overwrite``: the plans of an earlier run
    reference its CT)."""
    if spec.phantom is not None:
        ph = spec.phantom
        case = build_phantom(
            seed=ph.seed, site=ph.site, spacing_mm=ph.spacing_mm,
            extra_metastases=ph.extra_metastases, progress=scaled(progress, 0, 0.5),
        )  # fmt: skip
        folder = Path(work_dir) / "case"
        if folder.exists() and not overwrite:
            raise OutputExistsError(
                f"{folder} exists (an earlier plan's phantom CT); pass overwrite=True "
                "(CLI: --overwrite) to replace it"
            )
        files = write_phantom(folder, case, overwrite=overwrite, progress=scaled(progress, 0.5, 1))
        return PlanningCase(files.ct, files.structures, files.rtstruct)
    assert spec.ct is not None and spec.rtstruct is not None  # the spec gives both, or a phantom
    ct = load_ct_series(spec.ct)
    ss = read_rtstruct(spec.rtstruct)
    check_against_image(
        ss,
        frame_of_reference_uid=ct.frame_of_reference_uid,
        series_instance_uid=ct.series_instance_uid,
        sop_instance_uids=set(ct.sop_instance_uids),
        strict=False,
    )
    ss, notes = with_body_outline(ss, ct, where=str(spec.rtstruct))
    for note in notes:
        log.warning("%s", note)
    return PlanningCase(ct, ss, Path(spec.rtstruct), notes=notes)


def _contoured_body(structures: StructureSet) -> ROI | None:
    """The BODY ROI, else the first EXTERNAL one, if it has closed contours."""
    named = [r for r in structures.rois if r.name.upper() == "BODY"]
    external = [r for r in structures.rois if r.interpreted_type.upper() == "EXTERNAL"]
    for roi in (*named, *external):
        if roi.closed_contours:
            return roi
    return None


def body_mask_from_ct(hu: np.ndarray) -> np.ndarray:
    """The patient's outline on the CT grid: voxels above :data:`BODY_THRESHOLD_HU`, the
    largest 26-connected component (drops the couch, lines, air-gap noise), holes filled
    slice by slice (lungs, bowel gas, which touch no air outside the patient on a slice).
    The usual recipe for an external contour (e.g. plastimatch ``segment``: threshold,
    largest component, fill holes)."""
    from scipy import ndimage

    above = np.asarray(hu) > BODY_THRESHOLD_HU
    labels, n = ndimage.label(above, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        raise StructureError(
            f"has no contours and the CT has no voxel above {BODY_THRESHOLD_HU:g} HU to "
            "outline the body from",
            roi="BODY",
        )
    sizes = np.bincount(labels.ravel())[1:]
    body = labels == int(np.argmax(sizes)) + 1
    for k in range(body.shape[0]):
        body[k] = ndimage.binary_fill_holes(body[k])
    return body


def with_body_outline(
    structures: StructureSet, ct: CTImage, *, where: str = "the structure set"
) -> tuple[StructureSet, tuple[str, ...]]:
    """``structures`` as they are when they hold a contoured BODY / EXTERNAL ROI; else
    with a BODY (EXTERNAL) ROI outlined from the CT (:func:`body_mask_from_ct`) in place of
    an empty one, and a note saying so (Oncentra Prostate structure sets, for one, carry
    an empty BODY)."""
    if _contoured_body(structures) is not None:
        return structures, ()
    mask = body_mask_from_ct(ct.hu)
    loops = mask_to_contours_mm(mask, ct, name="BODY")
    empty = [r.name for r in structures.rois if r.name.upper() == "BODY"]
    number = max((r.number for r in structures.rois), default=0) + 1
    body = ROI(
        number=number,
        name="BODY",
        interpreted_type="EXTERNAL",
        contours=tuple(Contour(np.asarray(p, float)) for p in loops),
        frame_of_reference_uid=ct.frame_of_reference_uid,
        generation_algorithm="AUTOMATIC",
    )
    kept = tuple(r for r in structures.rois if r.name.upper() != "BODY")
    volume_cc = float(mask.sum()) * ct.grid.voxel_volume_mm3 / 1000.0
    what = f"its BODY ROI {empty[0]!r} has no contours" if empty else "it has no BODY ROI"
    note = (
        f"{where}: {what}; the body outline was derived from the CT (voxels above "
        f"{BODY_THRESHOLD_HU:g} HU, largest connected component, holes filled slice by "
        f"slice: {volume_cc:.0f} cc) and used as BODY"
    )
    return dataclasses.replace(structures, rois=(*kept, body)), (note,)


def check_lesions_on_ct(ct_grid: Grid, rois, structures: StructureSet, *, where: str) -> None:
    """:class:`GeometryError` naming the lesion and the CT's extent when a lesion's contours
    reach beyond the CT (planning there would see no tissue, no BODY and no dose grid)."""
    d = ct_grid.direction_matrix
    ct_lo = -0.5 * np.asarray(ct_grid.spacing_mm)
    ct_hi = (np.asarray(ct_grid.size_ijk) - 0.5) * np.asarray(ct_grid.spacing_mm)
    tol_mm = 0.5 * np.asarray(ct_grid.spacing_mm)
    lo_mm, hi_mm = ct_grid.bounds_mm()
    extent = ", ".join(f"{a} {lo_mm[i]:.1f} to {hi_mm[i]:.1f}" for i, a in enumerate("xyz"))
    for name in rois:
        roi = structures.roi(name)
        if not roi.closed_contours:
            continue  # an empty lesion ROI is reported where it is rasterised
        pts = np.concatenate([c.points_mm for c in roi.closed_contours])
        local = (pts - np.asarray(ct_grid.origin_mm)) @ d
        outside = np.any((local < ct_lo - tol_mm) | (local > ct_hi + tol_mm), axis=1)
        if outside.any():
            how = "wholly" if outside.all() else "partly"
            lo, hi = pts.min(axis=0), pts.max(axis=0)
            span = ", ".join(f"{a} {lo[i]:.1f} to {hi[i]:.1f}" for i, a in enumerate("xyz"))
            raise GeometryError(
                f"lesion {name} lies {how} outside the CT {where} (the CT spans {extent} mm; "
                f"the lesion's contours {span} mm): give a CT that covers the lesion"
            )


def planning_grid(
    ct_grid: Grid,
    rois,
    structures: StructureSet,
    pad_mm: float,
    spacing_mm: float,
    *,
    oars=(),
    oar_reach_mm: float = 80.0,
) -> Grid:
    """A grid in the CT's orientation covering the ROIs plus ``pad_mm``, clipped to the CT.

    The grid also grows to take in the ``oars`` (organs with dose limits) as far as
    ``oar_reach_mm`` beyond the ROIs, so their DVHs see the dose the seeds give them
    rather than 0 Gy outside the dose grid; parts farther away are reported as outside.
    """
    d = ct_grid.direction_matrix

    def local_extent(names):
        corners = []
        for name in names:
            stack = contour_stack(structures.roi(name), slice_thickness_mm=ct_grid.spacing_mm[2])
            corners.append(stack.bounds_mm())
        local = (np.concatenate(corners) - np.asarray(ct_grid.origin_mm)) @ d
        return local.min(axis=0), local.max(axis=0)

    # extents along the CT axes, in mm from the CT origin
    lo, hi = local_extent(rois)
    reach_lo, reach_hi = lo - oar_reach_mm, hi + oar_reach_mm
    lo = lo - pad_mm
    hi = hi + pad_mm
    if oars:
        olo, ohi = local_extent(oars)
        lo = np.minimum(lo, np.maximum(olo, reach_lo))
        hi = np.maximum(hi, np.minimum(ohi, reach_hi))
    ct_lo = -0.5 * np.asarray(ct_grid.spacing_mm)
    ct_hi = (np.asarray(ct_grid.size_ijk) - 0.5) * np.asarray(ct_grid.spacing_mm)
    lo = np.maximum(lo, ct_lo)
    hi = np.minimum(hi, ct_hi)
    n = np.maximum(1, np.floor((hi - lo) / spacing_mm).astype(int))
    origin_local = lo + 0.5 * spacing_mm
    origin = np.asarray(ct_grid.origin_mm) + d @ origin_local
    return Grid(
        shape=(int(n[2]), int(n[1]), int(n[0])),
        origin_mm=origin,
        spacing_mm=(spacing_mm, spacing_mm, spacing_mm),
        direction=ct_grid.direction,
    )


def roi_fractions(
    structures: StructureSet,
    names,
    grid: Grid,
    *,
    slice_thickness_mm: float,
    required: bool = True,
) -> dict[str, np.ndarray]:
    """Occupancy fractions (2x2x2 sub-points per voxel, float32) of the named ROIs."""
    out = {}
    present = {r.name for r in structures.rois}
    for name in dict.fromkeys(names):
        if name not in present:
            if required:
                raise StructureError(
                    f"is not in the structure set; ROIs present: {sorted(present)}", roi=name
                )
            continue
        out[name] = roi_fraction(
            structures.roi(name), grid, supersample=2, slice_thickness_mm=slice_thickness_mm
        )
    return out


def half_occupancy(fractions: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Masks of the voxels at least half inside each ROI."""
    return {name: frac >= 0.5 for name, frac in fractions.items()}


@dataclass(frozen=True)
class PlanningStructures:
    """The structures a plan uses, on its planning grid.

    ``fractions``: occupancy (0-1, 2x2x2 sub-points per voxel) of the body, the lesions, the
    OARs, the high-risk zones and the needles' no-go and entry ROIs present in the case;
    ``masks``: the voxels at least half inside each; ``body``: the BODY / EXTERNAL ROI's name.
    """

    grid: Grid
    fractions: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    body: str


def body_roi_name(case: PlanningCase) -> str:
    """``BODY`` if the structure set has it, else its first ROI of type EXTERNAL."""
    names = case.structures.roi_names
    if "BODY" in names:
        return "BODY"
    for roi in case.structures.rois:
        if roi.interpreted_type.upper() == "EXTERNAL":
            return roi.name
    raise ConfigError("the structure set has no BODY / EXTERNAL ROI", key="case")


def structures_on_grid(spec: PlanSpec, case: PlanningCase) -> PlanningStructures:
    """The planning grid (the lesions plus their largest margin and half of
    ``OAR_NEIGHBOURHOOD_MM``, grown to take in the limited OARs) and the structures on it.

    The needles' no-go ROIs are optional (a missing one is logged and ignored); the entry
    ROI of free-hand needles is required.
    """
    body = body_roi_name(case)
    thickness = case.ct.grid.spacing_mm[2]
    lesion_rois = [lesion.roi for lesion in spec.lesions]
    where = "" if spec.case.ct is None else f"in {spec.case.ct}"
    check_lesions_on_ct(case.ct.grid, lesion_rois, case.structures, where=where)
    pad = max(lesion.margin_mm for lesion in spec.lesions) + OAR_NEIGHBOURHOOD_MM / 2
    grid = planning_grid(
        case.ct.grid,
        lesion_rois,
        case.structures,
        pad,
        spec.dose.spacing_mm,
        oars=[o.roi for o in spec.oars],
    )
    wanted = [body, *lesion_rois, *(o.roi for o in spec.oars)]
    wanted += [h.roi for lesion in spec.lesions for h in lesion.high_risk]
    fractions = roi_fractions(case.structures, wanted, grid, slice_thickness_mm=thickness)
    optional = _checked_needle_rois(spec, case)
    fractions.update(
        roi_fractions(case.structures, optional, grid, slice_thickness_mm=thickness, required=False)
    )
    return PlanningStructures(grid, fractions, half_occupancy(fractions), body)


def _checked_needle_rois(spec: PlanSpec, case: PlanningCase) -> list[str]:
    """The needles' no-go ROIs (and the entry ROI of free-hand needles); a missing no-go
    ROI is logged, a missing entry ROI is a :class:`ConfigError`.  Returns them all (the
    missing ones are skipped when rasterised)."""
    optional = [*spec.needles.no_go]
    if spec.needles.mode == "free":
        optional.append(spec.needles.entry_roi)
    missing = [n for n in optional if n not in case.structures.roi_names]
    if spec.needles.mode == "free" and spec.needles.entry_roi in missing:
        raise ConfigError(
            f"entry ROI {spec.needles.entry_roi!r} is not in the structure set",
            key="needles.entry_roi",
        )
    for name in missing:
        log.warning("no-go structure %r is not in the structure set; ignored", name)
    return optional
