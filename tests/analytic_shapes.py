"""Analytic structures as contour stacks (after Nelms et al., Med Phys 42:4435, 2015).

Contours are drawn on the CT slice planes that cut the shape, end faces included, as a
contouring physicist would; circles are polygons of ``n`` vertices whose area equals the
circle's (radius scaled by sqrt(2 pi / (n sin(2 pi / n)))), so polygonisation adds no error.
"""

from __future__ import annotations

import numpy as np


def circle(cx, cy, z, r, n=128):
    scale = np.sqrt(2 * np.pi / (n * np.sin(2 * np.pi / n)))
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.column_stack([cx + r * scale * np.cos(t), cy + r * scale * np.sin(t), np.full(n, z)])


def square(cx, cy, z, half):
    return np.array(
        [
            [cx - half, cy - half, z],
            [cx + half, cy - half, z],
            [cx + half, cy + half, z],
            [cx - half, cy + half, z],
        ],
        dtype=float,
    )


def planes_through(z_lo, z_hi, slice_z):
    return [z for z in slice_z if z_lo - 1e-9 <= z <= z_hi + 1e-9]


def sphere_contours(centre, radius, slice_z):
    cx, cy, cz = centre
    return [
        circle(cx, cy, z, np.sqrt(radius**2 - (z - cz) ** 2))
        for z in planes_through(cz - radius, cz + radius, slice_z)
        if radius**2 - (z - cz) ** 2 > 1e-6
    ]


def sphere_volume_cc(radius):
    return 4.0 / 3.0 * np.pi * radius**3 / 1000.0


def cylinder_contours(centre, radius, half_height, slice_z):
    cx, cy, cz = centre
    return [
        circle(cx, cy, z, radius)
        for z in planes_through(cz - half_height, cz + half_height, slice_z)
    ]


def cylinder_volume_cc(radius, half_height):
    return np.pi * radius**2 * 2 * half_height / 1000.0


def cube_with_hole_contours(centre, half_side, hole_radius, slice_z):
    cx, cy, cz = centre
    out = []
    for z in planes_through(cz - half_side, cz + half_side, slice_z):
        out.append(square(cx, cy, z, half_side))
        rr = hole_radius**2 - (z - cz) ** 2
        if rr > 1e-6:
            out.append(circle(cx, cy, z, np.sqrt(rr)))
    return out


def cube_with_hole_volume_cc(half_side, hole_radius):
    return ((2 * half_side) ** 3 - 4.0 / 3.0 * np.pi * hole_radius**3) / 1000.0


def sphere_trapezoid_volume_cc(radius, centre_z, slice_z):
    """Volume the trapezoidal (end-cap halved) rule gives for a sphere on these planes.

    Exact for the rule, used to separate sampling error from rasterisation error.
    """
    zs = [z for z in planes_through(centre_z - radius, centre_z + radius, slice_z)]
    areas = np.array([np.pi * (radius**2 - (z - centre_z) ** 2) for z in zs])
    t = np.diff(zs).min()
    return float((areas.sum() - (areas[0] + areas[-1]) / 2) * t / 1000.0)
