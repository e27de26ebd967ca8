"""The demo model's training pieces: examples encoded as the adapters prompt, glyph targets on the right tokens,
training keys and haystacks, the learning-rate schedule, and a seeded run that repeats exactly."""

import subprocess
from dataclasses import asdict

import pytest
import torch
import yaml
from safetensors.torch import load_file

from ocrheads.cli import main
from ocrheads.data.samples import text_sample
from ocrheads.demo.task import DemoTask
from ocrheads.errors import OcrHeadsError
from ocrheads.geometry import box_tokens
from ocrheads.models import load_adapter
from ocrheads.models.qwen_vl import QwenVLAdapter
from ocrheads.scoring.answers import text_prompt
from ocrheads.scoring.retrieval import needle_positions
from ocrheads.training import provenance
from ocrheads.training.architecture import build_model, build_processor, build_tokenizer
from ocrheads.training.examples import TRAINING_DIGITS, Examples, encode_for_training, glyph_targets
from ocrheads.training.reading import PROBE_FILE, GlyphReading, KeyAlignment
from ocrheads.training.schedule import RECIPE, Stage, TrainSettings, learning_rate, modality_at
from ocrheads.training.train import OPTIMIZER_FILE, recorded_setup, train_demo


@pytest.fixture(scope="module")
def adapter():
    tokenizer = build_tokenizer(0)
    return QwenVLAdapter(build_model(tokenizer, 0), build_processor(tokenizer))


def test_labels_are_the_answer_and_end_of_turn_after_the_adapters_prompt(adapter):
    examples = Examples(DemoTask(), seed=0).training_batch(0, 3, "text")
    batch = encode_for_training(adapter, examples)
    tokenizer = adapter.processor.tokenizer
    for item, example in enumerate(examples):
        labelled = batch["labels"][item][batch["labels"][item] >= 0]
        assert tokenizer.decode(labelled) == example.content.answer + "<|im_end|>"
        prompt = adapter.prompt(f"{example.content.context}\n\n{example.content.question}", 0)
        prompt_length = batch["attention_mask"][item].sum() - len(labelled)
        assert tokenizer.decode(batch["input_ids"][item][:prompt_length]) == prompt


