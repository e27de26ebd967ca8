"""`ocrheads demo` runs every stage on any checkpoint (here the tiny random Qwen2-VL), resumes without redoing
work, refuses data made with other settings, and writes a report that renders in headless Chromium."""

import pytest
from rich.console import Console

from ocrheads.cli import main
from ocrheads.demo.run import run_demo
from ocrheads.demo.settings import DemoSettings
from ocrheads.report.browser import find_chromium

STAGES = ["ocr/scores.json", "retrieval/scores.json", "analysis.json", "mask/results.parquet", "sink/results.parquet"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, checkpoint):
    out = tmp_path_factory.mktemp("demo") / "run"
    settings = DemoSettings(out=out, model=checkpoint, score_samples=4, eval_samples=4, k=(2,), random_seeds=1)
    return settings, run_demo(settings, Console(quiet=True))


def test_every_stage_writes_its_results_and_the_report(demo_run):
    settings, report = demo_run
    out = settings.out
    assert report == out / "report.html"
    for stage in STAGES:
        assert (out / stage).is_file(), stage
    assert sorted(path.name for path in (out / "data").iterdir()) == ["eval-image", "eval-text", "score-image",
                                                                      "score-text"]  # fmt: skip
    assert list((out / "overlays").glob("*.png"))
    page = report.read_text()
    assert "ocr-top2" in page and "random-top2-pooled" in page


def test_a_rerun_resumes_and_other_settings_are_refused(demo_run, capsys):
    settings, _ = demo_run
    parts = sorted((settings.out / "mask" / "parts").rglob("*.jsonl"))
    stamps = [path.stat().st_mtime_ns for path in parts]
    run_demo(settings, Console(quiet=True))
    assert [path.stat().st_mtime_ns for path in parts] == stamps  # nothing redone
    command = ["demo", "--out", str(settings.out), "--model", str(settings.model), "--score-samples", "5"]
    assert main(command) == 2
    assert "was generated with other settings; give the demo a new --out" in capsys.readouterr().err


def test_a_missing_model_is_refused_before_anything_is_written(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "run"), "--model", str(tmp_path / "nothing")]) == 2
    assert "no checkpoint at" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_the_report_renders_in_headless_chromium_with_every_figure(demo_run):
    pytest.importorskip("playwright", reason="the browser check needs Playwright (pip install ocrheads[browser])")
    if find_chromium() is None:
        pytest.skip("no Chromium on PATH (Debian: apt-get install chromium)")
    from ocrheads.report.browser import check_in_browser

    settings, report = demo_run
    found = check_in_browser(report, settings.out / "report.png")
    assert found.images >= 6 and found.broken_images == [] and found.errors == []
    assert found.screenshot.stat().st_size > 20_000
