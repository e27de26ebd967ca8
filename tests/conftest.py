"""Shared test settings: one passive OpenMP thread pool, so two busy cores do not make torch crawl."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
