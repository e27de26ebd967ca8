"""`--preset paper-code` sends the paper code's inputs and decodes as it did, checked against strings and ids built
the way the paper's code builds them (METHOD.md 2.1-2.3), not against ocrheads' own output."""

import json

import pytest
import torch
import transformers as tf
import yaml
from PIL import Image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

from ocrheads.attention import install
from ocrheads.cli import main
from ocrheads.data.generate import generate
from ocrheads.data.manifest import open_pages, read_manifest
from ocrheads.data.samples import RenderStyle
from ocrheads.devices import to_cpu
from ocrheads.errors import OcrHeadsError
from ocrheads.eval.conditions import Condition
from ocrheads.eval.datasets import synthetic
from ocrheads.eval.prompts import encode_questions
from ocrheads.eval.runner import Intervention, edits_for
from ocrheads.heads import Head
from ocrheads.models import ModelSpec, load_adapter
from ocrheads.models.convert import convert
from ocrheads.scoring.answers import answer_tokens, encode_samples, gold_ids, sample_prompt
from ocrheads.scoring.options import scoring_options
from ocrheads.scoring.passes import write_answers
from ocrheads.testing.qwen2_vl_shapes import PUBLISHED_GENERATION
from ocrheads.testing.tiny_internvl_chat import write_tiny_internvl_chat

from .internvl_reference import Reference, original_tiles, slow_tokenizer_ids
from .qwen2_vl_real import PAPER_PIXELS, qwen2_vl_paper_model
from .tiny_inputs import extend_for, tiny_adapter

PAGES = RenderStyle(lines_per_page=6, wrap_width=40)  # a 300-character haystack fills three pages
PER_TILE, TILE = 4, 56  # the tiny InternVL's tokens per tile and tile side (InternVL2-8B: 256 and 448)


@pytest.fixture(scope="module")
def internvl(tmp_path_factory):
    """(remote folder, native folder) of a tiny checkpoint in the paper's InternVL2 layout."""
    root = tmp_path_factory.mktemp("paper-internvl")
    remote = write_tiny_internvl_chat(root / "remote")
    return remote, convert(remote, root / "native")


@pytest.fixture(scope="module")
def passkeys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("paper-passkeys") / "data"
    generate("passkey", folder, n=2, lengths=(300,), digits=5, seed=8, style=PAGES, progress=False)
    assert all(len(sample.pages) == 3 for sample in read_manifest(folder))
    return folder


def _paper_internvl_ids(remote, pages: int, question: str) -> list[int]:
    """The paper code's InternVL2 prompt: the raw string through the tokenizer, every page in one <img> block."""
    return slow_tokenizer_ids(remote, "<img>" + "<IMG_CONTEXT>" * (PER_TILE * pages) + "</img>\n" + question)


def test_the_paper_format_sends_internvl2_the_paper_code_s_ids_pixels_and_logits(internvl, passkeys):
    remote, native = internvl
    adapter = load_adapter(native, prompt_format="paper", max_patches=1)
    sample = read_manifest(passkeys)[0]
    pages = open_pages(passkeys, sample)
    batch = to_cpu(encode_samples(adapter, [sample], [pages]))
    ids = batch["input_ids"][0]
    assert ids.tolist() == _paper_internvl_ids(remote, 3, "What is the passkey?")
    start = ids.tolist().index(adapter.processor.start_image_token_id)
    [images] = adapter.image_tokens(batch, [[page.size for page in pages]])
    assert [image.tiles[0].token_start for image in images] == [start + 1 + PER_TILE * e for e in range(3)]
    assert all(len(image.tiles) == 1 and image.tiles[0].region == (0.0, 0.0, *image.size) for image in images)
    expected_pixels = torch.cat([original_tiles(page, TILE, 1, 1) for page in pages])
    assert (batch["pixel_values"] - expected_pixels).abs().max().item() <= 1e-5
    model = tf.InternVLForConditionalGeneration.from_pretrained(native, attn_implementation="eager").eval()
    with torch.no_grad():
        logits = model(**batch).logits[0]
    expected, _ = Reference(remote).forward(ids, expected_pixels, model.config.image_token_id)
    assert (logits - expected).abs().max().item() <= 1e-5


