"""What `ocrheads demo` runs with (its defaults are the command line's), apart from the pipeline's code: the help
reads them without importing torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ocrheads.demo.task import DemoTask

BUNDLED_MODEL = Path(__file__).parent / "model"


@dataclass(frozen=True)
class DemoSettings:
    out: Path = Path("runs/demo")
    model: Path = BUNDLED_MODEL
    score_samples: int = 40  # per modality, for scoring heads
    eval_samples: int = 80  # per modality, for masking and sink redistribution (other samples than scoring's)
    k: tuple[int, ...] = (2, 4)
    random_seeds: int = 3
    sink_top: int = 2
    beta: float = 0.4
    batch_size: int = 16
    data_seed: int = 2026
    task: DemoTask = field(default_factory=DemoTask)
    device: str = "cpu"
    dtype: str = "auto"
    device_map: str | None = None
    pixels: dict = field(default_factory=dict)
    convert_cache: Path | None = None  # where a remote-code InternVL --model is converted (default: by the hub cache)
    prompt_format: str | None = None  # "chat" (None), or the model family's "paper" format
    decoding: dict = field(default_factory=dict)  # stop_tokens, repetition_penalty; else the checkpoint's own
