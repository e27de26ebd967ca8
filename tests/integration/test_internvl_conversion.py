"""Remote-code InternVL checkpoints convert to native InternVL: the converted model computes what an independent
forward of the remote layout computes, its tokenizer gives sentencepiece's ids, its processor tiles as the
original does, and its prompt is the one the original chat() writes."""

import json

import pytest
import sentencepiece
import torch
import transformers as tf
from PIL import Image
from safetensors import safe_open

from ocrheads.devices import to_cpu
from ocrheads.errors import OcrHeadsError
from ocrheads.models import ModelSpec, checkpoint_config, load_adapter
from ocrheads.models.convert import convert
from ocrheads.testing.tiny_internvl_chat import (
    INTERNVL_TOKENS,
    SYSTEM_MESSAGE,
    Shape,
    write_tiny_internvl_chat,
)

from .internvl_reference import Reference, original_tiles, slow_tokenizer_ids
from .tiny_inputs import page

QUESTION = "What is the pass key?"


@pytest.fixture(scope="module", params=["layer_norm", "rms_norm"], ids=["vit-300m", "vit-6b"])
def converted(request, tmp_path_factory):
    """(remote folder, native folder) of a tiny checkpoint in each InternViT variant, sharded in two."""
    root = tmp_path_factory.mktemp(f"internvl-{request.param}")
    remote = write_tiny_internvl_chat(root / "remote", Shape(vision_norm=request.param), shards=2)
    return remote, convert(remote, root / "native")


def _eager(folder):
    return tf.InternVLForConditionalGeneration.from_pretrained(folder, attn_implementation="eager").eval()


def _chat_query(question: str, tiles: int, per_tile: int = 4, system: str = SYSTEM_MESSAGE) -> str:
    """The prompt the original chat() builds for one image (internlm2-chat: no newline after <|im_end|>)."""
    image = "<img>" + "<IMG_CONTEXT>" * (per_tile * tiles) + "</img>"
    return (
        f"<|im_start|>system\n{system}<|im_end|><|im_start|>user\n{image}\n{question}<|im_end|><|im_start|>assistant\n"
    )


