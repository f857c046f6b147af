"""Dagster definitions of the graph: assets, checks, jobs, the approval sensor and the schedule."""
