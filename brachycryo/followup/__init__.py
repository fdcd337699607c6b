"""Follow-up imaging after a plan: registration of a later CT to the planning CT, minimal
ablative margin, zonal response and patterns of failure (``brachycryo followup``)."""
