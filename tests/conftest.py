"""Shared test settings: one passive OpenMP thread pool, so two busy cores do not make torch crawl; offline.

With OCRHEADS_TEST_DEVICE=virtual every test runs under the virtual-device mode with its models on a virtual GPU
(ocrheads.testing.virtual_devices): the CPU check of what the same tests would do on a GPU, test helpers included.
"""

import os

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test may reach the hub; without it a miss retries for 20 s


@pytest.fixture(autouse=True)
def _virtual_gpu_when_asked():
    if os.environ.get("OCRHEADS_TEST_DEVICE") != "virtual":
        yield
        return
    from ocrheads.testing.virtual_devices import virtual_gpus

    with virtual_gpus("single"):
        yield
