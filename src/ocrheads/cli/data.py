"""`ocrheads data`: generate synthetic text-in-image tasks, and draw their answer boxes."""

from __future__ import annotations

import argparse
from pathlib import Path

from ocrheads.cli.common import Subparsers, pick_samples, render_options


def _add_data(data: argparse.ArgumentParser) -> None:
    from ocrheads.data.docs import KINDS
    from ocrheads.data.passkey import CASE_STUDY_ALPHABET, DEFAULT_LENGTHS

    tasks = data.add_subparsers(required=True, metavar="TASK")

    passkey = _generator(tasks, "passkey", "a numeric pass key hidden in filler text (the paper's main task)")
    passkey.add_argument("--n", type=int, default=600)
    passkey.add_argument("--lengths", type=int, nargs="+", default=list(DEFAULT_LENGTHS), help="haystack characters")
    passkey.add_argument("--digits", type=int, default=5, help="pass key length")
    passkey.add_argument("--no-intro", dest="intro", action="store_false", help="leave out the paper's soft prompt")

    niah = _generator(tasks, "niah", "a fact sentence (needle) in filler text, asked about afterwards")
    niah.add_argument("--n", type=int, default=600)
    niah.add_argument("--lengths", type=int, nargs="+", default=list(DEFAULT_LENGTHS), help="haystack characters")
    niah.add_argument("--needles", help="JSONL of {needle, question, answer}; default: seeded Faker needles")

    chars = _generator(tasks, "chars", "single-character pass keys, the paper's per-character case study")
    chars.add_argument("--per-char", type=int, default=100)
    chars.add_argument("--alphabet", default=CASE_STUDY_ALPHABET)
    chars.add_argument("--length", type=int, default=1024, help="haystack characters")

    docs = _generator(tasks, "docs", "synthetic forms, receipts, invoices and tables with key/value questions")
    docs.add_argument("--n", type=int, default=200)
    docs.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))

    show = tasks.add_parser("show", help="draw every answer box on a sample's evidence pages")
    show.add_argument("dataset", type=Path)
    show.add_argument("--sample", nargs="+", help="sample ids (default: all)")
    show.add_argument("--out", type=Path, help="default: DATASET/overlays")
    show.add_argument("--scale", type=int, default=2, help="enlarge pages this many times")
    show.set_defaults(run=_run_show)


COMMANDS = {"data": ("generate synthetic text-in-image tasks, or draw their answer boxes", _add_data)}


def _generator(sub: Subparsers, task: str, help_text: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(task, help=help_text, description=help_text)
    parser.add_argument("--out", required=True, type=Path, help="dataset folder to create")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--modality", choices=("image", "text"), default="image", help="pages, or plain text")
    parser.add_argument("--text-source", default="faker", help="faker, a .txt/.jsonl file, or hf:NAME[:CONFIG[:SPLIT]]")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    parser.add_argument("--overlays", type=int, default=0, metavar="N", help="draw answer boxes of the first N samples")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    render_options(parser)
    parser.set_defaults(run=_run_generate, task=task)
    return parser


def _run_generate(args: argparse.Namespace) -> None:
    from ocrheads.data.generate import OVERLAYS, generate
    from ocrheads.data.samples import RenderStyle

    style = RenderStyle(
        args.font[0], args.font_size, args.wrap_width, args.lines_per_page, args.margin, args.pitch, args.line_height
    )
    options = {
        key: value
        for key in ("n", "lengths", "digits", "intro", "needles", "per_char", "alphabet", "length", "kinds")
        if (value := getattr(args, key, None)) is not None
    }
    samples = generate(
        args.task,
        args.out,
        seed=args.seed,
        modality=args.modality,
        text_source=args.text_source,
        style=style,
        overwrite=args.overwrite,
        overlays=args.overlays,
        progress=not args.quiet,
        fonts=args.font if len(args.font) > 1 else (),
        **options,
    )
    print(f"wrote {len(samples)} {args.task} samples to {args.out}")
    if args.overlays and args.modality == "image":
        print(f"answer-box overlays in {args.out / OVERLAYS}")


def _run_show(args: argparse.Namespace) -> None:
    from ocrheads.data.generate import OVERLAYS
    from ocrheads.data.manifest import read_manifest
    from ocrheads.data.overlay import write_overlays

    samples = read_manifest(args.dataset)
    if args.sample:
        samples = pick_samples(samples, args.sample, args.dataset)
    out = args.out or args.dataset / OVERLAYS
    written = write_overlays(args.dataset, samples, out, scale=args.scale)
    print(f"wrote {len(written)} overlay pages to {out}")
