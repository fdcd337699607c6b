"""Build the phantom patient on a grid and write it as DICOM (CT series + RTSTRUCT).

``build_phantom`` voxelises an :class:`~brachycryo.phantoms.anatomy.Anatomy` onto an
axis-aligned HFS grid (or any given Grid), paints Hounsfield units with Gaussian noise per
tissue (air -1000, fat -100, soft tissue 30-60, bone 550-600, bowel gas -850), and keeps
one boolean mask per ROI.  ``write_phantom`` writes ``CT/`` and ``RS.phantom.dcm``.
The same ``seed`` and ``site`` always give the same patient.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brachycryo.core.errors import ConfigError
from brachycryo.core.grid import Grid
from brachycryo.core.progress import ProgressCallback, report
from brachycryo.dicom_io.common import StudyContext
from brachycryo.dicom_io.ct_series import CTImage, write_ct_series
from brachycryo.dicom_io.rtstruct import StructureSet
from brachycryo.dicom_io.rtstruct_write import RoiSpec, write_rtstruct
from brachycryo.phantoms.anatomy import SITES, Anatomy, Organ, with_metastases

AIR_HU = -1000.0
DEFAULT_SPACING_MM = (1.0, 1.0, 2.0)


@dataclass
class PhantomCase:
    """A voxelised phantom: HU volume, grid, ROI masks and the organ metadata."""

    site: str
    seed: int
    grid: Grid
    hu: np.ndarray
    masks: dict[str, np.ndarray]
    organs: dict[str, Organ]
    index_tumour: str
    notes: list[str] = field(default_factory=list)

    def volume_cc(self, name: str) -> float:
        return float(self.masks[name].sum()) * self.grid.voxel_volume_mm3 / 1000.0


def phantom_grid(anatomy: Anatomy, spacing_mm=DEFAULT_SPACING_MM) -> Grid:
    (x0, x1), (y0, y1), (z0, z1) = anatomy.extent_mm
    return Grid.from_bounds((x0, y0, z0), (x1, y1, z1), spacing_mm)


def build_phantom(
    *,
    seed: int = 0,
    site: str = "abdomen",
    spacing_mm: float | tuple[float, float, float] = DEFAULT_SPACING_MM,
    grid: Grid | None = None,
    extra_metastases: int = 0,
    bulky_scale: float = 1.0,
    progress: ProgressCallback | None = None,
) -> PhantomCase:
    """Voxelise the phantom of ``site`` and ``seed`` (deterministic) onto a grid;
    ``extra_metastases`` adds small nodules ``GTV_Met3``, ... (:func:`with_metastases`);
    ``bulky_scale`` (0.5-2) scales the bulky mass about its centre (1: the standard
    phantom, unchanged bit for bit; the random draws are the same for every scale)."""
    if site not in SITES:
        raise ConfigError(f"unknown phantom site {site!r}; choose from {sorted(SITES)}", key="site")
    if int(seed) < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed}", key="seed")
    anatomy = SITES[site](np.random.default_rng(int(seed)), bulky_scale=bulky_scale)
    if extra_metastases:  # their own random stream: the site's anatomy stays as it is
        met_rng = np.random.default_rng([int(seed), 104729])
        anatomy = with_metastases(anatomy, int(extra_metastases), met_rng)
    if grid is None:
        grid = phantom_grid(anatomy, spacing_mm)
    noise_rng = np.random.default_rng([int(seed), 7919])
    everything = (*anatomy.organs, *anatomy.tumours)
    hu = np.full(grid.shape, AIR_HU, dtype=np.float32)
    masks = {o.name: np.zeros(grid.shape, dtype=bool) for o in everything}
    nj, ni = grid.shape[1], grid.shape[2]
    jj, ii = np.meshgrid(np.arange(nj), np.arange(ni), indexing="ij")
    for k in range(grid.shape[0]):
        pts = grid.ijk_to_mm(np.stack([ii, jj, np.full_like(ii, k)], axis=-1).astype(float))
        body = anatomy.body(pts)
        for organ in everything:
            m = organ.shape(pts) & body
            masks[organ.name][k] = m
            if m.any():
                noise = noise_rng.normal(0.0, organ.hu_noise, size=int(m.sum()))
                hu[k][m] = organ.hu + noise
        hu[k][~body] = AIR_HU + noise_rng.normal(0.0, 5.0, size=int((~body).sum()))
        report(progress, (k + 1) / grid.shape[0], f"slice {k + 1}/{grid.shape[0]}")
    organs = {o.name: o for o in everything}
    return PhantomCase(
        site=site,
        seed=int(seed),
        grid=grid,
        hu=hu,
        masks={o.name: masks[o.name] for o in everything if o.roi},
        organs=organs,
        index_tumour=anatomy.index_tumour,
    )


@dataclass(frozen=True)
class PhantomFiles:
    folder: Path
    ct_folder: Path
    rtstruct: Path
    ct: CTImage
    structures: StructureSet


def write_phantom(
    folder: str | os.PathLike,
    case: PhantomCase,
    *,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> PhantomFiles:
    """Write ``case`` as ``folder/CT/CT.NNNN.dcm`` and ``folder/RS.phantom.dcm``."""
    out = Path(folder)
    context = StudyContext(
        patient_name=f"Phantom^{case.site.capitalize()}^{case.seed}",
        patient_id=f"BCPHANTOM-{case.site.upper()}-{case.seed:04d}",
        study_description=f"brachycryo phantom ({case.site}, seed {case.seed})",
    )
    ct = write_ct_series(
        out / "CT",
        case.hu,
        case.grid,
        context=context,
        series_description=f"Phantom CT {case.site}",
        body_part=case.site.upper(),  # ABDOMEN or PELVIS: unpaired, no Laterality
        overwrite=overwrite,
    )
    report(progress, 0.5, "CT written")
    rois = [
        RoiSpec(
            name=name,
            mask=mask,
            interpreted_type=case.organs[name].interpreted_type,
            color_rgb=case.organs[name].color_rgb,
        )
        for name, mask in case.masks.items()
        if mask.any()
    ]
    rs_path = out / "RS.phantom.dcm"
    structures = write_rtstruct(
        rs_path, rois, ct, label=f"phantom {case.site}", overwrite=overwrite
    )
    report(progress, 1.0, "RTSTRUCT written")
    return PhantomFiles(out, out / "CT", rs_path, ct, structures)
