"""Train the demo model from scratch on the demo task: image passkeys (read from pages) and text passkeys (copied).

The answer loss covers the answer and the end-of-turn token; image batches add the reading and alignment
losses (reading.py). Training keys run to 16 digits (examples.py): with one- to five-digit keys the answer loss is
too sparse, and a model this size stalled for thousands of steps before it could copy more than one digit in
order. Text batches come first: there the copying forms in minutes, where with every other batch a page it
had not formed after 700 steps. Then image and text batches mix, and copying carries over to pages.
Everything is seeded, so a run is reproducible from its settings (on the same machine and threads).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import yaml

from ocrheads.atomic import atomic_folder
from ocrheads.demo.architecture import build_model, build_processor, build_tokenizer
from ocrheads.demo.examples import Examples, encode_for_training, exact_matches, held_out
from ocrheads.demo.reading import GlyphReading, KeyAlignment
from ocrheads.demo.task import DemoTask
from ocrheads.models.qwen_vl import QwenVLAdapter
from ocrheads.rundir import versions


@dataclass(frozen=True)
class TrainSettings:
    seed: int = 0
    steps: int = 6000
    batch_size: int = 16
    learning_rate: float = 2e-3
    warmup_steps: int = 100
    decay: float = 0.25  # the last fraction of the steps, over which the learning rate falls linearly to 10 %
    text_first: int = 800  # steps of text batches alone before images join in
    text_every: int = 2  # afterwards, one step in this many is a text batch, the others are image batches
    patch_init_std: float = 0.1  # patch embeddings start larger than the default 0.02, so ink stands out at once
    eval_every: int = 250
    eval_samples: int = 32
    threads: int = 2


def learning_rate(step: int, settings: TrainSettings) -> float:
    """Linear warm-up, constant, then a linear fall to 10 % over the last steps."""
    if step < settings.warmup_steps:
        return settings.learning_rate * (step + 1) / settings.warmup_steps
    decay_start = settings.steps * (1 - settings.decay)
    fallen = max(0.0, (step - decay_start) / max(1.0, settings.steps - decay_start))
    return settings.learning_rate * (1 - 0.9 * fallen)


def modality_at(step: int, settings: TrainSettings) -> str:
    """Text alone first, so copying is learnt where it is easy; then image batches, with a text batch now and then
    so that skill is kept. `step` counts across resumed stages."""
    return "text" if step < settings.text_first or step % settings.text_every == 1 else "image"


def train_demo(
    out: str | Path,
    settings: TrainSettings | None = None,
    task: DemoTask | None = None,
    log=print,
    snapshot: str | Path | None = None,
    resume: str | Path | None = None,
) -> dict:
    """Train, check on held-out samples of the task's default settings, and save a loadable checkpoint to `out`
    (and, at every check, to `snapshot`).

    `resume` continues from a checkpoint this function wrote (a snapshot or a finished stage): its weights, its reading
    probe and the next unseen training samples; the optimiser starts afresh with a new warm-up.
    The record keeps the earlier stages' records, so the whole chain stays reproducible."""
    settings, task = settings or TrainSettings(), task or DemoTask()
    torch.set_num_threads(settings.threads)
    started = time.perf_counter()
    earlier, first_step = None, 0
    if resume is None:
        tokenizer = build_tokenizer(settings.seed)
        adapter = QwenVLAdapter(build_model(tokenizer, settings.seed), build_processor(tokenizer))
        torch.nn.init.normal_(adapter.model.model.visual.patch_embed.proj.weight, std=settings.patch_init_std)
    else:
        adapter = QwenVLAdapter.load(resume)
        earlier = yaml.safe_load((Path(resume) / "training.yaml").read_text(encoding="utf-8"))
        last = earlier["history"][-1]
        first_step = earlier.get("first_step", 0) + last["step"]
    model = adapter.model.train()
    reading, alignment = GlyphReading(model), KeyAlignment(adapter)
    if resume is not None:
        reading.load(Path(resume))
    parameters = [*model.parameters(), *reading.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=settings.learning_rate, betas=(0.9, 0.98), weight_decay=0.01)
    examples = Examples(task, settings.seed)
    checks = {m: held_out(examples, settings.eval_samples, m) for m in ("image", "text")}
    history = []

    def record() -> dict:
        return {
            "settings": asdict(settings),
            "task": asdict(task),
            "first_step": first_step,
            "training_seconds": round(time.perf_counter() - started),
            "history": history,
            "versions": versions(),
            "resumed_from": earlier and {"checkpoint": str(resume), "record": earlier},
        }

    for step in range(settings.steps):
        overall = first_step + step  # counts on across resumed stages
        modality = modality_at(overall, settings)
        first = overall * settings.batch_size
        chosen = examples.training_batch(first, settings.batch_size, modality)
        batch = encode_for_training(adapter, chosen)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, settings)
        targets, keys = batch.pop("glyph_targets", None), batch.pop("key_tokens", None)
        output = model(**batch, output_hidden_states=targets is not None)
        loss = total = output.loss
        if targets is not None:
            read = reading.loss(targets, output.hidden_states[0])
            total = loss + read + alignment.loss([e.content for e in chosen], keys, output.hidden_states)
        total.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 20 < 4:
            elapsed = time.perf_counter() - started
            log(f"step {step} {modality} loss {loss.item():.4f} total {total.item():.4f} {elapsed:.0f}s")
        if (step + 1) % settings.eval_every == 0 or step + 1 == settings.steps:
            model.eval()
            scores = {m: sum(exact_matches(adapter, checks[m])) / len(checks[m]) for m in checks}
            model.train()
            history.append({"step": step + 1, **scores, "seconds": round(time.perf_counter() - started)})
            log(f"held-out exact match at step {step + 1}: {scores}")
            if snapshot is not None:
                _save(snapshot, adapter, reading, record())
    model.eval()
    _save(out, adapter, reading, record())
    return record()


def _save(out: str | Path, adapter: QwenVLAdapter, reading: GlyphReading, record: dict) -> None:
    with atomic_folder(out, overwrite=True) as staging:
        adapter.model.save_pretrained(staging)
        reading.save(staging)
        adapter.processor.save_pretrained(staging)
        (staging / "training.yaml").write_text(yaml.safe_dump(record, sort_keys=False), encoding="utf-8")
