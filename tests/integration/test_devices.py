"""Load options (--device, --dtype) reach the model and the run config; bad input fails in one line, before any
weights are loaded."""

import pyarrow.parquet as pq
import pytest
import torch
import transformers as tf
import yaml

from ocrheads.cli import main
from ocrheads.data.generate import generate
from ocrheads.demo.settings import BUNDLED_MODEL
from ocrheads.demo.task import DemoTask
from ocrheads.devices import to_device
from ocrheads.errors import OcrHeadsError
from ocrheads.models.qwen_vl import QwenVLAdapter

from .tiny_inputs import LOAD_DEVICE, TEST_DEVICE


def _no_loading(*args, **kwargs):
    raise AssertionError("the model was loaded")


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture
def data(tmp_path):
    generate("passkey", tmp_path / "data", n=2, lengths=(120,), digits=3, seed=2, progress=False)
    return tmp_path / "data"


def test_a_model_that_is_nowhere_is_one_line_naming_it_and_the_fix(tmp_path, data, capsys):
    command = ["score", "ocr", "--data", str(data), "--out", str(tmp_path / "run"), "--quiet", "--model"]
    assert main([*command, "someone/no-such-model"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "someone/no-such-model: not a local folder, and not found on the hub" in line and "HF_HUB_OFFLINE" in line
    assert main([*command, str(tmp_path / "missing")]) == 2
    assert f"there is no folder {tmp_path / 'missing'}" in _one_line(capsys.readouterr().err)
    (tmp_path / "empty").mkdir()
    assert main([*command, str(tmp_path / "empty")]) == 2
    assert "the folder has no config.json" in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "run").exists()


def test_bad_data_devices_and_pixel_options_fail_before_the_weights_load(
    tmp_path, data, checkpoint, capsys, monkeypatch
):
    monkeypatch.setattr(QwenVLAdapter, "load", _no_loading)
    command = ["score", "ocr", "--model", str(checkpoint), "--out", str(tmp_path / "run"), "--quiet"]
    assert main([*command, "--data", str(tmp_path / "dat")]) == 2
    assert "has no manifest.jsonl" in _one_line(capsys.readouterr().err)
    assert main([*command, "--data", str(data), "--pixels", "max_patches=4"]) == 2
    assert "qwen2_vl has no pixel option(s) max_patches" in _one_line(capsys.readouterr().err)
    if not torch.cuda.is_available():
        assert main([*command, "--data", str(data), "--device", "cuda"]) == 2
        assert "no CUDA GPU is visible" in _one_line(capsys.readouterr().err)
    assert main([*command, "--data", str(data), "--device", "tpu"]) == 2
    assert "unknown --device 'tpu'" in _one_line(capsys.readouterr().err)
    mask = ["mask", str(tmp_path / "unscored"), "--model", str(checkpoint), "--dataset", str(data)]
    assert main(mask) == 2
    assert "holds no scores" in _one_line(capsys.readouterr().err)
    overlay = ["overlay", str(tmp_path / "run"), "--model", str(checkpoint), "--data", str(data)]
    assert main([*overlay, "--sample", "passkey-00000", "--heads", "l7_h0"]) == 2
    assert "outside the model's 2x4 heads" in _one_line(capsys.readouterr().err)


def test_bfloat16_scoring_of_the_demo_model_runs_end_to_end_and_says_so(tmp_path):
    task = DemoTask()
    data, run = tmp_path / "data", tmp_path / "run"
    options = dict(lengths=(task.context_length,), digits=task.digits, intro=task.intro, style=task.style(0))
    generate("passkey", data, n=4, seed=5, progress=False, fonts=task.fonts, **options)
    command = ["score", "ocr", "--model", str(BUNDLED_MODEL), "--data", str(data), "--out", str(run), "--quiet"]
    assert main([*command, "--device", LOAD_DEVICE, "--dtype", "bfloat16", "--batch-size", "2"]) == 0
    config = yaml.safe_load((run / "ocr" / "config.yaml").read_text())
    device = "cpu" if TEST_DEVICE == "cpu" else "cuda:0"
    assert config["model_settings"]["dtype"] == "bfloat16" and config["hardware"]["devices"] == [device]
    table = pq.read_table(run / "ocr" / "scores.parquet")
    assert table.num_rows >= 3 * 5 * 48  # the demo model reads most keys in bfloat16 too


def test_to_device_moves_every_tensor_inside_requests_and_batches():
    from ocrheads.attention import Capture, Edits, SinkRedistribution

    sink = SinkRedistribution({0: (1,)}, 0.5, torch.zeros(1, 4, dtype=torch.bool))
    request = {"batch": {"ids": torch.ones(2)}, "edits": Edits(zero={0: (1,)}, sink=sink), "rows": [torch.ones(1)]}
    request["capture"] = Capture(torch.zeros(1, 2, dtype=torch.long), layers=frozenset({0}))
    moved = to_device(request, "meta")
    assert moved["batch"]["ids"].is_meta and moved["rows"][0].is_meta
    assert moved["edits"].sink.sinks.is_meta and moved["edits"].zero == {0: (1,)} and moved["edits"].sink.beta == 0.5
    assert moved["capture"].rows.is_meta and moved["capture"].layers == frozenset({0})
    assert not request["capture"].rows.is_meta  # the original is left alone


def test_cuda_under_torchrun_is_this_rank_s_gpu(monkeypatch):
    from ocrheads.devices import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setenv("LOCAL_RANK", "2")
    assert resolve_device("cuda") == "cuda:2" and resolve_device("auto") == "cuda:2"
    assert resolve_device("cuda:1") == "cuda:1" and resolve_device("cpu") == "cpu"
    monkeypatch.delenv("LOCAL_RANK")
    assert resolve_device("cuda") == "cuda:0"
    with pytest.raises(OcrHeadsError, match="there are 4 GPUs"):
        resolve_device("cuda:4")


def test_a_device_map_loads_through_accelerate_and_verify_passes(capsys):
    assert main(["verify", "--model", str(BUNDLED_MODEL), "--device-map", "auto"]) == 0
    assert "all checks passed" in capsys.readouterr().out


def _error_line(err: str) -> str:
    """The one error line, among transformers' loading progress bars."""
    errors = [line for line in err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def _out_of_memory(*args, **kwargs):
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 139.8 GiB total capacity)")


@pytest.mark.parametrize(
    ("command", "names"),
    [
        (["score", "causal"], ["batch 0 (samples passkey-00000 to passkey-00001)", "lower --max-batch-tokens"]),
        (["score", "ocr"], ["batch 0 (samples passkey-00000 to passkey-00001)", "lower --batch-size"]),
        (["mask"], ["baseline / ", "samples 0 to 0", "lower --batch-size"]),
        (["verify"], ["out of GPU memory (CUDA out of memory. Tried to allocate 2.00 GiB", "--device-map auto"]),
    ],
)
def test_running_out_of_gpu_memory_is_one_line_naming_the_batch_and_the_fix(
    command, names, tmp_path, data, checkpoint, capsys, monkeypatch
):
    from ocrheads.cli import main

    run = tmp_path / "run"
    model = ["--model", str(checkpoint)]
    if command == ["mask"]:
        assert main(["score", "ocr", "--data", str(data), "--out", str(run), "--answers", "gold", *model]) == 0
        command = ["mask", str(run), "--dataset", str(data), "--k", "1", "--random-seeds", "1", "--quiet"]
    elif command != ["verify"]:
        command = [*command, "--data", str(data), "--out", str(run), "--batch-size", "2", "--quiet"]
    capsys.readouterr()
    monkeypatch.setattr(tf.Qwen2VLTextModel, "forward", _out_of_memory)  # inside the model's forward
    assert main([*command, *model]) == 2
    line = _error_line(capsys.readouterr().err)
    assert "gives no gradients" not in line and "Tried to allocate 2.00 GiB" in line
    for name in names:
        assert name in line, line


def test_a_truncated_weights_file_is_one_line_before_the_run_directory_is_touched(tmp_path, data, checkpoint, capsys):
    import shutil

    from ocrheads.cli import main

    broken = tmp_path / "broken"
    shutil.copytree(checkpoint, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # an interrupted download
    run = tmp_path / "run"
    assert main(["score", "ocr", "--model", str(broken), "--data", str(data), "--out", str(run), "--quiet"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"--model {broken}: model.safetensors cannot be read" in line and "download the checkpoint again" in line
    assert not run.exists()
    assert main(["verify", "--model", str(broken)]) == 2
    assert "model.safetensors cannot be read" in _one_line(capsys.readouterr().err)
