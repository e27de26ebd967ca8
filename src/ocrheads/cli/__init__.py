"""The `ocrheads` command: a thin layer that parses arguments and calls the library. Each module holds one group of
commands (COMMANDS: name -> help and the function adding its arguments); what the commands share (model options,
options built from pinned pydantic models) is in common."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ocrheads.cli import checks, data, demo, heads, interventions
from ocrheads.errors import OcrHeadsError

GROUPS = (data, heads, interventions, demo, checks)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Every command, with the arguments of `command` alone (of every command where None): a command's arguments
    need its group's imports (scoring kinds, model classes, figures), seconds that `--help` and the other commands
    should not pay."""
    parser = argparse.ArgumentParser(prog="ocrheads", description="OCR heads and retrieval heads of VLMs.")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    for group in GROUPS:
        for name, (text, add_arguments) in group.COMMANDS.items():
            command_parser = sub.add_parser(name, help=text, description=text)
            if command in (None, name):
                add_arguments(command_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((arg for arg in argv if not arg.startswith("-")), "")  # the top level has no option but --help
    args = build_parser(command).parse_args(argv)
    args.argv = argv  # as given, for records that say how a run was started
    try:
        return args.run(args) or 0
    except OcrHeadsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        torch = sys.modules.get("torch")  # not imported: the error cannot be torch's
        if torch is None or not isinstance(err, torch.OutOfMemoryError):
            raise
        reason = str(err).splitlines()[0] if str(err) else "out of memory"  # where no runner named the batch
        print(f"error: out of GPU memory ({reason}); use a smaller --dtype, or --device-map auto to spread the model "
              "over more GPUs", file=sys.stderr)  # fmt: skip
        return 2


__all__ = ["build_parser", "main"]
