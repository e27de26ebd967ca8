"""What several commands share: model and load options, rendering options, sample picking, selection rules, and
options built from the pydantic models that a run pins."""

from __future__ import annotations

import argparse
import types
import typing
from pathlib import Path

import yaml
from pydantic import BaseModel

from ocrheads.device_names import DEVICES, DTYPE_NAMES
from ocrheads.errors import OcrHeadsError

Subparsers = argparse._SubParsersAction


def model_options(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    group = parser.add_argument_group("model")
    if required:
        group.add_argument("--model", required=True, help="hub id or local checkpoint folder")
    group.add_argument("--device", default="cpu", help=f"{DEVICES} (default %(default)s)")
    group.add_argument("--dtype", choices=DTYPE_NAMES, default="auto", help="auto: the checkpoint's own")
    group.add_argument("--device-map", choices=("auto",), help="spread a model too big for one GPU over all GPUs")
    group.add_argument("--pixels", nargs="+", metavar="NAME=VALUE", help="processor bounds, e.g. max_pixels=200704")
    text = "chat: prompts through the checkpoint's chat template (default); paper: the paper code's raw prompts "
    text += "(InternVL: every page in one <img> block, no template)"
    group.add_argument("--prompt-format", choices=("chat", "paper"), help=text)
    text = "token ids that end an answer; eos: the checkpoint's end-of-sequence ids (default: eos)"
    group.add_argument("--stop-tokens", nargs="+", metavar="ID", help=text)
    text = "penalty on tokens already in the sequence (1: none; default: the checkpoint's generation config's)"
    group.add_argument("--repetition-penalty", type=float, help=text)
    text = "folder for the native conversions of remote-code InternVL checkpoints (default: beside the hub cache)"
    group.add_argument("--convert-cache", type=Path, help=text)


def bad_page_option(parser: argparse.ArgumentParser) -> None:
    text = "stop at the first sample whose page cannot be read (default: record it as not run, with why, and go on)"
    parser.add_argument("--stop-at-bad-page", action="store_true", help=text)


def pixel_options(pairs: list[str] | None) -> dict:
    options = {}
    for pair in pairs or []:
        name, _, value = pair.partition("=")
        if not value:
            raise OcrHeadsError(f"--pixels takes NAME=VALUE pairs, got {pair!r}")
        options[name] = yaml.safe_load(value)
    return options


def load_options(args: argparse.Namespace) -> dict:
    """How the command line asks a checkpoint to be loaded (ModelSpec's fields besides its name)."""
    from ocrheads.models.decoding import parse_stop_tokens

    decoding = {"stop_tokens": parse_stop_tokens(args.stop_tokens), "repetition_penalty": args.repetition_penalty}
    return dict(device=args.device, dtype=args.dtype, device_map=args.device_map, pixels=pixel_options(args.pixels),
                convert_cache=args.convert_cache, prompt_format=args.prompt_format,
                decoding={name: value for name, value in decoding.items() if value is not None})  # fmt: skip


def model_spec(args: argparse.Namespace):
    """The checkpoint and its load options, checked (config only) but not loaded."""
    from ocrheads.models import ModelSpec

    spec = ModelSpec(str(args.model), **load_options(args))
    spec.grid  # noqa: B018 - reads the config: a missing checkpoint or a bad --pixels fails here, in one line
    return spec


def render_options(parser: argparse.ArgumentParser) -> None:
    from ocrheads.data.fonts import NAMED_FONTS
    from ocrheads.data.samples import RenderStyle

    default = RenderStyle()
    group = parser.add_argument_group("rendering")
    group.add_argument(
        "--font", nargs="+", default=[default.font],
        help=f"{', '.join(NAMED_FONTS)}, or a .ttf/.otf path; several fonts are used in turn, sample by sample",
    )  # fmt: skip
    group.add_argument("--font-size", type=int, default=default.font_size, help="pixels (default %(default)s)")
    group.add_argument("--wrap-width", type=int, default=default.wrap_width, help="characters per line")
    group.add_argument("--lines-per-page", type=int, default=default.lines_per_page)
    group.add_argument("--margin", type=int, default=default.margin, help="pixels around the text")
    group.add_argument("--pitch", type=int, help="typewriter layout: every character centred in a cell this wide")
    group.add_argument("--line-height", type=int, help="fixed line spacing in pixels (default: fit the font)")


def pick_samples(samples: list, names: list[str], dataset: Path) -> list:
    by_id = {sample.id: sample for sample in samples}
    missing = [name for name in names if name not in by_id]
    if missing:
        raise OcrHeadsError(f"no sample {', '.join(missing)} in {dataset}; ids look like {samples[0].id}")
    return [by_id[name] for name in names]


def selection_rule(args: argparse.Namespace):
    from ocrheads.select import SelectionRule

    return SelectionRule(args.rule, threshold=args.threshold)


def field_options(group, model: type[BaseModel], names: list[str] | None = None, skip: set[str] = frozenset()) -> None:
    """One option per field of `model` (all, or `names`, less `skip`): choices from a Literal, a flag for a bool, the
    type of a number; each defaults to None (the model's own default then applies, as its help says)."""
    for name, field in model.model_fields.items():
        if (names is not None and name not in names) or name in skip:
            continue
        flag, annotation = f"--{name.replace('_', '-')}", field.annotation
        if typing.get_origin(annotation) in (typing.Union, types.UnionType):  # int | None
            annotation = next(arg for arg in typing.get_args(annotation) if arg is not type(None))
        text = f"{field.description}; default {field.default}" if field.description else f"default {field.default}"
        if typing.get_origin(annotation) is typing.Literal:
            group.add_argument(flag, choices=typing.get_args(annotation), help=text)
        elif annotation is bool:
            group.add_argument(flag, action="store_true", default=None, help=field.description)
        else:
            group.add_argument(flag, type=annotation, help=text)


def given_fields(args: argparse.Namespace, model: type[BaseModel]) -> dict:
    """The fields of `model` the command line gave (None: not given)."""
    return {name: value for name in model.model_fields if (value := getattr(args, name, None)) is not None}
