"""Commands on a run's heads: score (every registered kind), import and export head files, select, analyze, report,
and draw where heads look."""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

from ocrheads.cli.common import (
    bad_page_option,
    field_options,
    given_fields,
    model_options,
    model_spec,
    pick_samples,
    selection_rule,
)
from ocrheads.distributed import current_shard


def _add_score(score: argparse.ArgumentParser) -> None:
    from ocrheads.scoring.kinds import KINDS, NAMES
    from ocrheads.scoring.options import MAX_BATCH_TOKENS, PRESETS

    score.add_argument("kind", choices=NAMES, help="; ".join(f"{k.name}: {k.summary}" for k in KINDS.values()))
    score.add_argument("--data", required=True, type=Path, help="dataset folder (the samples the kind scores)")
    score.add_argument("--out", required=True, type=Path, help="run directory")
    text = "paper-code: the paper code's scoring choices and, for the families it ran (Qwen2-VL, InternVL), its "
    text += "prompts, pixels and decoding; options given beside it win"
    score.add_argument("--preset", choices=list(PRESETS), default="default", help=text)
    score.add_argument("--batch-size", type=int, default=1)
    by_options: dict[type, list[str]] = {}
    for kind in KINDS.values():
        by_options.setdefault(kind.options, []).append(kind.name)
    added: set[str] = set()  # options two kinds share (answers, max_new_tokens) are given once
    for options, names in by_options.items():
        field_options(score.add_argument_group(", ".join(names), options.__doc__), options, skip=added)
        added |= set(options.model_fields)
    text = "padded tokens per pass of kinds with a backward pass (causal): a batch is split into micro-batches of at "
    text += "most this many (memory)"
    score.add_argument("--max-batch-tokens", type=int, default=MAX_BATCH_TOKENS, help=text + " (default %(default)s)")
    score.add_argument("--quiet", action="store_true")
    bad_page_option(score)
    model_options(score)
    score.set_defaults(run=_run_score)


def _add_scores(scores: argparse.ArgumentParser) -> None:
    from ocrheads.exchange import FORMATS
    from ocrheads.scoring.kinds import NAMES

    actions = scores.add_subparsers(required=True, metavar="ACTION")
    text = "read a score file (into RUN's KIND scores) or a head list (into RUN's KIND selection)"
    imports = actions.add_parser("import", help=text, description=text)
    imports.add_argument("file", type=Path)
    imports.add_argument("--from", choices=FORMATS, default="paper", help="its format (default %(default)s)")
    imports.add_argument("--kind", choices=NAMES, required=True)
    imports.add_argument("--out", type=Path, required=True, help="run directory")
    imports.add_argument("--model", help="the checkpoint the heads are of: its grid and name are checked")
    imports.set_defaults(run=_run_import)


def _add_heads(heads: argparse.ArgumentParser) -> None:
    from ocrheads.exchange import FORMATS
    from ocrheads.scoring.kinds import NAMES

    actions = heads.add_subparsers(required=True, metavar="ACTION")
    text = "write a run's scores (paper, retrieval-head, sparsemm) or selected heads (qrhead, json, csv)"
    export = actions.add_parser("export", help=text, description=text)
    export.add_argument("run_dir", metavar="RUN", type=Path)
    export.add_argument("--to", choices=FORMATS, required=True)
    export.add_argument("--kind", choices=NAMES, default=NAMES[0])
    export.add_argument("--out", type=Path, help="file to write (default: in RUN's exports)")
    export.add_argument("--top", type=int, help="head lists: the K best heads instead of the selected ones")
    export.set_defaults(run=_run_export)


def _add_selection(parser: argparse.ArgumentParser, name: str) -> None:
    """select and analyze: a run and the selection rule."""
    from ocrheads.select import RULES

    parser.add_argument("run_dir", metavar="RUN", type=Path, help="run directory")
    parser.add_argument("--rule", choices=RULES, default="paper")
    parser.add_argument("--threshold", type=float, default=0.1)
    if name == "analyze":
        parser.add_argument("--top-k", type=int, default=10)
    parser.set_defaults(run=_run_select if name == "select" else _run_analyze)


def _add_report(report: argparse.ArgumentParser) -> None:
    from ocrheads.select import RULES

    report.add_argument("run_dir", metavar="RUN", type=Path, help="run directory")
    report.add_argument("--rule", choices=RULES, help="default: the rule of the last select, else paper")
    report.add_argument("--threshold", type=float, default=0.1)
    report.set_defaults(run=_run_report)


def _add_overlay(overlay: argparse.ArgumentParser) -> None:
    overlay.add_argument("run_dir", metavar="RUN", type=Path, help="run directory; overlays go into it")
    overlay.add_argument("--data", required=True, type=Path, help="dataset folder of image samples")
    overlay.add_argument("--sample", required=True, nargs="+", help="sample ids")
    overlay.add_argument("--heads", nargs="+", metavar="lL_hH", help="default: the --top best OCR heads of RUN")
    overlay.add_argument("--top", type=int, default=3)
    bad_page_option(overlay)
    model_options(overlay)
    overlay.set_defaults(run=_run_overlay)