def test_the_converted_checkpoint_has_every_native_tensor_in_its_shards(converted):
    remote, native = converted
    model = _eager(native)
    index = json.loads((native / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(model.state_dict())
    assert sorted(set(index["weight_map"].values())) == sorted(p.name for p in remote.glob("*.safetensors"))
    config = json.loads((native / "config.json").read_text())
    assert config["model_type"] == "internvl" and config["text_config"]["model_type"] == "llama"
    assert "attn_implementation" not in json.dumps(config) and "use_flash_attn" not in json.dumps(config)
    assert config["image_seq_length"] == 4 and not config["tie_word_embeddings"]
    assert config["image_token_id"] == _token(native, "<IMG_CONTEXT>")
    provenance = (native / "CONVERTED.md").read_text()
    assert str(remote.resolve()) in provenance and "ocrheads" in provenance


def _token(folder, content):
    return tf.AutoTokenizer.from_pretrained(folder).convert_tokens_to_ids(content)


@pytest.mark.parametrize("layout", ["grouped", "flat"])
def test_converted_model_computes_what_the_remote_layout_computes(converted, layout):
    """Logits at every position, attention rows and vision features to 1e-5, greedy tokens equal; reading wqkv
    in the wrong order (all q, then all k, then all v) is caught."""
    remote, native = converted
    model = _eager(native)
    adapter = load_adapter(native)
    image = page(112, 56, "42")  # two tiles and a thumbnail
    batch = to_cpu(adapter.encode([adapter.prompt(QUESTION, 1)], [[image]]))  # where the eager model and reference are
    ids, pixels = batch["input_ids"][0], batch["pixel_values"]
    assert pixels.shape[0] == 3
    reference = Reference(remote, layout)
    expected_logits, expected_attention = reference.forward(ids, pixels, model.config.image_token_id)
    with torch.no_grad():
        out = model(**batch, output_attentions=True)
        features = model.model.get_image_features(pixel_values=pixels).pooler_output
    logits_error = (out.logits[0] - expected_logits).abs().max().item()
    if layout == "flat":
        assert logits_error > 0.1, "reading wqkv in the wrong block order must move the logits"
        return
    assert logits_error <= 1e-5
    for layer, attention in enumerate(out.attentions):
        assert (attention[0] - expected_attention[layer]).abs().max().item() <= 1e-5, layer
    assert (features - reference.image_features(pixels)).abs().max().item() <= 1e-5
    generated = model.generate(**batch, max_new_tokens=6, do_sample=False, min_new_tokens=6)[0, len(ids) :]
    assert generated.tolist() == reference.greedy(ids, pixels, model.config.image_token_id, 6)


def test_bfloat16_weights_stay_bfloat16(tmp_path):
    remote = write_tiny_internvl_chat(tmp_path / "remote", dtype=torch.bfloat16)
    native = convert(remote, tmp_path / "native")
    with safe_open(native / "model.safetensors", "pt") as handle:
        dtypes = {handle.get_slice(name).get_dtype() for name in handle.keys()}  # noqa: SIM118
    assert dtypes == {"BF16"}
    assert json.loads((native / "config.json").read_text())["dtype"] == "bfloat16"
    with safe_open(remote / "model.safetensors", "pt") as source, safe_open(native / "model.safetensors", "pt") as out:
        assert torch.equal(source.get_tensor("language_model.output.weight"), out.get_tensor("lm_head.weight"))


@pytest.mark.parametrize("dummy_prefix", [True, False])
def test_the_tokenizer_gives_sentencepiece_ids_with_added_tokens_at_their_ids(tmp_path, dummy_prefix):
    remote = write_tiny_internvl_chat(tmp_path / "remote", add_dummy_prefix=dummy_prefix)
    native = convert(remote, tmp_path / "native")
    tokenizer = tf.AutoTokenizer.from_pretrained(native)
    pieces = sentencepiece.SentencePieceProcessor(model_file=str(remote / "tokenizer.model"))
    sp_size = len(pieces)
    assert [tokenizer.convert_tokens_to_ids(t) for t in INTERNVL_TOKENS] == list(range(sp_size, sp_size + 9))
    assert tokenizer.convert_tokens_to_ids("<|im_start|>") == sp_size - 1
    questions = [QUESTION, "  two  spaces\nand a newline", "Ünïcödé 中文 and digits 0123456789",
                 "tabs\tand <ref>x</ref>", "<|im_end|> inside", "trailing space "]  # fmt: skip
    for question in questions:
        query = _chat_query(question, tiles=3)
        assert tokenizer(query).input_ids == slow_tokenizer_ids(remote, query), question
        assert tokenizer(question, add_special_tokens=False).input_ids == slow_tokenizer_ids(remote, question)[1:]
        if "<" not in question:  # plain text: decoding is sentencepiece's too
            plain = pieces.encode(question)
            assert tokenizer.decode(plain) == pieces.decode(plain)


def test_the_prompt_is_the_one_chat_writes_token_for_token(converted):
    remote, native = converted
    adapter = load_adapter(native)
    for size, tiles in (((112, 56), 3), ((56, 56), 1), ((300, 40), 7)):
        batch = adapter.encode([adapter.prompt(QUESTION, 1)], [[page(*size, "7")]])
        assert batch["input_ids"][0].tolist() == slow_tokenizer_ids(remote, _chat_query(QUESTION, tiles)), size


@pytest.mark.parametrize("size", [(112, 56), (56, 112), (200, 120), (30, 300), (56, 56), (500, 90), (57, 55)])
def test_the_processor_tiles_as_the_original_and_the_geometry_follows(converted, size):
    _, native = converted
    adapter = load_adapter(native)
    image = Image.effect_noise(size, 60).convert("RGB")
    batch = adapter.encode([adapter.prompt(QUESTION, 1)], [[image]])
    expected = original_tiles(image, 56, 1, 6)
    assert batch["pixel_values"].shape == expected.shape
    assert (batch["pixel_values"].cpu() - expected).abs().max().item() <= 1e-5
    [[tokens]] = adapter.image_tokens(batch, [[size]])
    assert len(tokens.tiles) == expected.shape[0]
    if len(tokens.tiles) > 1:
        assert tokens.tiles[-1].region == (0, 0, *size) or tuple(tokens.tiles[-1].region) == (0.0, 0.0, *size)


def test_a_model_option_takes_a_remote_folder_and_converts_it_once(converted, tmp_path, capsys):
    remote, _ = converted
    spec = ModelSpec(str(remote), convert_cache=tmp_path / "cache")
    assert spec.grid == (2, 4) and spec.remote_layout
    first = spec.load()
    assert "converting it once" in capsys.readouterr().err
    second = ModelSpec(str(remote), convert_cache=tmp_path / "cache").load()
    assert "using the native conversion" in capsys.readouterr().err
    assert first.name == second.name == str(remote)
    assert len(list((tmp_path / "cache").iterdir())) == 1


def _edit_config(folder, **changes):
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def test_what_native_internvl_cannot_express_is_refused(tmp_path):
    remote = write_tiny_internvl_chat(tmp_path / "remote")
    _edit_config(remote, ps_version="v1")
    with pytest.raises(OcrHeadsError, match="pixel shuffle 'v1'"):
        convert(remote, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    _edit_config(remote, ps_version="v2", model_type="deepseek_vl_v2")
    with pytest.raises(OcrHeadsError, match=r"remote code.*internvl_chat"):
        checkpoint_config(remote)


def test_an_unknown_tensor_stops_the_conversion_and_leaves_nothing(tmp_path):
    from safetensors.torch import load_file, save_file

    remote = write_tiny_internvl_chat(tmp_path / "remote")
    weights = load_file(remote / "model.safetensors")
    save_file(weights | {"vision_model.extra.weight": torch.zeros(2)}, remote / "model.safetensors")
    with pytest.raises(OcrHeadsError, match=r"vision_model\.extra\.weight"):
        convert(remote, tmp_path / "out")
    del weights["mlp1.3.bias"]
    save_file(weights, remote / "model.safetensors")
    with pytest.raises(OcrHeadsError, match="lacks 1 tensor"):
        convert(remote, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_cli_converts_scores_a_remote_folder_once_and_verifies_it(tmp_path, capsys):
    import yaml

    from ocrheads.cli import main
    from ocrheads.data.generate import generate

    remote = write_tiny_internvl_chat(tmp_path / "remote")
    assert main(["convert", str(remote), str(tmp_path / "native")]) == 0
    assert (tmp_path / "native" / "CONVERTED.md").is_file()
    data = tmp_path / "data"
    generate("passkey", data, n=2, lengths=(80,), digits=3, seed=4, progress=False)
    cache = tmp_path / "cache"
    common = ["--model", str(remote), "--convert-cache", str(cache), "--data", str(data), "--answers", "gold"]
    assert main(["score", "ocr", *common, "--out", str(tmp_path / "run"), "--quiet"]) == 0
    first = capsys.readouterr()
    assert "converting it once" in first.err and "scored 2 of 2 samples" in first.out
    config = yaml.safe_load((tmp_path / "run" / "ocr" / "config.yaml").read_text())
    assert config["model"] == str(remote) and config["family"] == "internvl"
    assert main(["score", "ocr", *common, "--out", str(tmp_path / "again"), "--quiet"]) == 0
    assert "using the native conversion" in capsys.readouterr().err
    assert main(["verify", "--model", str(remote), "--convert-cache", str(cache)]) == 0
    assert "all checks passed" in capsys.readouterr().out


def test_conversation_fields_that_are_expressions_are_left_alone(tmp_path):
    """Only the fields a prompt is built from are read as literals; others may be any expression."""
    remote = write_tiny_internvl_chat(tmp_path / "remote")
    path = remote / "conversation.py"
    path.write_text(path.read_text().replace('sep="<|im_end|>",', 'sep="<|im_end|>",\n        stop_str=STOP + "x",'))
    native = convert(remote, tmp_path / "native")
    assert _chat_query(QUESTION, 1) == load_adapter(native).prompt(QUESTION, 1).replace(
        "<IMG_CONTEXT>", "<img>" + "<IMG_CONTEXT>" * 4 + "</img>"
    )
    path.write_text(path.read_text().replace('sep="<|im_end|>",', "sep=SEPARATOR,"))
    with pytest.raises(OcrHeadsError, match="not written as literals"):
        convert(remote, tmp_path / "again")