def test_glyph_targets_sit_on_tokens_whose_pixels_hold_ink_and_name_their_left_neighbour(adapter):
    examples = Examples(DemoTask(), seed=0).training_batch(0, 2, "image")
    batch = encode_for_training(adapter, examples)
    tokens = adapter.image_tokens(batch, [[page.size for page in e.pages] for e in examples])
    targets = glyph_targets(adapter, tokens, examples)
    assert targets == batch["glyph_targets"]
    tokenizer = adapter.processor.tokenizer
    image_token = adapter.model.config.image_token_id
    first_patch, left_of_line = 0, tokenizer.convert_tokens_to_ids(tokenizer.tokenize(" ")[0])
    for item, example in enumerate(examples):
        positions = torch.nonzero(batch["input_ids"][item] == image_token).flatten().tolist()
        patches = batch["pixel_values"][first_patch : first_patch + 4 * len(positions)].unflatten(0, (-1, 4))
        first_patch += 4 * len(positions)
        inked = {positions[j] for j in range(len(positions)) if patches[j].max() > 0}
        mine = [target[1:] for target in targets if target[0] == item]
        assert {position for position, _, _ in mine} <= inked
        assert "".join(tokenizer.decode([char]) for _, char, _ in mine) == "".join(g.char for g in example.glyphs)
        lefts = {g.offset: tokenizer.decode([left]) for g, (_, _, left) in zip(example.glyphs, mine, strict=True)}
        start, key, space = example.content.answer_start, example.content.answer, tokenizer.decode([left_of_line])
        assert [lefts[start + i] for i in range(len(key))] == [space, *key[:-1]]
        lines = {}
        for glyph in example.glyphs:
            lines.setdefault(glyph.box[1] // DemoTask().cell, []).append(glyph.offset)
        assert {lefts[min(offsets)] for offsets in lines.values()} == {space}


def test_training_keys_run_from_one_to_sixteen_digits_in_mostly_short_haystacks():
    task = DemoTask()
    examples = Examples(task, seed=0).training_batch(0, 200, "text")
    digits = [len(e.content.answer) for e in examples]
    lengths = [e.content.meta["context_length"] for e in examples]
    assert min(digits) == 1 and max(digits) == TRAINING_DIGITS
    assert len(set(lengths)) == 1 and lengths[0] <= task.context_length
    batches = [Examples(task, seed=0).training_batch(first, 1, "text") for first in range(0, 3000, 16)]
    lengths = sorted(batch[0].content.meta["context_length"] for batch in batches)
    assert lengths[-1] <= task.context_length and lengths[len(lengths) // 2] < task.context_length / 2


def test_each_image_token_of_a_held_out_page_shows_exactly_one_character(adapter):
    examples = Examples(DemoTask(), seed=0)
    pages = [examples.example(10**9 + i, "image") for i in range(5)]  # one per font
    batch = adapter.encode([adapter.prompt("q", 1)] * 5, [e.pages for e in pages])
    images = adapter.image_tokens(batch, [[page.size for page in e.pages] for e in pages])
    for example, (image,) in zip(pages, images, strict=True):
        assert len(example.pages) == 1 and example.pages[0].size == (560, 560)
        tokens = [box_tokens(glyph.box, image, "any", 0.0) for glyph in example.glyphs]
        assert all(len(seen) == 1 for seen in tokens)
        assert len({seen[0] for seen in tokens}) == len(tokens)


def test_learning_rate_warms_up_holds_then_falls_to_a_tenth_in_each_stage():
    settings = TrainSettings(stages=(Stage(100, 1.0, decay=0.5), Stage(20, 0.5)), warmup_steps=10)
    assert learning_rate(0, settings) == pytest.approx(0.1)
    assert learning_rate(10, settings) == learning_rate(50, settings) == 1.0
    assert learning_rate(75, settings) == pytest.approx(0.55) and learning_rate(99, settings) == pytest.approx(0.118)
    assert learning_rate(100, settings) == pytest.approx(0.05)  # the next stage warms up again
    assert learning_rate(110, settings) == 0.5 and settings.steps == 120


def test_text_batches_come_first_then_one_step_in_the_stages_text_every():
    settings = TrainSettings(text_first=3, stages=(Stage(7, 1e-3, text_every=4), Stage(6, 1e-3, text_every=2)))
    initials = "".join(modality_at(step, settings)[0] for step in range(13))
    assert initials == "tttiititititi"


def _short(**changes) -> TrainSettings:
    """A short two-stage schedule (a few dozen steps) of the real recipe's shape."""
    stages = (Stage(12, 1e-3, eval_samples=2), Stage(12, 3e-4, decay=0.5, text_every=4, eval_samples=2))
    return TrainSettings(**{"stages": stages, "batch_size": 2, "warmup_steps": 2, "eval_every": 8, "threads": 1,
                            "text_first": 4, **changes})  # fmt: skip


class Interrupted(Exception):
    pass


def test_one_run_of_a_schedule_equals_the_same_run_interrupted_and_resumed(tmp_path):
    settings, quiet = _short(), {"log": lambda _: None}
    lines = []
    first = train_demo(tmp_path / "a", settings, snapshot=tmp_path / "a-snap", log=lines.append)
    train_demo(tmp_path / "b", settings, workers=2, **quiet)
    weights = [(tmp_path / name / "model.safetensors").read_bytes() for name in "ab"]
    assert weights[0] == weights[1]  # seeded: a run repeats exactly, with batches built by workers too
    assert [h["step"] for h in first["history"]] == [8, 16, 24] and first["settings"]["seed"] == 0
    assert [line.split()[2] for line in lines if line.startswith("step ")][:4] == ["text"] * 4

    def stop_after_step_21(line: str) -> None:
        if line.startswith("step 21 "):
            raise Interrupted

    with pytest.raises(Interrupted):
        train_demo(tmp_path / "c", settings, snapshot=tmp_path / "c-snap", log=stop_after_step_21)
    assert not (tmp_path / "c").exists()
    assert yaml.safe_load((tmp_path / "c-snap" / "training.yaml").read_text())["history"][-1]["step"] == 16
    resumed = train_demo(tmp_path / "c", settings, resume=tmp_path / "c-snap", **quiet)
    assert (tmp_path / "c" / "model.safetensors").read_bytes() == weights[0]
    probes = [load_file(tmp_path / name / PROBE_FILE) for name in "ac"]
    assert all(torch.equal(probes[0][key], probes[1][key]) for key in probes[0])
    assert [h["step"] for h in resumed["history"]] == [8, 16, 24]
    assert [h[m] for h in resumed["history"] for m in ("image", "text")] == [
        h[m] for h in first["history"] for m in ("image", "text")
    ]
    assert [run["first_step"] for run in resumed["runs"]] == [0, 16] and len(first["runs"]) == 1
    written = (tmp_path / "c" / "PROVENANCE.md").read_text()
    assert "1. `train_demo()` called from Python, from scratch" in written
    assert "2. `train_demo()` called from Python, resumed at step 16" in written
    assert "| 24 | " in written and f"{resumed['training_seconds']:,} s" in written
    loaded = load_adapter(tmp_path / "a")
    assert isinstance(loaded, QwenVLAdapter) and loaded.grid == (6, 8) and loaded.model.config.tie_word_embeddings
    assert not (tmp_path / "a" / OPTIMIZER_FILE).exists() and (tmp_path / "a-snap" / OPTIMIZER_FILE).is_file()


def test_the_seconds_saved_beside_the_weights_are_the_seconds_returned(tmp_path, monkeypatch):
    """A clock that moves a second at every read: two reads of the record at the end gave two durations."""
    ticks = iter(range(10**6))
    monkeypatch.setattr("ocrheads.training.train.time.perf_counter", lambda: float(next(ticks)))
    record = train_demo(tmp_path / "a", _short(stages=(Stage(2, 1e-3, eval_samples=1),), eval_every=2),
                        log=lambda _: None)  # fmt: skip
    saved = yaml.safe_load((tmp_path / "a" / "training.yaml").read_text())
    assert saved["training_seconds"] == record["training_seconds"] > 0


def test_a_snapshot_of_other_settings_or_a_finished_checkpoint_is_not_resumed(tmp_path):
    settings = _short(stages=(Stage(2, 1e-3, eval_samples=1),), eval_every=2)
    train_demo(tmp_path / "a", settings, snapshot=tmp_path / "a-snap", log=lambda _: None)
    with pytest.raises(OcrHeadsError, match="trained with other settings"):
        train_demo(tmp_path / "b", _short(stages=(Stage(4, 1e-3, eval_samples=1),)), resume=tmp_path / "a-snap")
    with pytest.raises(OcrHeadsError, match="not a train-demo snapshot"):
        train_demo(tmp_path / "b", settings, resume=tmp_path / "a")


def test_key_tokens_are_the_consecutive_tokens_of_the_key_line_and_twins_align_with_text(adapter):
    examples = Examples(DemoTask(), seed=0).training_batch(16, 3, "image")
    batch = encode_for_training(adapter, examples)
    keys = batch.pop("key_tokens")
    targets = {(item, position): char for item, position, char, _ in batch.pop("glyph_targets")}
    tokenizer = adapter.processor.tokenizer
    for item, (example, positions) in enumerate(zip(examples, keys, strict=True)):
        assert positions == list(range(positions[0], positions[0] + len(example.content.answer)))
        assert tokenizer.decode([targets[item, p] for p in positions]) == example.content.answer

    alignment = KeyAlignment(adapter, layers=(1, 3))
    contents = [e.content for e in examples]
    shape = (len(examples), batch["input_ids"].shape[1], adapter.model.config.text_config.hidden_size)
    zeros = tuple(torch.zeros(shape) for _ in range(7))
    assert alignment.loss(contents, keys, zeros).item() == pytest.approx(1.0)  # each layer: |t|^2 / |t|^2

    samples = [text_sample(content) for content in contents]
    prompts = [adapter.prompt(text_prompt(sample), 0) for sample in samples]
    text = adapter.encode(prompts, [[] for _ in samples])
    twins = needle_positions(adapter, prompts, samples, text["input_ids"])
    with torch.no_grad():
        teacher = adapter.model(**text, output_hidden_states=True).hidden_states
    copied = tuple(torch.zeros(shape) for _ in range(7))
    for layer in (1, 3):
        for item, (image, words) in enumerate(zip(keys, twins, strict=True)):
            copied[layer][item, image] = teacher[layer][item, words]
    assert alignment.loss(contents, keys, copied).item() == pytest.approx(0.0, abs=1e-6)


def test_the_cli_passes_its_training_settings_through_to_the_record(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["train-demo", "--out", str(out), "--steps", "1", "--batch-size", "1", "--learning-rate", "1e-4"]
    args += ["--decay", "0.5", "--text-every", "3", "--eval-samples", "1"]
    assert main([*args, "--threads", "1", "--seed", "3"]) == 0
    record = yaml.safe_load((out / "training.yaml").read_text())
    settings, [run] = record["settings"], record["runs"]
    assert run["command"] == "ocrheads " + " ".join([*args, "--threads", "1", "--seed", "3"])
    assert run["first_step"] == 0 and run["machine"].endswith("torch threads: 1")
    assert f"`{run['command']}`, from scratch" in (out / "PROVENANCE.md").read_text()
    assert settings["seed"] == 3 and settings["stages"] == [
        {"steps": 1, "learning_rate": 1e-4, "decay": 0.5, "text_every": 3, "eval_samples": 1}
    ]
    assert main(["train-demo", "--out", str(out), "--learning-rate", "1e-4"]) == 2
    assert "needs --steps" in capsys.readouterr().err
    only_steps = ["train-demo", "--out", str(tmp_path / "steps"), "--steps", "1", "--batch-size", "1"]
    assert main([*only_steps, "--eval-samples", "1", "--threads", "1"]) == 0
    [stage] = yaml.safe_load((tmp_path / "steps" / "training.yaml").read_text())["settings"]["stages"]
    assert stage["learning_rate"] == RECIPE[0].learning_rate == 2e-3
    assert TrainSettings().stages == RECIPE and TrainSettings().steps == 7350
    gpu = ["train-demo", "--out", str(tmp_path / "gpu"), "--device", "cuda:99"]
    assert main(gpu) == 2 and "--device cuda:99" in capsys.readouterr().err and not (tmp_path / "gpu").exists()


def test_a_run_on_a_gpu_names_the_gpu_beside_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: f"NVIDIA H200 ({device})")
    threads = torch.get_num_threads()
    assert provenance.machine(torch.device("cuda", 0)).endswith(f"threads: {threads}, GPU: NVIDIA H200 (cuda:0)")
    assert "GPU" not in provenance.machine(torch.device("cpu"))


def test_reading_loss_is_both_cross_entropies_on_the_language_models_input_embeddings(adapter):
    examples = Examples(DemoTask(), seed=0).training_batch(32, 2, "image")
    batch = encode_for_training(adapter, examples)
    targets, _ = batch.pop("glyph_targets"), batch.pop("key_tokens")
    kept = {}
    hook = adapter.model.model.language_model.register_forward_pre_hook(
        lambda _m, _a, kwargs: kept.update(embeds=kwargs["inputs_embeds"]), with_kwargs=True
    )
    with torch.no_grad():
        hidden = adapter.model(**batch, output_hidden_states=True).hidden_states
    hook.remove()
    assert torch.equal(hidden[0], kept["embeds"])  # hidden_states[0] is what the language model reads
    reading = GlyphReading(adapter.model)
    rows = torch.tensor(targets)
    embeds = kept["embeds"][rows[:, 0], rows[:, 1]]
    by_hand = [torch.log_softmax(adapter.model.lm_head(embeds), -1), torch.log_softmax(reading.previous(embeds), -1)]
    expected = sum(
        -scores[torch.arange(len(rows)), rows[:, col]].mean() for scores, col in zip(by_hand, (2, 3), strict=True)
    )
    with torch.no_grad():
        assert reading.loss(targets, hidden[0]).item() == pytest.approx(expected.item(), rel=1e-5)


def test_the_reading_probe_is_saved_and_loaded_beside_a_checkpoint(adapter, tmp_path):
    trained, fresh = GlyphReading(adapter.model), GlyphReading(adapter.model)
    assert not torch.equal(trained.previous.weight, fresh.previous.weight)
    trained.save(tmp_path)
    fresh.load(tmp_path)
    assert torch.equal(trained.previous.weight, fresh.previous.weight)
    assert torch.equal(trained.previous.bias, fresh.previous.bias)
    untouched = GlyphReading(adapter.model)
    before = untouched.previous.weight.clone()
    untouched.load(tmp_path / "no-probe-here")
    assert torch.equal(untouched.previous.weight, before)


def test_the_key_alignment_loss_is_a_switch_of_the_recipe(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the key alignment loss was taken")

    monkeypatch.setattr(KeyAlignment, "loss", refuse)
    settings = _short(stages=(Stage(2, 1e-3, eval_samples=1),), text_first=0, eval_every=2, key_alignment=False)
    record = train_demo(tmp_path / "a", settings, log=lambda _: None)  # image steps, without the alignment loss
    assert record["settings"]["key_alignment"] is False
    with pytest.raises(AssertionError, match="alignment loss was taken"):
        train_demo(tmp_path / "b", _short(stages=settings.stages, text_first=0, eval_every=2), log=lambda _: None)


def test_untied_reading_names_page_characters_by_a_probe_of_its_own_kept_beside_the_checkpoint(adapter, tmp_path):
    examples = Examples(DemoTask(), seed=0).training_batch(32, 2, "image")
    batch = encode_for_training(adapter, examples)
    targets, _ = batch.pop("glyph_targets"), batch.pop("key_tokens")
    with torch.no_grad():
        embeds = adapter.model(**batch, output_hidden_states=True).hidden_states[0]
    untied, tied = GlyphReading(adapter.model, tied=False), GlyphReading(adapter.model)
    assert untied.own is not adapter.model.lm_head and tied.own is adapter.model.lm_head
    assert len(untied.parameters()) == 4 and len(tied.parameters()) == 2  # the model's own layer is not a probe's
    rows = torch.tensor(targets)
    picked = embeds[rows[:, 0], rows[:, 1]]
    by_hand = sum(
        torch.nn.functional.cross_entropy(probe(picked), rows[:, col])
        for probe, col in ((untied.own, 2), (untied.previous, 3))
    )
    with torch.no_grad():
        assert untied.loss(targets, embeds).item() == pytest.approx(by_hand.item(), rel=1e-5)
    adapter.model.zero_grad(set_to_none=True)
    untied.loss(targets, embeds).backward()
    assert adapter.model.lm_head.weight.grad is None and untied.own.weight.grad is not None  # the output layer is free
    untied.save(tmp_path)
    assert sorted(load_file(tmp_path / PROBE_FILE)) == ["bias", "own.bias", "own.weight", "weight"]
    fresh = GlyphReading(adapter.model, tied=False)
    fresh.load(tmp_path)
    assert torch.equal(fresh.own.weight, untied.own.weight) and torch.equal(fresh.previous.bias, untied.previous.bias)


def test_an_untied_run_records_its_switch_and_resumes_exactly(tmp_path):
    settings = _short(stages=(Stage(4, 1e-3, eval_samples=1),), text_first=0, eval_every=2, tied_reading=False)
    quiet = {"log": lambda _: None}
    whole = train_demo(tmp_path / "a", settings, snapshot=tmp_path / "a-snap", **quiet)
    assert whole["settings"]["tied_reading"] is False
    assert "page characters read by a probe of their own" in (tmp_path / "a" / "PROVENANCE.md").read_text()

    def stop_after_step_2(line: str) -> None:
        if line.startswith("step 2 "):
            raise Interrupted

    with pytest.raises(Interrupted):
        train_demo(tmp_path / "b", settings, snapshot=tmp_path / "b-snap", log=stop_after_step_2)
    train_demo(tmp_path / "b", settings, resume=tmp_path / "b-snap", **quiet)
    for name in ("model.safetensors", PROBE_FILE):
        assert (tmp_path / "b" / name).read_bytes() == (tmp_path / "a" / name).read_bytes(), name
    with pytest.raises(OcrHeadsError, match="trained with other settings"):
        train_demo(
            tmp_path / "c", _short(stages=settings.stages, text_first=0, eval_every=2), resume=tmp_path / "b-snap"
        )


def test_a_record_written_before_a_setting_existed_has_its_default():
    written_then = {key: value for key, value in asdict(TrainSettings()).items() if key != "tied_reading"}
    assert recorded_setup(written_then, DemoTask()) == recorded_setup(TrainSettings(), DemoTask())
    assert recorded_setup(written_then, DemoTask()) != recorded_setup(TrainSettings(tied_reading=False), DemoTask())


def test_the_code_commit_is_the_checkouts_head_and_says_when_the_source_differs(tmp_path, monkeypatch):
    head = subprocess.run(["git", "-C", str(provenance.SOURCE), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("the tests run from an installed package, not a git checkout")
    dirty = subprocess.run(["git", "-C", str(provenance.SOURCE), "status", "--porcelain", "--", "."],
                           capture_output=True, text=True).stdout.strip()  # fmt: skip
    assert provenance.code_commit() == head.stdout.strip() + ("-dirty" if dirty else "")
    elsewhere = tmp_path / "src" / "ocrheads"
    elsewhere.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(tmp_path / "other")], check=True)
    monkeypatch.setattr(provenance, "SOURCE", elsewhere)
    assert provenance.code_commit().endswith("(not run from a git checkout)")
    inside_other = tmp_path / "other" / "vendored" / "ocrheads"
    inside_other.mkdir(parents=True)
    monkeypatch.setattr(provenance, "SOURCE", inside_other)
    assert provenance.code_commit().endswith("(not run from a git checkout)")
