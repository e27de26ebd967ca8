"""Run directories: their layout (RunDir, the one place that knows it), holding and pinning them (claim), and the
resumable loop over their parts (parts). Starting a run of a model (start.open_run) is not imported here: it needs
the model code, which reading a run does not."""

from ocrheads.run.claim import claim, differences, lock, preflight
from ocrheads.run.layout import CONFIG, ExperimentRun, KindRun, RunDir, read_config, write_parquet
from ocrheads.run.parts import resumable

__all__ = ["CONFIG", "ExperimentRun", "KindRun", "RunDir", "claim", "differences", "lock", "preflight",
           "read_config", "resumable", "write_parquet"]  # fmt: skip
