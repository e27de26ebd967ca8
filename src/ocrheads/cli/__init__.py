"""The `ocrheads` command: a thin layer that parses arguments and calls the library. Each module registers one group
of commands; what the commands share (model options, options built from pinned pydantic models) is in common."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch

from ocrheads.cli import checks, data, demo, heads, interventions
from ocrheads.errors import OcrHeadsError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ocrheads", description="OCR heads and retrieval heads of VLMs.")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    for group in (data, heads, interventions, demo, checks):
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # as given, for records that say how a run was started
    try:
        return args.run(args) or 0
    except OcrHeadsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except torch.OutOfMemoryError as err:  # where no runner named the batch (loading, verify, overlay)
        reason = str(err).splitlines()[0] if str(err) else "out of memory"
        print(f"error: out of GPU memory ({reason}); use a smaller --dtype, or --device-map auto to spread the model "
              "over more GPUs", file=sys.stderr)  # fmt: skip
        return 2


__all__ = ["build_parser", "main"]
