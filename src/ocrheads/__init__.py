"""ocrheads: find and intervene on the attention heads that vision-language models use to read text in images."""

__version__ = "0.1.0"  # the one place it is written (pyproject.toml reads it)

from ocrheads.data.generate import generate
from ocrheads.data.manifest import Sample, read_manifest
from ocrheads.errors import DataError, OcrHeadsError

__all__ = ["DataError", "OcrHeadsError", "Sample", "generate", "read_manifest"]