def test_the_paper_format_words_passkey_questions_as_the_paper_code_did(internvl, tmp_path):
    _, native = internvl
    needles = tmp_path / "niah"
    generate("niah", needles, n=1, lengths=(200,), seed=3, progress=False)
    passkey, texts = tmp_path / "passkey", tmp_path / "texts"
    generate("passkey", passkey, n=1, lengths=(200,), digits=4, seed=3, progress=False)
    generate("passkey", texts, n=1, lengths=(200,), digits=4, seed=3, modality="text", progress=False)
    [niah], [key], [text] = (read_manifest(folder) for folder in (needles, passkey, texts))
    paper, chat = load_adapter(native, prompt_format="paper"), load_adapter(native)
    assert sample_prompt(paper, key).endswith("</img>\nWhat is the passkey?")
    assert sample_prompt(paper, niah).endswith(f"</img>\n{niah.question}")
    assert sample_prompt(paper, text) == f"<img></img>\n{text.context}\n\nWhat is the passkey?"
    assert "What is the pass key?" in sample_prompt(chat, key)


def test_answer_tokens_are_the_paper_code_s_ids_without_bos(internvl, passkeys):
    """tokenizer(answer).input_ids[1:] (METHOD.md 2.3): a written answer that is the key is fully correct (c = 1),
    and its tokens that the paper's set membership finds pair with the boxes by position (the b-th with the b-th)."""
    remote, native = internvl
    adapter = load_adapter(native, prompt_format="paper", max_patches=1)
    options = scoring_options("paper-code", answers="gold")
    for sample in read_manifest(passkeys):
        paper_ids = slow_tokenizer_ids(remote, sample.answer)[1:]
        [ids] = gold_ids(adapter, [sample])
        assert ids == paper_ids
        tokens, c, _ = answer_tokens(adapter, sample, paper_ids, len(sample.answer), options)
        assert c == 1.0
        found = [n for n, token in enumerate(paper_ids) if token in set(paper_ids)]
        assert [token.index for token in tokens] == found[: len(sample.answer)]


class GenerateSpy:
    """Records what a model class's generate is called with, then calls it."""

    def __init__(self, monkeypatch, model_class):
        self.calls = []
        original = model_class.generate

        def spy(model, *args, **kwargs):
            self.calls.append({k: to_cpu(v) if torch.is_tensor(v) else v for k, v in kwargs.items()})
            return original(model, *args, **kwargs)

        monkeypatch.setattr(model_class, "generate", spy)


