"""Shared fixtures: Hypothesis profiles, and the frameworks skipped cleanly when absent."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# CI: derandomised and without a database, so a run is reproducible and writes nothing.
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))
