"""`ocrheads demo` on the bundled model: it reads held-out passkeys, its OCR heads matter more than random heads,
and the report it writes renders in a headless browser."""

import pyarrow.parquet as pq
import pytest
import yaml
from rich.console import Console

from ocrheads.demo.run import run_demo
from ocrheads.demo.settings import BUNDLED_MODEL, DemoSettings
from ocrheads.demo.task import DemoTask
from ocrheads.models import load_adapter
from ocrheads.models.qwen_vl import QwenVLAdapter
from ocrheads.report.browser import find_chromium
from ocrheads.training.provenance import provenance_markdown
from ocrheads.training.schedule import TrainSettings
from ocrheads.training.train import recorded_setup

K = 4


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    settings = DemoSettings(out=out, score_samples=16, eval_samples=64, k=(K,), random_seeds=2)
    return out, run_demo(settings, Console(quiet=True))


def _row(out, experiment, condition, dataset, metric="em"):
    rows = pq.read_table(out / experiment / "results.parquet").to_pylist()
    return next(r for r in rows if (r["condition"], r["dataset"], r["metric"]) == (condition, dataset, metric))


def test_the_bundled_model_is_a_small_qwen2_vl_checkpoint_trained_by_one_run_of_todays_recipe():
    weights = BUNDLED_MODEL / "model.safetensors"
    assert weights.stat().st_size <= 25 * 2**20
    adapter = load_adapter(BUNDLED_MODEL)
    assert isinstance(adapter, QwenVLAdapter) and adapter.grid == (6, 8)
    record = yaml.safe_load((BUNDLED_MODEL / "training.yaml").read_text())
    assert recorded_setup(record["settings"], record["task"]) == recorded_setup(TrainSettings(), DemoTask())
    runs, checks = record["runs"], [check["step"] for check in record["history"]]
    assert runs[0]["first_step"] == 0 and all(run["first_step"] in checks for run in runs[1:])
    assert checks[-1] == TrainSettings().steps
    assert len({run["code"] for run in runs}) == 1 and not runs[0]["code"].endswith("-dirty")
    assert record["history"][-1]["image"] >= 0.95 and record["history"][-1]["text"] >= 0.95
    assert (BUNDLED_MODEL / "PROVENANCE.md").read_text() == provenance_markdown(record)
    leftovers = [path.name for path in BUNDLED_MODEL.iterdir() if path.suffix == ".pt" or "probe" in path.name]
    assert leftovers == []


def test_it_reads_fresh_held_out_passkeys_from_pages_and_from_text(demo_run):
    out, _ = demo_run
    for dataset in ("eval-image", "eval-text"):
        baseline = _row(out, "mask", "baseline", dataset)
        assert baseline["n"] == 64 and baseline["mean"] >= 0.95, dataset


def test_masking_its_top_ocr_heads_hurts_image_passkeys_beyond_random_heads(demo_run):
    out, report = demo_run
    ocr = _row(out, "mask", f"ocr-top{K}", "eval-image")
    random = _row(out, "mask", f"random-top{K}-pooled", "eval-image")
    assert ocr["high"] < random["low"], (ocr, random)  # the gap is larger than both intervals
    page = report.read_text()
    assert f"{ocr['mean']:.3f} [{ocr['low']:.3f}, {ocr['high']:.3f}]" in page
    assert f"{random['mean']:.3f} [{random['low']:.3f}, {random['high']:.3f}]" in page


def test_the_report_renders_in_headless_chromium_with_every_figure(demo_run):
    pytest.importorskip("playwright", reason="the browser check needs Playwright (pip install 'ocrheads[browser]')")
    if find_chromium() is None:
        pytest.skip("no Chromium on PATH (Debian: apt-get install chromium)")
    from ocrheads.report.browser import check_in_browser

    out, report = demo_run
    found = check_in_browser(report, out / "report.png")
    assert found.images >= 6 and found.broken_images == [] and found.errors == []
    assert found.screenshot.stat().st_size > 50_000
