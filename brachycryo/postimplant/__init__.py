"""Post-implant dosimetry: seeds found on a post-implant CT, their dose and DVH, and the
comparison with the pre-plan (a workflow above :mod:`brachycryo.qa`; its page is written by
:mod:`brachycryo.reports.postimplant`)."""
