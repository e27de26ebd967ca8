"""The tested transformers range: declared once in pyproject.toml, once in ocrheads.compat, and warned about."""

import logging
import tomllib
from pathlib import Path

import pytest

from ocrheads.compat import TESTED_TRANSFORMERS, transformers_requirement, warn_if_untested, within_tested_range

ROOT = Path(__file__).resolve().parents[2]


def test_pyproject_declares_exactly_the_tested_range():
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    [declared] = [d for d in dependencies if d.startswith("transformers")]
    assert declared == transformers_requirement() == "transformers>=5.24.0,<5.26"
    assert [str(v) for v in TESTED_TRANSFORMERS] == ["5.24.0", "5.25.0"]


@pytest.mark.parametrize(
    ("installed", "inside"),
    [("5.23.0", False), ("5.24.0", True), ("5.24.1", True), ("5.25.0", True), ("5.25.3", True), ("5.26.0", False),
     ("6.0.0", False), ("5.24.0rc1", False)],
)  # fmt: skip
def test_the_range_admits_the_tested_minor_releases_and_their_patches(installed, inside):
    assert within_tested_range(installed) is inside


def test_a_version_outside_the_range_is_one_warning_line_once(caplog):
    warn_if_untested.cache_clear()
    with caplog.at_level(logging.WARNING, logger="ocrheads"):
        assert warn_if_untested("5.26.0") is True
        assert warn_if_untested("5.26.0") is True
        assert warn_if_untested("5.24.0") is False
    [record] = caplog.records
    message = record.getMessage()
    assert "\n" not in message
    assert "transformers 5.26.0 is installed" in message and "5.24.0 to 5.25.x" in message
    warn_if_untested.cache_clear()
