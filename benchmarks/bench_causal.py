"""Causal head scores on the bundled demo model: how well each method (the first-order estimate, integrated
gradients with K steps, and a two-stage search that ablates each sample's top estimated heads) ranks the 48 heads
against exact ablation, per modality and ablation, where they disagree most (and whether those heads' attention is
saturated, the failure AtP* names), and what each costs against a plain teacher-forced forward pass.

Run: OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_causal.py [--samples 40] [--part cost] [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from ocrheads.attention import Capture, attention_session, install
from ocrheads.data.generate import generate
from ocrheads.data.manifest import open_page, read_manifest
from ocrheads.demo.settings import BUNDLED_MODEL
from ocrheads.demo.task import DemoTask
from ocrheads.eval.means import prompt_means
from ocrheads.models import load_adapter
from ocrheads.scoring.answers import encode_samples, gold_ids
from ocrheads.scoring.attribution import estimate, exact, largest_drops, teacher_forced

SEED = 4242


def dataset(folder: Path, modality: str, n: int, length: int) -> list:
    task = DemoTask()
    fonts = task.fonts if modality == "image" else ()
    generate("passkey", folder, n=n, seed=SEED, modality=modality, style=task.style(0), fonts=fonts,
             lengths=(length,), digits=task.digits, intro=task.intro, progress=False)  # fmt: skip
    return read_manifest(folder)


def forced_batches(adapter, folder: Path, samples: list, batch: int):
    for start in range(0, len(samples), batch):
        chunk = samples[start : start + batch]
        pages = [[open_page(folder, s, p) for p in range(len(s.pages))] for s in chunk]
        encoded = encode_samples(adapter, chunk, pages)
        yield teacher_forced(encoded, gold_ids(adapter, chunk), adapter.written_token_types)


def saturation(adapter, forced) -> torch.Tensor:
    """(batch, layers, heads): each head's mean top attention probability over the answer rows."""
    capture = Capture(forced.rows, keep_probs=True)
    with torch.no_grad(), attention_session(adapter.model, capture=capture) as session:
        adapter.model(**forced.inputs)
    tops = [session.captured(layer).probs.amax(-1) for layer in session.layers]  # (batch, heads, rows) each
    valid = forced.valid[:, None, :].float()
    return torch.stack([(top * valid).sum(-1) / valid.sum(-1) for top in tops], dim=1)


def means_of(adapter, folder: Path, samples: list) -> dict:
    pages = [[open_page(folder, s, p) for p in range(len(s.pages))] for s in samples]
    return prompt_means(adapter, (encode_samples(adapter, samples[i : i + 8], pages[i : i + 8])
                                  for i in range(0, len(samples), 8)))  # fmt: skip


STEPS = (4, 16)  # integrated gradients' points on the ablation path
SCREENED = (8, 12)  # two-stage: heads with the largest estimated drops that are then ablated exactly (12: a quarter)
TOP = 10


def methods(adapter, forced, ablation: str, means) -> dict[str, torch.Tensor]:
    """(batch, layers, heads) whole-answer change per method, and exact ablation's. Two-stage fills exact ablation's
    values into the screened heads (the same numbers as `exact(chosen=...)`, tested): each sample's own largest
    estimated drops, or the batch's (the heads whose drops summed over the batch's samples are largest)."""
    found = {"exact": exact(adapter, forced, ablation, means).sum(1)}
    for steps in (1, *STEPS):
        name = "atp" if steps == 1 else f"ig, K = {steps}"
        found[name] = estimate(adapter, forced, ablation, means, per_token=False, steps=steps)[:, 0]
    for count in SCREENED:
        for scope in ("sample", "batch"):
            screen = found["atp"] if scope == "sample" else found["atp"].sum(0, keepdim=True).expand_as(found["atp"])
            chosen = largest_drops(screen[:, None], count)
            combined = found["atp"].flatten(1).clone()
            combined.scatter_(1, chosen, found["exact"].flatten(1).gather(1, chosen))
            found[f"atp + exact top {count} per {scope}"] = combined.view_as(found["atp"])
    return found


