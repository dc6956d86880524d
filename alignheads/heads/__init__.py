"""Scoring every head, selecting a head set, head-set files and the published registry."""
