"""A run directory is held by one process at a time, and a config change is refused."""

import subprocess
import sys

import pytest

from ocrheads.errors import OcrHeadsError
from ocrheads.run import claim

HOLD = """
import sys, time
from pathlib import Path
from ocrheads.run import claim
claim(Path(sys.argv[1]), {"kind": "ocr"})
print("held", flush=True)
time.sleep(60)
"""


def test_a_second_process_is_refused_until_the_first_is_gone(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = (run / "config.yaml").read_bytes()
        with pytest.raises(OcrHeadsError, match=rf"in use by another run \(process {holder.pid}\); wait for it"):
            claim(run, {"kind": "ocr"})
        assert (run / "config.yaml").read_bytes() == before
    finally:
        holder.kill()
        holder.wait()
    claim(run, {"kind": "ocr"})  # a killed holder lets go
    claim(run, {"kind": "ocr"})  # the same process may claim again


def test_a_different_config_is_refused_naming_each_setting_then_and_now(tmp_path):
    first = {"kind": "ocr", "seed": 1, "model": {"dtype": "float32", "pixels": {"max_pixels": 200704}}}
    claim(tmp_path / "run", first)
    again = {"kind": "ocr", "seed": 2, "model": {"dtype": "float32", "pixels": {"min_pixels": 3136}}}
    with pytest.raises(OcrHeadsError) as refused:
        claim(tmp_path / "run", again)
    message = str(refused.value)
    assert "seed: 1 -> 2" in message
    assert "model.pixels.max_pixels: 200704 -> (not set)" in message
    assert "model.pixels.min_pixels: (not set) -> 3136" in message
    assert "dtype" not in message and "use another --out" in message
    assert "did not record it yet" in message  # min_pixels was not set before
    claim(tmp_path / "run", first | {"versions": {"torch": "other"}})  # library versions may change on a resume
    with pytest.raises(OcrHeadsError) as refused:
        claim(tmp_path / "run", first | {"seed": 3})
    assert "seed: 1 -> 3" in str(refused.value) and "did not record" not in str(refused.value)
