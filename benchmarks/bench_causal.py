"""Causal head scores on the bundled demo model: how well the attribution estimate ranks the 48 heads against
exact ablation, per modality, where they disagree most (and whether those heads' attention is saturated, the
failure AtP* names), and what each costs against a plain teacher-forced forward pass at several lengths.

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
from ocrheads.demo.run import BUNDLED_MODEL
from ocrheads.demo.task import DemoTask
from ocrheads.eval.means import prompt_means
from ocrheads.models import load_adapter
from ocrheads.scoring.answers import encode_samples
from ocrheads.scoring.causal import estimate, exact, teacher_forced

SEED = 4242


def dataset(folder: Path, modality: str, n: int, length: int) -> list:
    task = DemoTask()
    fonts = task.fonts if modality == "image" else ()
    generate("passkey", folder, n=n, seed=SEED, modality=modality, style=task.style(0), fonts=fonts,
             lengths=(length,), digits=task.digits, intro=task.intro, progress=False)  # fmt: skip
    return read_manifest(folder)


def forced_batches(adapter, folder: Path, samples: list, batch: int):
    tokenizer = adapter.processor.tokenizer
    for start in range(0, len(samples), batch):
        chunk = samples[start : start + batch]
        pages = [[open_page(folder, s, p) for p in range(len(s.pages))] for s in chunk]
        encoded = encode_samples(adapter, chunk, pages)
        yield teacher_forced(encoded, [tokenizer(s.answer, add_special_tokens=False).input_ids for s in chunk])


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


def agreement(adapter, folder: Path, samples: list, ablation: str) -> dict:
    means = means_of(adapter, folder, samples) if ablation == "mean" else None
    totals_estimate, totals_exact, saturated = [], [], []
    for forced in forced_batches(adapter, folder, samples, 8):
        totals_estimate.append(estimate(adapter, forced, ablation, means, per_token=False)[:, 0])
        totals_exact.append(exact(adapter, forced, ablation, means).sum(1))  # (batch, layers, heads): whole answer
        saturated.append(saturation(adapter, forced))
    est, ex = torch.cat(totals_estimate).flatten(1).numpy(), torch.cat(totals_exact).flatten(1).numpy()
    sat = torch.cat(saturated).flatten(1).numpy()
    rho = stats.spearmanr(est.mean(0), ex.mean(0)).statistic
    rng = np.random.default_rng(0)
    draws = [rng.integers(0, len(est), len(est)) for _ in range(1000)]
    boot = [stats.spearmanr(est[d].mean(0), ex[d].mean(0)).statistic for d in draws]
    gaps = np.abs(est.mean(0) - ex.mean(0))
    worst = np.argsort(-gaps)[:3]
    heads = adapter.grid[1]
    return {
        "rho": rho,
        "interval": (float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))),
        "worst": [(_name(i, heads), float(est.mean(0)[i]), float(ex.mean(0)[i]), float(sat.mean(0)[i])) for i in worst],
        "saturation_all": float(sat.mean()),
    }


def _name(index: int, heads: int) -> str:
    return f"l{index // heads}_h{index % heads}"


def timed(function, repeats: int = 7) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def costs(adapter, root: Path, lengths: tuple[int, ...]) -> list[tuple]:
    rows = []
    for length in lengths:
        folder = root / f"cost-{length}"
        samples = dataset(folder, "text", 1, length)
        [forced] = list(forced_batches(adapter, folder, samples, 1))

        def plain(forced=forced):
            with torch.no_grad():
                adapter.model(**forced.inputs)

        rows.append((length, forced.inputs["input_ids"].shape[1], timed(plain),
                     timed(lambda forced=forced: estimate(adapter, forced, per_token=False)),
                     timed(lambda forced=forced: estimate(adapter, forced, per_token=True)),
                     timed(lambda forced=forced: exact(adapter, forced))))  # fmt: skip
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
            columns = ["modality", "ablation", "Spearman, estimate vs exact (48 heads)", "95 % interval",
                       "largest gaps: head, estimate, exact, top attention"]  # fmt: skip
            print("| " + " | ".join(columns) + " |")
            print("|---|---|---|---|---|")
            for modality in ("image", "text"):
                samples = dataset(root / modality, modality, args.samples, 160)
                for ablation in ("zero", "mean"):
                    found = agreement(adapter, root / modality, samples, ablation)
                    worst = "; ".join(f"{h} {e:.2f} / {x:.2f} / {s:.2f}" for h, e, x, s in found["worst"])
                    low, high = found["interval"]
                    cells = [modality, ablation, f"{found['rho']:.3f}", f"[{low:.3f}, {high:.3f}]",
                             f"{worst} (all heads: {found['saturation_all']:.2f})"]  # fmt: skip
                    print("| " + " | ".join(cells) + " |")
        if args.part != "agreement":
            print(f"\ncost, one text sample, median of 7 ({layers} x {heads} heads)")
            print("| context characters | tokens | plain forward | estimate (answer) | estimate per token | exact | "
                  "ratios to plain |")  # fmt: skip
            print("|---|---|---|---|---|---|---|")
            for length, tokens, plain, whole, per_token, ex in costs(adapter, root, (160, 640, 1280, 5120)):
                times = [f"{seconds * 1000:.0f} ms" for seconds in (plain, whole, per_token, ex)]
                ratios = ", ".join(f"{seconds / plain:.1f}x" for seconds in (whole, per_token, ex))
                print("| " + " | ".join([str(length), str(tokens), *times, ratios]) + " |")


if __name__ == "__main__":
    main()