COMMANDS = {
    "score": ("score every head of a model as one kind of head", _add_score),
    "scores": ("import score files and head lists of the paper and of other tools", _add_scores),
    "heads": ("export a run's head scores or head list for other tools", _add_heads),
    "select": ("select each kind's heads of a run", partial(_add_selection, name="select")),
    "analyze": (
        "sparsity, similarity and activation frequency of a run's heads",
        partial(_add_selection, name="analyze"),
    ),
    "report": ("one self-contained HTML page with every figure and table of a run", _add_report),
    "overlay": ("draw where heads look on a sample's pages while it writes the answer", _add_overlay),
}


def _run_score(args: argparse.Namespace) -> None:
    from ocrheads.scoring.kinds import scoring_kind
    from ocrheads.scoring.options import PAPER_CODE
    from ocrheads.scoring.runner import score

    kind = scoring_kind(args.kind)
    spec, given = model_spec(args), given_fields(args, kind.options)
    if args.preset == PAPER_CODE:
        spec, given = _paper_code(spec, kind, given)
    options = kind.make_options(args.preset, given)
    progress = not args.quiet
    folder = score(args.kind, spec, args.data, args.out, options, model_name=args.model,
                   batch_size=args.batch_size, max_batch_tokens=args.max_batch_tokens,
                   stop_at_bad_page=args.stop_at_bad_page, progress=progress)  # fmt: skip
    if current_shard().leader:
        _report_outcomes(folder)


def _paper_code(spec, kind, given: dict):
    """The checkpoint and the kind's options as the paper's code ran the checkpoint's family, under what was given."""
    from ocrheads.models import adapter_class
    from ocrheads.scoring.options import PAPER_CODE

    family = adapter_class(spec.config)
    if family.paper_code is None:
        print(f"note: the paper's code ran no {family.family} model; --preset {PAPER_CODE} sets its scoring choices "
              "only", file=sys.stderr)  # fmt: skip
        return spec, given
    if "max_new_tokens" in kind.options.model_fields:
        given = {"max_new_tokens": family.paper_code.max_new_tokens} | given
    return spec.with_paper_code(), given


def _report_outcomes(folder: Path) -> None:
    from ocrheads.run import KindRun

    run = KindRun(folder)
    summary = run.outcome_summary()
    print(f"scored {summary['scored']} of {summary['total']} samples into {folder}")
    for reason, count in summary["reasons"].items():
        print(f"  not scored ({count}): {reason}")
    if not summary["scored"]:
        print(f"  no sample was scored: the score files are empty; see {run.outcomes_path} for each sample")


def _run_import(args: argparse.Namespace) -> None:
    from ocrheads.exchange import import_file

    grid = None
    if args.model:  # the model code only to check a given checkpoint's grid
        from ocrheads.models import checkpoint_config, checkpoint_grid

        grid = checkpoint_grid(checkpoint_config(args.model))
    written = import_file(args.file, getattr(args, "from"), args.kind, args.out, grid, args.model)
    print(f"imported {args.file} ({getattr(args, 'from')}) into {written}")


def _run_export(args: argparse.Namespace) -> None:
    from ocrheads.exchange import export_run, side_file

    written = export_run(args.run_dir, args.kind, args.to, args.out, args.top)
    print(f"wrote {written} and {side_file(written).name}")


def _run_select(args: argparse.Namespace) -> None:
    from ocrheads.analysis.runs import select_run
    from ocrheads.run import RunDir

    for kind, selection in select_run(args.run_dir, selection_rule(args)).items():
        robust = selection.robust["heads"]
        print(f"{kind}: {len(selection.heads)} heads ({robust} at their interval's lower end) -> "
              f"{RunDir(args.run_dir).heads_path(kind)}")  # fmt: skip
        print("  top: " + ", ".join(head.name for head in selection.heads[:10]))


def _run_analyze(args: argparse.Namespace) -> None:
    from ocrheads.analysis.runs import analyze_run
    from ocrheads.run import RunDir
    from ocrheads.scoring.kinds import COPYING, NAMES, READING

    found = analyze_run(args.run_dir, selection_rule(args), top_k=args.top_k)
    for kind in NAMES:
        if kind in found:
            print(f"{kind}: {found[kind]['selected']} heads above the rule; bins {found[kind]['bins']}")
    if "similarity" in found:
        print(f"{READING} vs {COPYING} heads: {found['similarity']}")
    print(f"wrote {RunDir(args.run_dir).analysis_path}")


def _run_report(args: argparse.Namespace) -> None:
    from ocrheads.report.build import build_report

    rule = selection_rule(args) if args.rule else None
    print(f"wrote {build_report(args.run_dir, rule)}")


def _run_overlay(args: argparse.Namespace) -> None:
    from ocrheads.data.manifest import read_manifest
    from ocrheads.heads import Head
    from ocrheads.run import RunDir
    from ocrheads.scoring.kinds import NAMES, READING
    from ocrheads.scoring.overlays import write_overlays

    samples = pick_samples(read_manifest(args.data), args.sample, args.data)
    spec = model_spec(args)
    run = RunDir(args.run_dir)
    if args.heads:
        heads = [Head.parse(name) for name in args.heads]
    else:
        heads = run.top_heads(NAMES, READING, args.top, spec.grid)
    written, bad = write_overlays(spec, args.data, samples, heads, run.overlays, stop_at_bad_page=args.stop_at_bad_page)
    print(f"wrote {len(written)} attention overlays to {run.overlays}")
    for err in bad:
        print(f"  not drawn: sample {err.sample}: {err.reason}")