def agreement(adapter, folder: Path, samples: list, ablation: str) -> dict[str, dict]:
    """Per method: Spearman of the heads' mean change against exact ablation's (with a 95 % bootstrap interval over
    samples), how many of exact's top 10 drops it ranks in its top 10, and its largest gaps to exact."""
    means = means_of(adapter, folder, samples) if ablation == "mean" else None
    batches = [(methods(adapter, forced, ablation, means), saturation(adapter, forced))
               for forced in forced_batches(adapter, folder, samples, 8)]  # fmt: skip
    values = {name: torch.cat([found[name] for found, _ in batches]).flatten(1).numpy() for name in batches[0][0]}
    sat = torch.cat([s for _, s in batches]).flatten(1).numpy().mean(0)
    truth = values.pop("exact")
    rng = np.random.default_rng(0)
    draws = [rng.integers(0, len(truth), len(truth)) for _ in range(1000)]
    heads = adapter.grid[1]
    top_exact = set(np.argsort(truth.mean(0))[:TOP])  # the largest drops: the most negative changes
    results = {}
    for name, found in values.items():
        boot = [stats.spearmanr(found[d].mean(0), truth[d].mean(0)).statistic for d in draws]
        gaps = np.abs(found.mean(0) - truth.mean(0))
        results[name] = {
            "rho": stats.spearmanr(found.mean(0), truth.mean(0)).statistic,
            "interval": (float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))),
            "top": len(top_exact & set(np.argsort(found.mean(0))[:TOP])),
            "worst": [_gap(i, heads, found, truth, sat) for i in np.argsort(-gaps)[:2]],
        }
    return results


def _gap(index: int, heads: int, found: np.ndarray, truth: np.ndarray, sat: np.ndarray) -> tuple:
    return _name(index, heads), float(found.mean(0)[index]), float(truth.mean(0)[index]), float(sat[index])


def _name(index: int, heads: int) -> str:
    return f"l{index // heads}_h{index % heads}"


def timed(function, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def costs(adapter, root: Path, lengths: tuple[int, ...]) -> list[tuple]:
    """Per length: tokens, a plain forward's seconds, and each method's seconds (whole answer)."""
    rows = []
    for length in lengths:
        folder = root / f"cost-{length}"
        samples = dataset(folder, "text", 1, length)
        [forced] = list(forced_batches(adapter, folder, samples, 1))

        def plain(forced=forced):
            with torch.no_grad():
                adapter.model(**forced.inputs)

        def two_stage(forced=forced):
            found = estimate(adapter, forced, per_token=False)
            exact(adapter, forced, chosen=largest_drops(found, SCREENED[-1]))

        timings = {"plain": timed(plain)}
        for steps in (1, *STEPS):
            timings[steps] = timed(lambda forced=forced, steps=steps: estimate(adapter, forced, per_token=False,
                                                                               steps=steps))  # fmt: skip
        timings["two-stage"] = timed(two_stage)
        timings["exact"] = timed(lambda forced=forced: exact(adapter, forced))
        rows.append((length, forced.inputs["input_ids"].shape[1], timings))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--part", choices=("all", "agreement", "cost"), default="all", help="cost: timings only")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    args = parser.parse_args()
    torch.set_num_threads(2)
    adapter = load_adapter(BUNDLED_MODEL, device=args.device)
    install(adapter.model)
    layers, heads = adapter.grid
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        if args.part != "cost":
            print(f"demo model, {args.samples} fresh samples per modality (seed {SEED}), answer log-probability")
            print("| modality | ablation | method | Spearman vs exact (48 heads) | 95 % interval | exact's top 10 "
                  "found | largest gaps: head, method, exact, top attention |")  # fmt: skip
            print("|---|---|---|---|---|---|---|")
            for modality in ("image", "text"):
                samples = dataset(root / modality, modality, args.samples, 160)
                for ablation in ("zero", "mean"):
                    for name, found in agreement(adapter, root / modality, samples, ablation).items():
                        worst = "; ".join(f"{h} {e:.2f} / {x:.2f} / {s:.2f}" for h, e, x, s in found["worst"])
                        low, high = found["interval"]
                        cells = [modality, ablation, name, f"{found['rho']:.3f}", f"[{low:.3f}, {high:.3f}]",
                                 f"{found['top']}/{TOP}", worst]  # fmt: skip
                        print("| " + " | ".join(cells) + " |")
        if args.part != "agreement":
            names = ["atp", *(f"ig K={k}" for k in STEPS), f"atp + exact top {SCREENED[-1]}", "exact"]
            print(f"\ncost, one text sample, whole answer, median of 5 ({layers} x {heads} heads), times a forward")
            print("| context characters | tokens | plain forward | " + " | ".join(names) + " |")
            print("|---" * (3 + len(names)) + "|")
            for length, tokens, timings in costs(adapter, root, (160, 640, 1280, 5120)):
                ratios = [f"{timings[key] / timings['plain']:.1f}x" for key in (1, *STEPS, "two-stage", "exact")]
                print(f"| {length} | {tokens} | {timings['plain'] * 1000:.0f} ms | " + " | ".join(ratios) + " |")


if __name__ == "__main__":
    main()
