"""Pages and pictures of any result: the HTML report, DVH and slice plots, 3-D views.

Reports sit above the workflows (planning, post-implant, cohort): a workflow returns a typed
result, and the CLI or the caller turns it into a page here.
"""
