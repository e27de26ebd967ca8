"""What the demo model trains with, and when: its stages, the shipped recipe, the learning rate and the modality of
each step. Plain data, without torch: the command line's help reads the recipe."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    """A stretch of training with its own learning rate: it warms up over the first steps, holds, and falls to a
    tenth over the last `decay` fraction; `text_every`: after the text-only start, one step in this many is text."""

    steps: int
    learning_rate: float = 2e-3
    decay: float = 0.25
    text_every: int = 2
    eval_samples: int = 32  # held-out samples per modality at each check


# The shipped recipe, in one run: the stages the first demo model went through one by one (PROVENANCE.md), with
# mrope [1, 1, 14] and the key alignment from the start.
RECIPE = (
    Stage(3500, 2e-3),
    Stage(750, 3e-4),
    Stage(1000, 2e-4, decay=0.5, text_every=4, eval_samples=64),
    Stage(600, 1.5e-4, decay=0.5, text_every=4, eval_samples=64),
    Stage(1500, 5e-5, decay=0.5, text_every=4, eval_samples=64),
)


@dataclass(frozen=True)
class TrainSettings:
    seed: int = 0
    stages: tuple[Stage, ...] = RECIPE
    batch_size: int = 16
    warmup_steps: int = 100
    text_first: int = 800  # steps of text batches alone before images join in
    patch_init_std: float = 0.1  # patch embeddings start larger than the default 0.02, so ink stands out at once
    key_alignment: bool = True  # pull page key tokens towards their text twins (reading.KeyAlignment)
    tied_reading: bool = True  # page tokens name their characters through the tied output layer (GlyphReading)
    eval_every: int = 250
    threads: int = 2

    @property
    def steps(self) -> int:
        return sum(stage.steps for stage in self.stages)

    def stage_at(self, step: int) -> tuple[Stage, int]:
        """The stage that overall step `step` belongs to, and the step within it."""
        for stage in self.stages:
            if step < stage.steps:
                return stage, step
            step -= stage.steps
        return self.stages[-1], step + self.stages[-1].steps


def learning_rate(step: int, settings: TrainSettings) -> float:
    """Within each stage: linear warm-up, constant, then a linear fall to 10 % over its last steps."""
    stage, local = settings.stage_at(step)
    if local < settings.warmup_steps:
        return stage.learning_rate * (local + 1) / settings.warmup_steps
    decay_start = stage.steps * (1 - stage.decay)
    fallen = max(0.0, (local - decay_start) / max(1.0, stage.steps - decay_start))
    return stage.learning_rate * (1 - 0.9 * fallen)


def modality_at(step: int, settings: TrainSettings) -> str:
    """Text alone first, so copying is learnt where it is easy; then image batches, with a text batch now and then
    so that skill is kept."""
    stage, _ = settings.stage_at(step)
    return "text" if step < settings.text_first or step % stage.text_every == 1 else "image"
