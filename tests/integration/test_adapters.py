"""Adapter prompts (with and without a chat template) and load-time pixel options, for every family."""

import pytest
import torch
from PIL import Image

from ocrheads.errors import OcrHeadsError
from ocrheads.models import load_adapter
from ocrheads.testing.tiny import FAMILIES

from .tiny_inputs import tiny_adapter

TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}>{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}PLACEHOLDER{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


# generic families whose image token must sit between image start and end tokens (their rotary positions find
# images by them): only their own chat template writes that, so a prompt without it, or with this test's, is not
# one their checkpoints take
OWN_TEMPLATE_ONLY = tuple(
    family for family in ("llava_onevision1_5", "paddleocr_vl", "hunyuan_vl") if family in FAMILIES
)


@pytest.mark.parametrize("family", [family for family in FAMILIES if family not in OWN_TEMPLATE_ONLY])
def test_prompts_hold_one_placeholder_per_image_with_or_without_a_chat_template(family):
    adapter = tiny_adapter(family)
    placeholder = adapter.image_placeholder
    assert adapter.prompt("Key?", 2) == placeholder * 2 + "Key?"
    adapter.processor.chat_template = TEMPLATE.replace("PLACEHOLDER", placeholder)
    prompt = adapter.prompt("Key?", 2)
    assert prompt == f"<user>{placeholder}{placeholder}Key?<assistant>"
    pages = [Image.new("RGB", (120, 80), "white"), Image.new("RGB", (80, 120), "white")]
    batch = adapter.encode([prompt], [pages])
    [images] = adapter.image_tokens(batch, [[page.size for page in pages]])
    assert [image.image for image in images] == [0, 1]


@pytest.mark.parametrize("family", OWN_TEMPLATE_ONLY)
def test_generic_prompts_go_through_the_checkpoints_own_chat_template(family):
    adapter = tiny_adapter(family)
    prompt = adapter.prompt("Key?", 2)
    assert prompt.count(adapter.image_placeholder) == 2 and prompt != adapter.image_placeholder * 2 + "Key?"
    pages = [Image.new("RGB", (120, 80), "white"), Image.new("RGB", (80, 120), "white")]
    [images] = adapter.image_tokens(adapter.encode([prompt], [pages]), [[page.size for page in pages]])
    assert [image.image for image in images] == [0, 1] and all(image.tiles for image in images)


def test_pixel_options_reach_the_processor_and_unknown_ones_are_refused(tmp_path):
    adapter = tiny_adapter("internvl")
    adapter.model.save_pretrained(tmp_path)
    adapter.processor.save_pretrained(tmp_path)
    wide = Image.new("RGB", (400, 60), "white")
    tiles = {}
    for max_patches in (2, 6):
        loaded = load_adapter(tmp_path, dtype=torch.float32, max_patches=max_patches)
        batch = loaded.encode([loaded.prompt("q", 1)], [[wide]])
        [[image]] = loaded.image_tokens(batch, [[wide.size]])
        tiles[max_patches] = len(image.tiles)
    assert tiles == {2: 3, 6: 7}  # crops plus the thumbnail
    with pytest.raises(OcrHeadsError, match=r"internvl has no pixel option.s. max_pixels; it takes: min_patches"):
        load_adapter(tmp_path, max_pixels=1000)


@pytest.mark.parametrize("family", ["qwen2_vl", "internvl", "smolvlm"])
def test_image_only_processors_keep_their_options_through_save_and_load(family, tmp_path):
    """transformers 5.25 builds a loaded processor from its `__init__`'s declared names only, which dropped
    image_seq_length (InternVL), image_seq_len (SmolVLM) and chat_template for our video-less subclass."""
    adapter = tiny_adapter(family)
    adapter.processor.chat_template = TEMPLATE.replace("PLACEHOLDER", adapter.image_placeholder)
    adapter.processor.save_pretrained(tmp_path)
    loaded = type(adapter).processor_class.from_pretrained(tmp_path)
    assert loaded.chat_template == adapter.processor.chat_template
    for option in ("image_seq_length", "image_seq_len"):
        if hasattr(adapter.processor, option):
            assert getattr(adapter.processor, option) == 4  # the tiny value, not the class default (256, 169)
            assert getattr(loaded, option) == 4


def test_loading_under_an_untested_transformers_warns_in_one_line(checkpoint, monkeypatch, caplog):
    from packaging.version import Version

    from ocrheads import compat

    monkeypatch.setattr(compat, "TESTED_TRANSFORMERS", (Version("4.0.0"), Version("4.1.0")))
    compat.warn_if_untested.cache_clear()
    with caplog.at_level("WARNING", logger="ocrheads"):
        load_adapter(checkpoint, dtype=torch.float32)
        load_adapter(checkpoint, dtype=torch.float32)
    compat.warn_if_untested.cache_clear()
    assert [r.getMessage().split(",")[0] for r in caplog.records] == [
        f"warning: transformers {compat.transformers.__version__} is installed"
    ]
