"""Zone-wise analyses: one outcome row per lesion and zone, each zone its own ROI, every
analysis run zone by zone.  Two zones with different planted D50 (core 140 Gy, margin
100 Gy) must each recover their own D50 - a pooled fit would land between them - and each
zone's fit must be the fit of that zone's lesions alone."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pandas as pd
import pytest

from brachycryo.outcomes.analysis import OutcomesOptions, analyse, curves_table, estimates_table
from brachycryo.outcomes.data import join_tables, read_lesion_map, read_outcomes
from brachycryo.reports.outcomes import build_outcomes_html
from tests.outcomes.simulate import Truth, simulate

CORE, MARGIN = Truth(d50_gy=140.0), Truth(d50_gy=100.0)


def _zone(dvh, oc, zone):
    dvh = dvh[dvh["structure"] != "Rectum"].copy()
    dvh["structure"] = dvh["structure"] + "_" + zone
    oc = oc.rename(columns={"structure": "lesion"})
    oc.insert(2, "zone", zone)
    return dvh, oc


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    d = tmp_path_factory.mktemp("zones")
    parts = [_zone(*simulate(300, seed=11, truth=CORE), "Core"),
             _zone(*simulate(300, seed=12, truth=MARGIN), "Margin")]  # fmt: skip
    dvh = pd.concat([p[0] for p in parts], ignore_index=True)
    oc = pd.concat([p[1] for p in parts], ignore_index=True)
    lmap = oc[["patient", "lesion", "zone"]].assign(structure=oc["lesion"] + "_" + oc["zone"])
    oc.to_csv(d / "outcomes.csv", index=False)
    lmap.to_csv(d / "map.csv", index=False)
    oc.assign(structure=lmap["structure"]).drop(columns="lesion").to_csv(
        d / "outcomes_roi.csv", index=False
    )
    return dvh, d


def test_each_zone_recovers_its_own_model(cohort):
    dvh, d = cohort
    j = join_tables(
        dvh, read_outcomes(d / "outcomes.csv"), lesion_map=read_lesion_map(d / "map.csv")
    )
    assert not j.exclusions and len(j.frame) == 600
    # the same join without the map (structure column naming each zone's ROI)
    j2 = join_tables(dvh, read_outcomes(d / "outcomes_roi.csv"))
    np.testing.assert_array_equal(j.frame["dose_metric_value"], j2.frame["dose_metric_value"])
    res = analyse(j, OutcomesOptions(bootstrap=0, control_time_months=24))
    assert [z.zone for z in res.zones] == ["Core", "Margin"]
    assert "zones_pooled" in res.skipped and res.toxicity is None
    for z, truth, other in ((res.zones[0], CORE, MARGIN), (res.zones[1], MARGIN, CORE)):
        assert z.n_lesions == 300 and z.toxicity is not None and z.cox is not None
        d50 = z.toxicity.fit.d50
        assert d50.covers(truth.d50_gy) and not d50.covers(other.d50_gy)
        # the zone's fit is the fit of its lesions alone
        sub = dataclasses.replace(j, frame=j.frame[j.frame["zone"] == z.zone].drop(columns="zone"))
        alone = analyse(sub, OutcomesOptions(bootstrap=0, control_time_months=24))
        assert alone.toxicity.fit.coef == pytest.approx(z.toxicity.fit.coef, rel=1e-12)
        assert alone.cox.hr_per_10gy.value == pytest.approx(z.cox.hr_per_10gy.value, rel=1e-12)
    # the pooled fit (zone column dropped) lands between the two: why zones are not pooled
    pooled = analyse(dataclasses.replace(j, frame=j.frame.drop(columns="zone")),
                     OutcomesOptions(bootstrap=0))  # fmt: skip
    assert MARGIN.d50_gy + 5 < pooled.toxicity.fit.d50.value < CORE.d50_gy - 5
    est = pd.read_csv(io.StringIO(estimates_table(res)))
    assert set(est["zone"]) == {"Core", "Margin"}
    assert set(pd.read_csv(io.StringIO(curves_table(res)))["zone"]) == {
        "Core",
        "Margin",
    }
    page = build_outcomes_html(res)
    assert "zone Core: 300 lesions" in page and "Zone Margin" in page
