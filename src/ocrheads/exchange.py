"""Head files other tools read: export a run's scores or head list in their formats, and import theirs.

Score lists (every head's per-entry values):
- `paper`: {"l{L}_h{H}": [values]}, the paper's retrieval_score files (METHOD.md 2.5);
- `retrieval-head`: {"L-H": [values]} on one line, as nightdessert/Retrieval_Head writes head_score/<model>.json and
  reads it back with `json.loads(file.readline())` (its README and print_top_head.py);
- `sparsemm`: the same {"L-H": [values]} layout, as CR400AF-A/SparseMM writes visual_head/head_score/<model>.json
  (visual_head/qwen_visual_head.py; read in viz/vizhead.py).
Head lists (selected heads, best first):
- `qrhead`: a YAML config whose `attn_head_set` is "L-H,L-H,..." with `model_base_class` and `model_name_or_path`,
  as princeton-pli/QRHead ships in src/qrretriever/configs/*.yaml;
- `json`: {"L": [heads]}; `csv`: rank,layer,head,score.

Every export writes a side file, FILE.provenance.yaml, with what the run's config holds (model, revision if
known, library versions, prompt template hash, pixel settings, data seed and hash); the QRHead YAML also carries it
as comments. An import checks a given model's grid, and the side file's model when there is one.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from ocrheads import __version__
from ocrheads.atomic import atomic_write_text
from ocrheads.errors import OcrHeadsError
from ocrheads.heads import Head, HeadScores, check_heads
from ocrheads.provenance import revision
from ocrheads.run import RunDir, claim
from ocrheads.scoring.kinds import NAMES
from ocrheads.select import HeadSelection, SelectionRule

SCORE_FORMATS = ("paper", "retrieval-head", "sparsemm")
HEAD_FORMATS = ("qrhead", "json", "csv")
FORMATS = SCORE_FORMATS + HEAD_FORMATS
SUFFIX = {"paper": ".json", "retrieval-head": ".json", "sparsemm": ".json", "qrhead": ".yaml", "json": ".json",
          "csv": ".csv"}  # fmt: skip
_DASHED = re.compile(r"(\d+)-(\d+)")


def side_file(path: Path) -> Path:
    return path.with_name(path.name + ".provenance.yaml")


def provenance(run: Path, kind: str) -> dict:
    """What a head file needs to be trusted elsewhere: everything the kind's run config records about how it was
    scored."""
    config = RunDir(run).kind(kind).config()
    settings = config.get("model_settings", {})
    data = Path(config["data"]) if config.get("data") else None
    dataset = data / "dataset.yaml" if data else None
    seed = yaml.safe_load(dataset.read_text(encoding="utf-8")).get("seed") if dataset and dataset.is_file() else None
    found = {
        "exported_by": f"ocrheads {__version__}",
        "kind": kind,
        "run": str(run.resolve()),
        "model": config.get("model"),
        "model_revision": revision(Path(config["model"])) if config.get("model") else None,
        "family": config.get("family"),
        "grid": config.get("grid"),
        "versions": config.get("versions"),
        "prompt_template_sha256": settings.get("chat_template_sha256")
        or ("none: the checkpoint has no chat template" if settings else None),
        "dtype": settings.get("dtype"),
        "pixels": settings.get("pixels"),
        "image_backend": settings.get("image_backend"),
        "image_processor": settings.get("image_processor"),
        "data": config.get("data"),
        "data_sha256": config.get("data_sha256"),
        "data_seed": seed,
        "options": config.get("options"),
        "imported_from": config.get("imported_from"),
    }
    return {key: value for key, value in found.items() if value is not None}


def _write_provenance(path: Path, about: dict, fmt: str) -> None:
    atomic_write_text(side_file(path), yaml.safe_dump(about | {"format": fmt}, sort_keys=False, allow_unicode=True))


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def export_scores(scores: HeadScores, fmt: str, path: Path, about: dict) -> None:
    if fmt == "paper":
        scores.to_reference(path)
    else:
        lists = {f"{h.layer}-{h.head}": [_number(v) for v in values] for h, values in scores.lists.items()}
        atomic_write_text(path, json.dumps(lists, separators=(",", ":")) + "\n")  # one line: read with readline()
    _write_provenance(path, about, fmt)


def export_heads(heads: list[tuple[Head, float | None]], fmt: str, path: Path, about: dict) -> None:
    if fmt == "qrhead":
        comments = "".join(f"# {line}\n" for line in yaml.safe_dump(about, sort_keys=False).splitlines())
        model = about.get("model") or "unknown"
        config = {"attn_head_set": ",".join(f"{h.layer}-{h.head}" for h, _ in heads),
                  "model_base_class": Path(model).name, "model_name_or_path": model}  # fmt: skip
        text = "# ocrheads export (QRHead retriever config); provenance:\n" + comments + yaml.safe_dump(config)
    elif fmt == "json":
        layers: dict[str, list[int]] = {}
        for head, _ in sorted(heads):
            layers.setdefault(str(head.layer), []).append(head.head)
        text = json.dumps(layers, indent=1) + "\n"
    else:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["rank", "layer", "head", "score"])
        writer.writerows([rank, h.layer, h.head, "" if s is None else s] for rank, (h, s) in enumerate(heads, 1))
        text = buffer.getvalue()
    atomic_write_text(path, text)
    _write_provenance(path, about, fmt)


def export_run(run: Path, kind: str, fmt: str, out: Path | None = None, top: int | None = None) -> Path:
    """Write `run`'s `kind` scores (score formats) or head list (head formats: the run's selection, or its `top`
    best heads) as `fmt`; returns the file written (its provenance sits beside it)."""
    from ocrheads.select import ranked, ranking_scores, select

    if fmt not in FORMATS:
        raise OcrHeadsError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")
    directory = RunDir(run)
    scores = directory.scores(NAMES).get(kind)
    if scores is None:
        raise OcrHeadsError(f"{run} holds no {kind} scores; run `ocrheads score {kind} --out {run}` first")
    out = out or directory.exports / f"{kind}-{fmt}{SUFFIX[fmt]}"
    about = provenance(run, kind)
    if fmt in SCORE_FORMATS:
        export_scores(scores, fmt, out, about)
        return out
    rule = directory.last_rule(NAMES)
    values = ranking_scores(scores, rule)
    if top is not None:
        heads = ranked(scores, rule)[:top]
    elif (selection := directory.selection(kind)) is not None:
        heads = list(selection.heads)
    else:
        heads = list(select(scores, rule).heads)
    about |= {"heads": "top " + str(top) if top else "selected", "rule": rule.__dict__}
    export_heads([(h, round(float(values[h.layer, h.head]), 6)) for h in heads], fmt, out, about)
    return out


@dataclass(frozen=True)
class Imported:
    """What a file held: score lists, or a ranked head list (with scores where the format has them)."""

    scores: HeadScores | None = None
    heads: tuple[tuple[Head, float | None], ...] = ()


def _wrong(path: Path, fmt: str, what: str) -> OcrHeadsError:
    return OcrHeadsError(
        f"{path} is not a {fmt} file ({what}); pass the format it is in with --from ({', '.join(FORMATS)})"
    )


def read_file(path: Path, fmt: str, grid: tuple[int, int] | None = None) -> Imported:
    """Read a head file of format `fmt`; heads outside `grid` (a model's) are refused."""
    if fmt not in FORMATS:
        raise OcrHeadsError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")
    if not path.is_file():
        raise OcrHeadsError(f"there is no file {path}")
    if fmt == "paper":
        scores = HeadScores.from_reference(path)
        if grid:
            check_heads(list(scores.lists), grid, str(path))
        found = Imported(scores=HeadScores(scores.lists, *grid) if grid else scores)
    elif fmt in SCORE_FORMATS:
        found = Imported(scores=_dashed_scores(path, fmt, grid))
    else:
        found = Imported(heads=tuple(_head_list(path, fmt)))
        if grid:
            check_heads([head for head, _ in found.heads], grid, str(path))
    return found


def _load_json(path: Path, fmt: str):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _wrong(path, fmt, f"not JSON: {err}") from None


def _dashed_scores(path: Path, fmt: str, grid: tuple[int, int] | None) -> HeadScores:
    raw = _load_json(path, fmt)
    if not isinstance(raw, dict) or not raw:
        raise _wrong(path, fmt, 'it must be a JSON object {"layer-head": [scores]}')
    lists = {}
    for key, values in raw.items():
        match = _DASHED.fullmatch(str(key))
        if match is None:
            raise _wrong(path, fmt, f'key {key!r} is not "layer-head", e.g. "16-19"')
        if not isinstance(values, list) or not all(_finite(v) for v in values):
            raise _wrong(path, fmt, f"head {key} must map to a list of finite numbers")
        lists[Head(int(match[1]), int(match[2]))] = np.array(values, dtype=np.float64)
    if grid:
        check_heads(list(lists), grid, str(path))
    layers, heads = grid or (max(h.layer for h in lists) + 1, max(h.head for h in lists) + 1)
    return HeadScores(lists, layers, heads)


def _finite(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _head_list(path: Path, fmt: str) -> list[tuple[Head, float | None]]:
    text = path.read_text(encoding="utf-8")
    if fmt == "qrhead":
        try:
            config = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise _wrong(path, fmt, f"not YAML: {err}") from None
        if not isinstance(config, dict) or not isinstance(config.get("attn_head_set"), str):
            raise _wrong(path, fmt, 'no attn_head_set: "L-H,L-H,..."')
        names = [name.strip() for name in config["attn_head_set"].split(",") if name.strip()]
        if not all(_DASHED.fullmatch(name) for name in names):
            raise _wrong(path, fmt, "attn_head_set must list heads as layer-head, e.g. 14-22")
        return [(Head(*map(int, name.split("-"))), None) for name in names]
    if fmt == "json":
        raw = _load_json(path, fmt)
        if not isinstance(raw, dict) or not all(str(k).isdigit() and isinstance(v, list) for k, v in raw.items()):
            raise _wrong(path, fmt, 'it must be a JSON object {"layer": [heads]}')
        return [(Head(int(layer), int(head)), None) for layer, heads in raw.items() for head in heads]
    reader = csv.DictReader(io.StringIO(text))
    if not {"layer", "head"} <= set(reader.fieldnames or ()):
        raise _wrong(path, fmt, "it needs a header with layer and head columns")
    try:
        return [(Head(int(r["layer"]), int(r["head"])), float(r["score"]) if r.get("score") else None) for r in reader]
    except ValueError as err:
        raise _wrong(path, fmt, f"a layer, head or score is not a number: {err}") from None


def check_model(path: Path, model: str | None) -> None:
    """Refuse a file whose provenance names another model than `model`."""
    side = side_file(path)
    if model is None or not side.is_file():
        return
    recorded = (yaml.safe_load(side.read_text(encoding="utf-8")) or {}).get("model")
    if recorded and recorded != model:
        raise OcrHeadsError(f"{path} holds heads of {recorded} (its {side.name}), not of {model}")


def import_file(path: Path, fmt: str, kind: str, run: Path, grid: tuple[int, int] | None = None,
                model: str | None = None) -> Path:  # fmt: skip
    """Score lists become the run's `kind` scores (its folder held and its config pinned as a scoring run's are);
    head lists become the kind's head selection. Returns the file written."""
    check_model(path, model)
    found = read_file(path, fmt, grid)
    record = {"kind": kind, "imported_from": str(path), "format": fmt} | ({"model": model} if model else {})
    directory = RunDir(run)
    if found.scores is not None:
        folder = directory.kind(kind)
        claim(folder.folder, record | {"grid": list(found.scores.grid)})
        folder.write_imported(found.scores)
        return folder.scores_path
    heads = tuple(head for head, _ in found.heads)
    if not heads:
        raise OcrHeadsError(f"{path} lists no heads")
    grid = grid or (max(h.layer for h in heads) + 1, max(h.head for h in heads) + 1)
    selection = HeadSelection(heads, tuple(s for _, s in found.heads), SelectionRule(), grid, f"{path} ({fmt})")
    directory.write_selection(kind, selection)
    return directory.heads_path(kind)
