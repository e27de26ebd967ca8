"""Train the demo model from scratch on the demo task: image passkeys (read from pages) and text passkeys (copied).

The answer loss covers the answer and the end-of-turn token; image batches add the reading and alignment
losses (reading.py). Training keys run to 16 digits (examples.py): with one- to five-digit keys the answer loss is
too sparse, and a model this size stalled for thousands of steps before it could copy more than one digit in
order. Text batches come first: there the copying forms in minutes, where with every other batch a page it
had not formed after 700 steps. Then image and text batches mix, and copying carries over to pages.
Everything is seeded, so a run is reproducible from its settings (on the same machine and threads).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import torch
import yaml

from ocrheads.atomic import atomic_folder
from ocrheads.demo.task import DemoTask
from ocrheads.devices import resolve_device, to_device
from ocrheads.errors import OcrHeadsError
from ocrheads.models.qwen_vl import QwenVLAdapter
from ocrheads.provenance import versions
from ocrheads.training.architecture import build_model, build_processor, build_tokenizer
from ocrheads.training.examples import Examples, encode_for_training, exact_matches, held_out
from ocrheads.training.provenance import invocation, provenance_markdown
from ocrheads.training.reading import GlyphReading, KeyAlignment
from ocrheads.training.schedule import TrainSettings, learning_rate, modality_at


def train_demo(
    out: str | Path,
    settings: TrainSettings | None = None,
    task: DemoTask | None = None,
    log=print,
    snapshot: str | Path | None = None,
    resume: str | Path | None = None,
    command: str | None = None,
    device: str = "cpu",
    workers: int = 0,
) -> dict:
    """Train every stage of `settings` in one run, check on held-out samples of the task's default settings, and
    save a loadable checkpoint to `out` (and, at every check, to `snapshot`, with the optimiser's state).

    `resume` continues an interrupted run from its snapshot: weights, reading probe, optimiser state and step, so
    the result equals an uninterrupted run's; a snapshot of other settings is refused. `command`: how the run
    was started, for the record and PROVENANCE.md (provenance.py). `device`: where the model trains (cpu, cuda,
    cuda:N); `workers`: processes that build batches ahead of the steps (on a GPU, building one likely costs more
    than the step; the batches, and so the weights, are the same with any number)."""
    settings, task = settings or TrainSettings(), task or DemoTask()
    torch.set_num_threads(settings.threads)
    started = time.perf_counter()
    if resume is None:
        tokenizer = build_tokenizer(settings.seed)
        adapter = QwenVLAdapter(build_model(tokenizer, settings.seed), build_processor(tokenizer))
        torch.nn.init.normal_(adapter.model.model.visual.patch_embed.proj.weight, std=settings.patch_init_std)
        adapter.model.to(resolve_device(device))
        history, done, earlier_seconds, runs = [], 0, 0, []
    else:
        adapter = QwenVLAdapter.load(resume, dtype=torch.float32, device=device)
        earlier = _resumable(Path(resume), settings, task)
        history, done, earlier_seconds = earlier["history"], earlier["history"][-1]["step"], earlier["training_seconds"]
        runs = earlier.get("runs", [])
    runs = [*runs, invocation(command, done, adapter.device)]
    model = adapter.model.train()
    reading, alignment = GlyphReading(model, settings.tied_reading), KeyAlignment(adapter)
    parameters = [*model.parameters(), *reading.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=settings.stages[0].learning_rate, betas=(0.9, 0.98), weight_decay=0.01)
    if resume is not None:
        reading.load(Path(resume))
        state = torch.load(Path(resume) / OPTIMIZER_FILE, weights_only=True, map_location=adapter.device)
        optimizer.load_state_dict(state)
    examples = Examples(task, settings.seed)
    checks = {}

    def record() -> dict:
        return {
            "settings": asdict(settings),
            "task": asdict(task),
            "training_seconds": earlier_seconds + round(time.perf_counter() - started),
            "history": history,
            "versions": versions("ocrheads", "torch", "transformers"),
            "runs": runs,
        }

    batches = TrainingBatches(examples, adapter, settings, done)
    # its own generator: making the iterator leaves torch's global random state as it was
    ahead = {"num_workers": workers, "prefetch_factor": 4 if workers else None, "generator": torch.Generator()}
    loader = torch.utils.data.DataLoader(batches, batch_size=None, collate_fn=_as_built, **ahead)
    for step, modality, contents, batch in loader:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, settings)
        targets, keys = batch.pop("glyph_targets", None), batch.pop("key_tokens", None)
        output = model(**to_device(batch, adapter.device), output_hidden_states=targets is not None)
        loss = total = output.loss
        if targets is not None:
            total = loss + reading.loss(targets, output.hidden_states[0])
            if settings.key_alignment:
                total = total + alignment.loss(contents, keys, output.hidden_states)
        total.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 20 < 4:
            elapsed = time.perf_counter() - started
            log(f"step {step} {modality} loss {loss.item():.4f} total {total.item():.4f} {elapsed:.0f}s")
        if (step + 1) % settings.eval_every == 0 or step + 1 == settings.steps:
            samples = settings.stage_at(step)[0].eval_samples
            if samples not in checks:
                checks[samples] = {m: held_out(examples, samples, m) for m in ("image", "text")}
            model.eval()
            scores = {m: sum(exact_matches(adapter, held)) / len(held) for m, held in checks[samples].items()}
            model.train()
            history.append({"step": step + 1, **scores, "seconds": record()["training_seconds"]})
            log(f"held-out exact match at step {step + 1}: {scores}")
            if snapshot is not None:
                _save(snapshot, adapter, reading, record(), optimizer)
    model.eval()
    final = record()  # once: the seconds saved beside the weights are the seconds returned
    _save(out, adapter, reading, final)
    return final


OPTIMIZER_FILE = "optimizer.pt"


class TrainingBatches(torch.utils.data.Dataset):
    """Step by step from `first`: (step, modality, the examples' contents, the encoded batch). Each depends only on
    the seed and the step, so DataLoader workers build the same batches the training loop would."""

    def __init__(self, examples: Examples, adapter: QwenVLAdapter, settings: TrainSettings, first: int):
        self.examples, self.adapter, self.settings, self.first = examples, adapter, settings, first

    def __len__(self) -> int:
        return self.settings.steps - self.first

    def __getitem__(self, index: int) -> tuple[int, str, list, dict]:
        step, size = self.first + index, self.settings.batch_size
        modality = modality_at(step, self.settings)
        chosen = self.examples.training_batch(step * size, size, modality)
        return step, modality, [e.content for e in chosen], encode_for_training(self.adapter, chosen)


def _as_built(item):
    """The DataLoader's collation: none, a step's batch is built whole."""
    return item


def recorded_setup(settings: TrainSettings | dict, task: DemoTask | dict) -> dict:
    """Settings and task as a training.yaml holds them (tuples become lists), so a record compares equal to the
    dataclasses that would train it again. A record written before a setting existed has that setting's default,
    which is what training did then."""
    settings = (asdict(TrainSettings()) | settings) if isinstance(settings, dict) else asdict(settings)
    as_dict = {"settings": settings, "task": task if isinstance(task, dict) else asdict(task)}
    return json.loads(json.dumps(as_dict))


def _resumable(folder: Path, settings: TrainSettings, task: DemoTask) -> dict:
    """The record of a snapshot this run can continue: same settings and task, optimiser state saved."""
    path = folder / "training.yaml"
    if not (path.is_file() and (folder / OPTIMIZER_FILE).is_file()):
        raise OcrHeadsError(f"{folder} is not a train-demo snapshot (no training.yaml and {OPTIMIZER_FILE}); "
                            "resume from the --snapshot folder of an interrupted run")  # fmt: skip
    earlier = yaml.safe_load(path.read_text(encoding="utf-8"))
    if recorded_setup(earlier["settings"], earlier["task"]) != recorded_setup(settings, task):
        raise OcrHeadsError(
            f"{folder} was trained with other settings; resume it with the settings it was started with"
        )
    return earlier


def _save(out: str | Path, adapter: QwenVLAdapter, reading: GlyphReading, record: dict, optimizer=None) -> None:
    """A loadable checkpoint; a snapshot also keeps the optimiser's state, so a resumed run continues exactly."""
    with atomic_folder(out, overwrite=True) as staging:
        adapter.model.save_pretrained(staging)
        reading.save(staging)
        adapter.processor.save_pretrained(staging)
        if optimizer is not None:
            torch.save(optimizer.state_dict(), staging / OPTIMIZER_FILE)
        (staging / "training.yaml").write_text(yaml.safe_dump(record, sort_keys=False), encoding="utf-8")
        (staging / "PROVENANCE.md").write_text(provenance_markdown(record), encoding="utf-8")
