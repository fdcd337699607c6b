"""Plan evaluation: DVHs and metrics, reports, post-implant dosimetry, cohort extraction."""