def test_score_with_the_preset_sends_internvl2_the_paper_code_s_prompt_tiles_and_decoding(
    internvl, passkeys, tmp_path, monkeypatch, capsys
):
    remote, _ = internvl
    spy = GenerateSpy(monkeypatch, tf.InternVLForConditionalGeneration)
    common = ["--model", str(remote), "--convert-cache", str(tmp_path / "cache"), "--data", str(passkeys)]
    assert main(["score", "ocr", *common, "--out", str(tmp_path / "run"), "--preset", "paper-code", "--quiet"]) == 0
    assert "scored" in capsys.readouterr().out
    config = yaml.safe_load((tmp_path / "run" / "ocr" / "config.yaml").read_text())
    settings = config["model_settings"]
    assert settings["prompt_format"] == "paper" and settings["pixels"] == {"max_patches": 1}
    assert settings["decoding"] == {"stop_tokens": [2, 281], "repetition_penalty": 1.0}
    assert config["options"]["max_new_tokens"] == 32 and config["options"]["row"] == "consuming"
    samples = read_manifest(passkeys)
    assert len(spy.calls) == len(samples)
    for call, sample in zip(spy.calls, samples, strict=True):
        assert call["input_ids"][0].tolist() == _paper_internvl_ids(remote, 3, "What is the passkey?")
        tiles = torch.cat([original_tiles(page, TILE, 1, 1) for page in open_pages(passkeys, sample)])
        assert torch.allclose(call["pixel_values"], tiles, atol=1e-5)
        assert call["max_new_tokens"] == 32 and call["eos_token_id"] == [2, 281] and not call["do_sample"]
    paper = ["--model", str(remote), "--convert-cache", str(tmp_path / "cache"), "--prompt-format", "paper"]
    assert main(["verify", *paper, "--pixels", "max_patches=1"]) == 0
    assert "all checks passed" in capsys.readouterr().out
    overlay = ["overlay", str(tmp_path / "run"), "--data", str(passkeys), "--sample", samples[0].id, "--top", "1"]
    assert main([*overlay, *paper, "--pixels", "max_patches=1"]) == 0
    overlays = yaml.safe_load((tmp_path / "run" / "overlays" / "config.yaml").read_text())
    assert overlays["model_settings"]["prompt_format"] == "paper"
    assert list((tmp_path / "run" / "overlays").glob(f"{samples[0].id}_*_page*.png"))


def test_image_receivers_of_the_sink_edit_are_the_paper_block_s_tokens(internvl, passkeys):
    _, native = internvl
    adapter = load_adapter(native, prompt_format="paper", max_patches=1)
    samples = [synthetic(str(passkeys)).read(0)]
    batch = to_cpu(encode_questions(adapter, samples, "direct"))
    condition = Condition("ocr-top1", "ocr", (Head(0, 1),))
    edits = edits_for(Intervention("sink", receivers="image"), condition, adapter, samples, batch, 4)
    ids = batch["input_ids"][0].tolist()
    block = ids.index(adapter.processor.start_image_token_id) + 1
    receivers = torch.nonzero(edits.sink.receivers[0]).flatten().tolist()
    assert receivers == list(range(block, block + 3 * PER_TILE))
    assert {ids[k] for k in receivers} == {adapter.model.config.image_token_id}


