"""Shared test settings: one passive OpenMP thread pool, so two busy cores do not make torch crawl; offline."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test may reach the hub; without it a miss retries for 20 s
