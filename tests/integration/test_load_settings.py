"""What changes what the model sees (pixel bounds, dtype, the processor's resolved settings) pins every run kind:
a resume with other settings is refused before any work, naming the setting, then and now."""

import yaml

from ocrheads.cli import main
from ocrheads.data.generate import generate
from ocrheads.models import load_adapter
from ocrheads.models.qwen_vl import QwenVLAdapter

SMALL, SMALLER = "max_pixels=100352", "max_pixels=50176"


def _parts(folder):
    return {path.name: path.stat().st_mtime_ns for path in folder.rglob("*") if path.is_file()}


def _no_loading(*args, **kwargs):
    raise AssertionError("the model was loaded")


def test_a_scoring_run_resumed_with_other_pixel_bounds_is_refused(tmp_path, checkpoint, capsys, monkeypatch):
    data, run = tmp_path / "data", tmp_path / "run"
    generate("passkey", data, n=2, lengths=(120,), digits=3, seed=2, progress=False)
    command = ["score", "ocr", "--model", str(checkpoint), "--data", str(data), "--out", str(run), "--quiet"]
    command += ["--answers", "gold"]
    assert main([*command, "--pixels", SMALL]) == 0
    config = yaml.safe_load((run / "ocr" / "config.yaml").read_text())
    settings = config["model_settings"]
    assert settings["pixels"] == {"max_pixels": 100352} and settings["dtype"] == "float32"
    assert settings["image_backend"] == "pil"
    assert settings["image_processor"]["size"]["longest_edge"] == 100352
    assert settings["image_processor"]["patch_size"] == 14 and "image_processor_type" not in settings["image_processor"]
    (run / "ocr" / "parts" / "000001.parquet").unlink()  # as if interrupted
    before = _parts(run / "ocr")
    capsys.readouterr()
    with monkeypatch.context() as patched:
        patched.setattr(QwenVLAdapter, "load", _no_loading)  # refused before the weights are read
        assert main([*command, "--pixels", SMALLER]) == 2
        assert "model_settings.pixels.max_pixels: 100352 -> 50176" in capsys.readouterr().err
        assert _parts(run / "ocr") == before  # nothing done, nothing rewritten
        assert main([*command]) == 2  # no bounds at all is another setting too
        assert "model_settings.pixels.max_pixels: 100352 -> (not set)" in capsys.readouterr().err
        assert main([*command, "--pixels", SMALL, "--dtype", "bfloat16"]) == 2
        assert "model_settings.dtype: 'float32' -> 'bfloat16'" in capsys.readouterr().err
    assert main([*command, "--pixels", SMALL]) == 0
    assert (run / "ocr" / "parts" / "000001.parquet").is_file()


def test_mask_and_overlay_runs_are_pinned_to_their_pixel_bounds(tmp_path, checkpoint, capsys):
    images, texts, run = tmp_path / "images", tmp_path / "texts", tmp_path / "run"
    generate("passkey", images, n=2, lengths=(120,), digits=3, seed=2, progress=False)
    generate("passkey", texts, n=2, lengths=(120,), digits=3, seed=2, modality="text", progress=False)
    common = ["--model", str(checkpoint), "--out", str(run), "--answers", "gold", "--quiet"]
    assert main(["score", "ocr", "--data", str(images), *common]) == 0
    assert main(["score", "retrieval", "--data", str(texts), *common]) == 0
    mask = ["mask", str(run), "--model", str(checkpoint), "--dataset", str(images), "--k", "1", "--random-seeds", "1"]
    mask += ["--max-new-tokens", "3", "--quiet"]
    assert main([*mask, "--pixels", SMALL]) == 0
    assert yaml.safe_load((run / "mask" / "config.yaml").read_text())["model_settings"]["pixels"] == {
        "max_pixels": 100352
    }
    capsys.readouterr()
    assert main([*mask, "--pixels", SMALLER]) == 2
    assert "model_settings.pixels.max_pixels: 100352 -> 50176" in capsys.readouterr().err
    overlay = ["overlay", str(run), "--model", str(checkpoint), "--data", str(images), "--sample", "passkey-00000"]
    assert main([*overlay, "--pixels", SMALL]) == 0
    assert main([*overlay, "--sample", "passkey-00001", "--pixels", SMALL]) == 0  # other samples may follow
    drawn = sorted(path.name for path in (run / "overlays").glob("*.png"))
    capsys.readouterr()
    assert main([*overlay, "--pixels", SMALLER]) == 2
    assert "model_settings.pixels.max_pixels: 100352 -> 50176" in capsys.readouterr().err
    assert sorted(path.name for path in (run / "overlays").glob("*.png")) == drawn


def test_pages_are_prepared_by_pil_even_where_transformers_would_choose_torchvision(checkpoint, monkeypatch):
    """transformers picks its torchvision image processors wherever torchvision is installed (most GPU machines), and
    they resize text otherwise than PIL; loading asks for PIL, so every machine prepares the pixels the suite tests
    (and the paper's code prepared). Simulated here: this machine has no torchvision."""
    from transformers.models.auto import image_processing_auto as auto

    resolve, chosen = auto._resolve_backend, []

    def recorded(*args, **kwargs):
        chosen.append(resolve(*args, **kwargs))
        return chosen[-1]

    monkeypatch.setattr(auto, "is_torchvision_available", lambda: True)
    monkeypatch.setattr(auto, "_resolve_backend", recorded)
    adapter = load_adapter(checkpoint)
    assert chosen == ["pil"] and adapter.settings()["image_backend"] == "pil"
