"""`ocrheads verify` (the parity check of a checkpoint), `ocrheads models` (which adapter a checkpoint gets, and what
the geometry probe finds) and `ocrheads convert` (remote-code InternVL to native)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ocrheads.cli.common import model_options, model_spec


def _add_verify(verify: argparse.ArgumentParser) -> None:
    model_options(verify)
    verify.add_argument("--data", type=Path, help="dataset folder (default: one generated passkey page)")
    verify.add_argument("--sample", help="sample id in --data")
    verify.add_argument("--eager-budget-gib", type=float, default=2.0, help="largest eager attention to compare")
    verify.set_defaults(run=_run_verify)


def _add_convert(convert: argparse.ArgumentParser) -> None:
    convert.add_argument("checkpoint", help="remote-code checkpoint folder, or its hub id")
    convert.add_argument("out", type=Path, help="folder to write")
    convert.add_argument("--system-message", help="the prompt's system message (default: the checkpoint's own)")
    convert.add_argument("--overwrite", action="store_true", help="replace OUT once the new folder is complete")
    convert.set_defaults(run=_run_convert)


def _page_size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    if not (width.isdigit() and height.isdigit() and int(width) > 0 and int(height) > 0):
        raise argparse.ArgumentTypeError(f"a page size is WIDTHxHEIGHT in pixels, e.g. 850x1100; got {text!r}")
    return int(width), int(height)


def _add_models(models: argparse.ArgumentParser) -> None:
    model_options(models)
    text = "page sizes to probe, WIDTHxHEIGHT (default: 850x1100, a letter page at 100 dpi)"
    models.add_argument("--page", nargs="+", type=_page_size, default=[(850, 1100)], metavar="WxH", help=text)
    models.set_defaults(run=_run_models)


COMMANDS = {
    "verify": (
        "check, once per checkpoint, transformers version or GPU, that captured attention is exact and the image "
        "geometry right; exits 1 when a check fails",
        _add_verify,
    ),
    "models": (
        "say which adapter a checkpoint gets and, for one without a hand-written adapter, what the geometry probe "
        "measures of its pages",
        _add_models,
    ),
    "convert": (
        "write a native transformers checkpoint from a remote-code InternVL one (internvl_chat: InternVL 1.5, 2, "
        "2.5 with InternLM2), weights streamed tensor by tensor; every --model does this once by itself",
        _add_convert,
    ),
}


def _run_verify(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ocrheads.verify import checks_table, verify_checkpoint

    spec = model_spec(args)
    sample, checks = verify_checkpoint(spec, args.data, args.sample, eager_budget=int(args.eager_budget_gib * 2**30))
    Console().print(checks_table(checks, f"ocrheads verify: {args.model} ({args.dtype}, {args.device}) on {sample}"))
    failed = [check.name for check in checks if check.status == "fail"]
    print(f"{len(failed)} check(s) failed: {', '.join(failed)}" if failed else "all checks passed")
    return 1 if failed else 0


def _run_convert(args: argparse.Namespace) -> None:
    from ocrheads.models import convert

    source = convert.source_folder(str(args.checkpoint))
    out = convert.convert(source, args.out, system_message=args.system_message, overwrite=args.overwrite)
    print(f"wrote the native InternVL checkpoint {out} (see {out / 'CONVERTED.md'})")


def _run_models(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    from ocrheads.models import adapter_class
    from ocrheads.models.generic import GenericAdapter

    spec = model_spec(args)
    family = adapter_class(spec.config)
    if family is not GenericAdapter:
        print(f"{args.model}: model type {spec.config.model_type}, hand-written adapter {family.family}")
        return
    print(f"{args.model}: model type {spec.config.model_type}, no hand-written adapter: geometry probed")
    adapter = spec.load()
    table = Table(title=f"what the probe measured ({spec.config.model_type})")
    for column in ("page", "image tokens", "seeing no pixels", "seeing most of the page", "views (cell w x h: tokens)"):
        table.add_column(column, overflow="fold")
    for width, height in args.page:
        probed = adapter.probed((width, height))
        views = ", ".join(f"{w:g} x {h:g}: {count}" for (w, h), count in probed.views().items())
        table.add_row(f"{width}x{height}", str(probed.tokens), str(probed.blind), str(probed.global_rows), views)
    Console(width=160).print(table)
    if not all(adapter.probed(size).local for size in args.page):
        print("its image tokens see whole pages (a resampler): no OCR scores; retrieval and causal scores run")
