"""A fast tokenizer from a sentencepiece model and its tokenizer_config.json, with every added token at its id.

The slow tokenizers of remote-code checkpoints (InternLM2Tokenizer) encode each stretch of text between added
tokens with sentencepiece and put the added tokens' ids between them; transformers' SpmConverter builds a
`tokenizers` pipeline that follows the model's own normaliser settings, so the result encodes the same ids.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import AddedToken, processors
from transformers import PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import SpmConverter, import_protobuf

from ocrheads.errors import OcrHeadsError


def added_tokens(folder: Path) -> dict[int, dict]:
    """id -> {content, special, lstrip, rstrip} from tokenizer_config.json's added_tokens_decoder and, where a
    checkpoint has one, added_tokens.json (content -> id)."""
    config = _tokenizer_config(folder)
    tokens = {int(i): dict(info) for i, info in config.get("added_tokens_decoder", {}).items()}
    extra = folder / "added_tokens.json"
    if extra.is_file():
        for content, index in json.loads(extra.read_text(encoding="utf-8")).items():
            tokens.setdefault(int(index), {"content": content, "special": True})
    return dict(sorted(tokens.items()))


def _tokenizer_config(folder: Path) -> dict:
    path = folder / "tokenizer_config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def token_id(folder: Path, content: str) -> int:
    """The id of an added token, from the tokenizer files alone (no tokenizer is built)."""
    for index, info in added_tokens(folder).items():
        if info["content"] == content:
            return index
    raise OcrHeadsError(f"{folder}: the tokenizer has no added token {content}; is this an InternVL chat checkpoint?")


def fast_tokenizer(folder: Path, named: dict[str, str]) -> PreTrainedTokenizerFast:
    """The fast tokenizer of `folder`'s tokenizer.model; `named` are the special tokens a processor reads by
    attribute (e.g. context_image_token)."""
    model_file = folder / "tokenizer.model"
    if not model_file.is_file():
        raise OcrHeadsError(f"{folder}: no tokenizer.model (the sentencepiece model) to convert the tokenizer from")
    proto = import_protobuf().ModelProto()
    proto.ParseFromString(model_file.read_bytes())
    vocab = {piece.piece: index for index, piece in enumerate(proto.pieces)}
    backend = SpmConverter.build_tokenizer_from_spm_proto(proto, vocab)
    for index, info in added_tokens(folder).items():
        token = AddedToken(
            info["content"],
            special=info.get("special", True),
            normalized=info.get("normalized", False),
            lstrip=info.get("lstrip", False),
            rstrip=info.get("rstrip", False),
            single_word=info.get("single_word", False),
        )
        backend.add_special_tokens([token]) if token.special else backend.add_tokens([token])
        if backend.token_to_id(info["content"]) != index:
            raise OcrHeadsError(
                f"{folder}: added token {info['content']} has id {index} in tokenizer_config.json, but would get "
                f"{backend.token_to_id(info['content'])}; the added tokens must follow the sentencepiece vocabulary "
                "without gaps"
            )
    config = _tokenizer_config(folder)
    specials = {key: _content(config.get(key)) for key in ("bos_token", "eos_token", "unk_token", "pad_token")}
    specials = {key: value for key, value in specials.items() if value}
    bos = specials.get("bos_token", proto.trainer_spec.bos_piece)
    if config.get("add_bos_token", True):
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, backend.token_to_id(bos))]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        clean_up_tokenization_spaces=False,
        model_specific_special_tokens=named,
        **specials,
    )


def _content(token) -> str | None:
    return token.get("content") if isinstance(token, dict) else token
