"""The operator's side: one-time-code login and the HTMX panel."""
