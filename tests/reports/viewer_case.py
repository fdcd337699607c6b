"""A tiny synthetic plan for the viewer tests: analytic dose, circular structures, a seed
line and a probe; small enough to open in headless Chromium in about a second."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from brachycryo.core.grid import Grid
from brachycryo.dicom_io.rtstruct import ROI, Contour
from brachycryo.qa.evaluate import evaluate_plan
from brachycryo.reports.html import Constraint, build_report_html
from brachycryo.reports.plots import Instruments, NeedleOverlay, ProbeOverlay

RX_GY = 100.0
SIGMA_MM = 15.0
R100_MM = SIGMA_MM * math.sqrt(math.log(2.0))
"""Radius of the 100 % isodose of dose = 2 Rx exp(-(r / sigma)^2) about the origin."""


@dataclass(frozen=True)
class ViewerCase:
    html: str
    ct_grid: Grid
    dose_grid: Grid
    dose_gy: np.ndarray
    seeds_mm: np.ndarray


def circle_roi(number: int, name: str, centre_xy, radius_mm: float, zs, colour) -> ROI:
    t = np.linspace(0.0, 2 * np.pi, 48, endpoint=False)
    contours = tuple(
        Contour(
            np.column_stack(
                [
                    centre_xy[0] + radius_mm * np.cos(t),
                    centre_xy[1] + radius_mm * np.sin(t),
                    np.full(t.shape, z),
                ]
            )
        )
        for z in zs
    )
    return ROI(number, name, "ORGAN", colour, contours)


def build_case(*, rx_gy: float = RX_GY) -> ViewerCase:
    """CT 40 x 40 x 20 at 2 mm; the dose on a 1.5 mm grid offset by a fraction of a voxel."""
    ct_grid = Grid((20, 40, 40), (-39.0, -39.0, -19.0), (2.0, 2.0, 2.0))
    c = ct_grid.voxel_centres_mm()
    ct = np.where(np.hypot(c[..., 0], c[..., 1]) < 35.0, 40.0, -1000.0)
    dose_grid = Grid.from_bounds((-30.37, -30.37, -18.37), (30.0, 30.0, 18.0), 1.5)
    d = dose_grid.voxel_centres_mm()
    dose = 2.0 * rx_gy * np.exp(-np.sum(d**2, axis=-1) / SIGMA_MM**2)
    zs = ct_grid.ijk_to_mm(np.column_stack([np.zeros(7), np.zeros(7), np.arange(7, 14)]))[:, 2]
    rois = [
        circle_roi(1, "GTV", (0.0, 0.0), 8.0, zs, (128, 0, 255)),
        circle_roi(
            2,
            "Cord",
            (0.0, 26.0),
            4.0,
            ct_grid.ijk_to_mm(np.column_stack([np.zeros(20), np.zeros(20), np.arange(20)]))[:, 2],
            (0, 255, 0),
        ),
    ]
    seeds = np.array([[5.0, 5.0, 1.0], [-5.0, 3.0, 1.0], [5.0, 5.0, 9.0]])
    instruments = Instruments(
        probes=[
            ProbeOverlay(
                (-10.0, -5.0, 40.0), (-10.0, -5.0, -5.0), (-10.0, -5.0, -5.0), (-10.0, -5.0, 10.0)
            )
        ],
        needles=[NeedleOverlay((5.0, 5.0, 40.0), (5.0, 5.0, 1.0))],
    )
    ev = evaluate_plan(dose, dose_grid, rois, prescription_gy=rx_gy, target="GTV")
    constraints = [Constraint("GTV", "D90", ">=", rx_gy), Constraint("Cord", "V100", "<=", 5.0)]
    html = build_report_html(
        ev,
        dose_gy=dose,
        dose_grid=dose_grid,
        ct_hu=ct,
        ct_grid=ct_grid,
        rois=rois,
        target="GTV",
        seeds_mm=seeds,
        instruments=instruments,
        constraints=constraints,
        title="viewer test plan",
        render_3d=False,
    )
    return ViewerCase(html, ct_grid, dose_grid, dose, seeds)
