"""Dosimetry-outcome analysis of a cohort (``brachycryo outcomes``).

:mod:`~brachycryo.outcomes.data` joins the dvh-batch table with an outcomes CSV (one row per
lesion; every unmatched row listed with its reason); :mod:`~brachycryo.outcomes.dose_response`
fits logistic dose-response curves (D50, gamma50, patient-clustered CIs, bootstrap by patient);
:mod:`~brachycryo.outcomes.survival` fits Cox models with patient-clustered variance,
Kaplan-Meier and Aalen-Johansen curves; :mod:`~brachycryo.outcomes.analysis` runs them all.
The page and the all-or-nothing output folder are in :mod:`brachycryo.reports.outcomes`.

Needs the ``stats`` extra (statsmodels, lifelines, pandas, pyarrow); imported lazily.
"""
