"""Run directories: their layout (RunDir, the one place that knows it), holding and pinning them (claim), and the
resumable loop over their parts (parts)."""

from ocrheads.run.claim import claim, differences, lock, open_run, preflight
from ocrheads.run.layout import CONFIG, ExperimentRun, KindRun, RunDir, read_config, write_parquet
from ocrheads.run.parts import resumable

__all__ = ["CONFIG", "ExperimentRun", "KindRun", "RunDir", "claim", "differences", "lock", "open_run", "preflight",
           "read_config", "resumable", "write_parquet"]  # fmt: skip
