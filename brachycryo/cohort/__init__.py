"""Cohort DVH extraction: plans of many patients matched by UID into one tidy, resumable table,
run in-process or on dask.distributed."""
