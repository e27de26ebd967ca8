"""Scoring and masking on a tiny Qwen2-VL that reads its input exactly as the paper's Qwen2-VL-Instruct: the real
vocabulary and special-token ids, the Instruct chat template, patch 14, merge 2, min = max = 256 x 28 x 28."""

import json

import pytest
import torch
import yaml
from PIL import Image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

from ocrheads.attention import Edits, attention_session, install
from ocrheads.cli import main
from ocrheads.data.generate import generate
from ocrheads.data.manifest import read_manifest
from ocrheads.data.samples import RenderStyle
from ocrheads.heads import Head
from ocrheads.models import adapter_class
from ocrheads.scoring.options import scoring_options

from .qwen2_vl_real import PAPER_PIXELS, qwen2_vl_paper_model, qwen2_vl_tokenizer
from .test_mask_cli import _hand_masked_replies
from .test_score_ocr import _check_against_reference

PAGES = RenderStyle(lines_per_page=8, wrap_width=40)  # a 300-character haystack fills several pages


@pytest.fixture(scope="module")
def adapter():
    model, processor = qwen2_vl_paper_model()
    return adapter_class(model.config)(model, processor)


@pytest.fixture(scope="module")
def multi_page_passkeys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("real-qwen") / "data"
    generate("passkey", folder, n=3, lengths=(300,), digits=5, seed=8, style=PAGES, progress=False)
    return folder


def test_the_vocabulary_and_special_tokens_are_qwen2_vl_s():
    tokenizer = qwen2_vl_tokenizer()
    ids = tokenizer("The pass key is 12345. Remember it.").input_ids
    assert ids == [785, 1494, 1376, 374, 220, 16, 17, 18, 19, 20, 13, 19881, 432, 13]  # RECIPES.md 7
    assert tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [151643, 151644, 151645]
    assert tokenizer.convert_tokens_to_ids(["<|vision_start|>", "<|image_pad|>", "<|video_pad|>"]) == [
        151652,
        151655,
        151656,
    ]
    assert tokenizer("<|vision_start|><|image_pad|><|vision_end|>").input_ids == [151652, 151655, 151653]


def test_a_two_image_chat_prompt_expands_each_page_to_the_paper_s_256_tokens(adapter):
    prompt = adapter.prompt("What is the pass key?", 2)
    assert prompt == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|><|vision_start|><|image_pad|><|vision_end|>"
        "What is the pass key?<|im_end|>\n<|im_start|>assistant\n"
    )
    pages = [Image.new("RGB", (560, 560), "white"), Image.new("RGB", (700, 350), "white")]
    batch = adapter.encode([prompt], [pages])
    images = adapter.image_tokens(batch, [[page.size for page in pages]])[0]
    resized = [smart_resize(h, w, 28, PAPER_PIXELS, PAPER_PIXELS)[::-1] for w, h in (page.size for page in pages)]
    assert resized == [(448, 448), (616, 308)]  # at most 200,704 pixels, in 28-px cells
    assert [tile.pixels for image in images for tile in image.tiles] == resized
    assert [len(image.positions()) for image in images] == [16 * 16, 22 * 11]
    ids = batch["input_ids"][0]
    assert int((ids == 151655).sum()) == 256 + 242 and ids[-3:].tolist() == [151644, 77091, 198]  # "assistant\n"


def test_multi_digit_answers_on_several_pages_score_like_eager_attention(adapter, multi_page_passkeys):
    install(adapter.model)
    for sample in read_manifest(multi_page_passkeys):
        pages = [Image.open(multi_page_passkeys / page).convert("RGB") for page in sample.pages]
        assert len(pages) >= 2
        for preset in ("default", "paper-code"):
            options = scoring_options(preset, answers="gold", alignment="offsets")
            checked, rows = _check_against_reference(adapter, sample, pages, options)
            assert checked == 5  # one scored entry per digit: five tokens for a five-digit key
            assert sorted(set(rows["token"].tolist())) == [0, 1, 2, 3, 4]


@pytest.fixture(scope="module")
def paper_checkpoint(tmp_path_factory, adapter):
    folder = tmp_path_factory.mktemp("paper-qwen2-vl")
    adapter.model.save_pretrained(folder)
    adapter.processor.save_pretrained(folder)
    return folder


def test_scoring_and_masking_through_the_cli(tmp_path, paper_checkpoint, multi_page_passkeys, capsys):
    texts, run = tmp_path / "texts", tmp_path / "run"
    generate("passkey", texts, n=3, lengths=(300,), digits=5, seed=8, modality="text", progress=False)
    common = ["--model", str(paper_checkpoint), "--out", str(run), "--answers", "gold", "--quiet"]
    assert main(["score", "ocr", "--data", str(multi_page_passkeys), *common, "--preset", "paper-code"]) == 0
    assert main(["score", "retrieval", "--data", str(texts), *common]) == 0
    assert "scored 3 of 3 samples" in capsys.readouterr().out
    settings = yaml.safe_load((run / "ocr" / "config.yaml").read_text())["model_settings"]["image_processor"]
    assert settings["size"] == {"longest_edge": PAPER_PIXELS, "shortest_edge": PAPER_PIXELS}
    scores = json.loads((run / "ocr" / "scores.json").read_text())
    assert len(scores) == 2 * 4 and len(scores["l0_h0"]) == 3 * 5
    command = ["mask", str(run), "--model", str(paper_checkpoint), "--dataset", str(multi_page_passkeys)]
    assert main([*command, "--k", "3", "--random-seeds", "1", "--max-new-tokens", "6", "--quiet"]) == 0
    config = yaml.safe_load((run / "mask" / "config.yaml").read_text())
    predictions = [json.loads(line) for line in (run / "mask" / "predictions.jsonl").read_text().splitlines()]
    replies = [p["reply"] for p in predictions if p["condition"] == "ocr-top3"]
    heads = [Head.parse(name) for name in config["conditions"]["ocr-top3"]]
    assert replies == _hand_masked_replies(paper_checkpoint, multi_page_passkeys, heads, 6)
    baseline = [p["reply"] for p in predictions if p["condition"] == "baseline"]
    assert baseline == _hand_masked_replies(paper_checkpoint, multi_page_passkeys, [], 6)


def test_masking_a_head_equals_zeroing_its_slice_before_o_proj(adapter, multi_page_passkeys):
    sample = read_manifest(multi_page_passkeys)[0]
    pages = [Image.open(multi_page_passkeys / page).convert("RGB") for page in sample.pages]
    batch = adapter.encode([adapter.prompt(sample.question, len(pages))], [pages])
    model = install(adapter.model)
    attention = model.model.language_model.layers[1].self_attn
    size = attention.head_dim

    def zero_head_2(_module, args):
        hidden = args[0].clone()
        hidden[..., 2 * size : 3 * size] = 0
        return (hidden,)

    with torch.no_grad():
        plain = model(**batch).logits
        with attention_session(model, edits=Edits(zero={1: (2,)})):
            masked = model(**batch).logits
        hook = attention.o_proj.register_forward_pre_hook(zero_head_2)
        try:
            hooked = model(**batch).logits
        finally:
            hook.remove()
    assert (masked - hooked).abs().max() < 1e-5 < (masked - plain).abs().max()
