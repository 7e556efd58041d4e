"""Shared fixtures: Hypothesis profiles, and the frameworks skipped cleanly when absent."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# CI: derandomised and without a database, so a run is reproducible and writes nothing.
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# The tests write nothing into the user's cache folder: JAX's persistent compilation cache is off in them
# (tests/test_jax_cache.py turns it on in a process of its own, in a temporary folder).
os.environ.setdefault("MANUAL_BACKPROP_JAX_CACHE", "off")
# and the command line's check runs torch and JAX in this process: the tests call it in-process hundreds of
# times (tests/test_parallel_references.py runs it with its workers, in processes of its own)
os.environ.setdefault("MANUAL_BACKPROP_PARALLEL", "off")