def _qwen_paper_ids(tokenizer, pages: list[Image.Image]) -> list[int]:
    """The paper code's Qwen2-VL prompt: the chat template's default system turn, each page after qwen-vl-utils'
    resize and the processor's 256 x 28 x 28 pixels, then the question."""
    spans = ""
    for page in pages:
        height, width = smart_resize(page.height, page.width, 28, 4 * 28 * 28, 16384 * 28 * 28)  # fetch_image
        height, width = smart_resize(height, width, 28, PAPER_PIXELS, PAPER_PIXELS)
        spans += "<|vision_start|>" + "<|image_pad|>" * (height * width // 28**2) + "<|vision_end|>"
    text = (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        f"{spans}What is the pass key?<|im_end|>\n<|im_start|>assistant\n"
    )
    return tokenizer(text).input_ids


@pytest.fixture(scope="module")
def qwen2_vl_checkpoint(tmp_path_factory):
    """A tiny Qwen2-VL with the real tokenizer, saved with Qwen2-VL-Instruct's published generation config."""
    folder = tmp_path_factory.mktemp("paper-qwen2-vl")
    model, processor = qwen2_vl_paper_model()
    model.generation_config = tf.GenerationConfig(**PUBLISHED_GENERATION)
    model.save_pretrained(folder)
    processor.image_processor.size = {"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 1280}  # not the paper's
    processor.save_pretrained(folder)
    return folder


def test_score_with_the_preset_sends_qwen2_vl_the_paper_code_s_prompt_pixels_and_decoding(
    qwen2_vl_checkpoint, passkeys, tmp_path, monkeypatch
):
    spy = GenerateSpy(monkeypatch, tf.Qwen2VLForConditionalGeneration)
    run = ["score", "ocr", "--model", str(qwen2_vl_checkpoint), "--data", str(passkeys), "--out", str(tmp_path / "r")]
    assert main([*run, "--preset", "paper-code", "--quiet"]) == 0
    config = yaml.safe_load((tmp_path / "r" / "ocr" / "config.yaml").read_text())
    settings = config["model_settings"]
    assert settings["prompt_format"] == "chat"
    assert settings["pixels"] == {"min_pixels": PAPER_PIXELS, "max_pixels": PAPER_PIXELS, "pre_resize": True}
    assert settings["decoding"] == {"stop_tokens": [151645, 151643], "repetition_penalty": 1.05}
    assert config["options"]["max_new_tokens"] == 128
    tokenizer = tf.AutoTokenizer.from_pretrained(qwen2_vl_checkpoint)
    for call, sample in zip(spy.calls, read_manifest(passkeys), strict=True):
        assert call["input_ids"][0].tolist() == _qwen_paper_ids(tokenizer, open_pages(passkeys, sample))
        assert call["max_new_tokens"] == 128 and call["repetition_penalty"] == 1.05 and not call["do_sample"]
    path = qwen2_vl_checkpoint / "generation_config.json"
    changed = json.loads(path.read_text()) | {"repetition_penalty": 1.1}
    path.write_text(json.dumps(changed))
    try:
        assert main([*run, "--preset", "paper-code", "--quiet"]) == 2  # a changed generation config: a changed run
    finally:
        path.write_text(json.dumps(changed | {"repetition_penalty": PUBLISHED_GENERATION["repetition_penalty"]}))


def test_the_default_preset_and_options_beside_the_preset_keep_their_own_settings(
    qwen2_vl_checkpoint, passkeys, tmp_path
):
    common = ["--model", str(qwen2_vl_checkpoint), "--data", str(passkeys), "--answers", "gold", "--quiet"]
    assert main(["score", "ocr", *common, "--out", str(tmp_path / "plain")]) == 0
    plain = yaml.safe_load((tmp_path / "plain" / "ocr" / "config.yaml").read_text())
    assert plain["model_settings"]["pixels"] == {} and plain["options"]["max_new_tokens"] == 32
    assert plain["model_settings"]["decoding"]["repetition_penalty"] == 1.05  # the checkpoint's, as before
    given = ["--preset", "paper-code", "--pixels", "max_pixels=401408", "--max-new-tokens", "9"]
    given += ["--repetition-penalty", "1", "--stop-tokens", "eos", "13"]
    assert main(["score", "ocr", *common, *given, "--out", str(tmp_path / "mixed")]) == 0
    mixed = yaml.safe_load((tmp_path / "mixed" / "ocr" / "config.yaml").read_text())
    assert mixed["model_settings"]["pixels"]["max_pixels"] == 401408
    assert mixed["model_settings"]["pixels"]["min_pixels"] == PAPER_PIXELS
    assert mixed["model_settings"]["decoding"] == {"stop_tokens": [151645, 151643, 13], "repetition_penalty": 1.0}
    assert mixed["options"]["max_new_tokens"] == 9


def test_bad_prompt_formats_and_decoding_settings_are_one_line_each(qwen2_vl_checkpoint, internvl, capsys):
    with pytest.raises(OcrHeadsError, match=r"^qwen2_vl has no prompt format 'paper' \(the paper's code"):
        ModelSpec(str(qwen2_vl_checkpoint), prompt_format="paper").config  # noqa: B018
    with pytest.raises(OcrHeadsError, match="has no prompt format 'raw'"):
        load_adapter(internvl[1], prompt_format="raw")
    with pytest.raises(OcrHeadsError, match="outside the model's vocabulary"):
        ModelSpec(str(qwen2_vl_checkpoint), decoding={"stop_tokens": [10**7]}).config  # noqa: B018
    verify = ["verify", "--model", str(qwen2_vl_checkpoint)]
    for bad, message in ((["--prompt-format", "paper"], "no prompt format 'paper'"),
                         (["--stop-tokens", "end"], "--stop-tokens takes token ids and 'eos', got 'end'"),
                         (["--repetition-penalty", "0"], "--repetition-penalty takes a number above 0")):  # fmt: skip
        assert main([*verify, *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    with pytest.raises(SystemExit):
        main([*verify, "--prompt-format", "raw"])
    assert "invalid choice: 'raw'" in capsys.readouterr().err


@pytest.mark.parametrize("family", ["qwen2_vl", "internvl"])
def test_a_repetition_penalty_picks_tokens_as_hand_decoding_does_and_rows_stay_the_model_s(family, passkeys):
    """Under a penalty, the written tokens are a hand-written greedy loop's (every token already in the sequence
    penalised), and each captured row's argmax is eager attention's on what was written."""
    tiny = tiny_adapter(family)
    adapter = type(tiny)(tiny.model, tiny.processor, decoding={"repetition_penalty": 4.0})
    install(adapter.model)
    sample = read_manifest(passkeys)[0]
    batch = encode_samples(adapter, [sample], [open_pages(passkeys, sample)])
    options = scoring_options(max_new_tokens=8)
    written = write_answers(adapter, batch, options)
    plain = write_answers(type(tiny)(tiny.model, tiny.processor), batch, options)
    assert written.tokens[0] != plain.tokens[0], "the penalty must change what this model writes"
    ids, stops = batch["input_ids"][0].tolist(), set(adapter.decoding.stop_tokens)
    with torch.no_grad():
        for _ in range(options.max_new_tokens):
            sequence = torch.tensor([ids], device=batch["input_ids"].device)
            logits = adapter.model(**extend_for(batch, sequence, adapter.model.config.model_type)).logits[0, -1].clone()
            seen = torch.tensor(sorted(set(ids)), device=logits.device)
            logits[seen] = torch.where(logits[seen] < 0, logits[seen] * 4.0, logits[seen] / 4.0)
            ids.append(int(logits.argmax()))
            if ids[-1] in stops:
                break
    assert written.tokens[0] == adapter.until_end(ids[written.prompt_length :])
    sequence = torch.tensor([ids[: written.prompt_length + len(written.tokens[0])]], device=batch["input_ids"].device)
    adapter.model.set_attn_implementation("eager")
    with torch.no_grad():
        attentions = adapter.model(
            **extend_for(batch, sequence, adapter.model.config.model_type), output_attentions=True
        ).attentions
    install(adapter.model)
    eager = to_cpu(torch.stack([layer[0] for layer in attentions]).argmax(-1))  # (layers, heads, rows)
    for n in range(len(written.tokens[0])):
        row = written.prompt_length - 1 + n
        assert torch.equal(written.argmax[:, 0, :, written.column(0, row)], eager[:, :, row]), n


def test_the_preset_on_a_family_the_paper_did_not_run_sets_its_scoring_choices_only(passkeys, tmp_path, capsys):
    adapter = tiny_adapter("llava")
    adapter.model.save_pretrained(tmp_path / "llava")
    adapter.processor.save_pretrained(tmp_path / "llava")
    run = ["score", "ocr", "--model", str(tmp_path / "llava"), "--data", str(passkeys), "--answers", "gold"]
    assert main([*run, "--out", str(tmp_path / "run"), "--preset", "paper-code", "--quiet"]) == 0
    assert "note: the paper's code ran no llava model" in capsys.readouterr().err
    config = yaml.safe_load((tmp_path / "run" / "ocr" / "config.yaml").read_text())
    assert config["model_settings"]["prompt_format"] == "chat" and config["model_settings"]["pixels"] == {}
    assert config["options"]["row"] == "consuming" and config["options"]["max_new_tokens"] == 32
