"""Convert remote-code checkpoints (never run) into native transformers checkpoints our adapters load.

`convert` writes a native folder from a remote-layout one, streaming the weights tensor by tensor;
`converted` does that once per checkpoint into a cache folder and reuses it after.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import partial
from pathlib import Path

import torch
import transformers as tf
from rich.console import Console

from ocrheads import __version__
from ocrheads.atomic import atomic_folder, atomic_write_text
from ocrheads.errors import OcrHeadsError
from ocrheads.models.base import image_only
from ocrheads.models.convert import internvl_chat
from ocrheads.models.convert.spm import fast_tokenizer, token_id
from ocrheads.models.convert.streamed import DTYPES, Entry, Planned, read_header, read_tensor, write_streamed
from ocrheads.provenance import revision

REMOTE_LAYOUTS = (internvl_chat.MODEL_TYPE,)  # model_type values `convert` knows
NAMED_TOKENS = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>"}


def is_remote_layout(raw: dict) -> bool:
    return raw.get("model_type") in REMOTE_LAYOUTS


def refuse_unknown_remote(raw: dict, name: str) -> None:
    """A checkpoint that needs remote code we have no conversion for gets one line naming what we do convert."""
    if "auto_map" in raw and not is_remote_layout(raw):
        raise OcrHeadsError(
            f"--model {name}: model type {raw.get('model_type')!r} needs its own remote code, which ocrheads never "
            f"runs; remote-code layouts that `ocrheads convert` turns into native ones: {', '.join(REMOTE_LAYOUTS)}"
        )


def source_folder(name: str, *, small_files_only: bool = False) -> Path:
    """A checkpoint as a local folder: itself, or its hub snapshot (only the configs and tokenizer files, until the
    weights are needed)."""
    if Path(name).is_dir():
        return Path(name)
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.py", "*.model"] if small_files_only else None
    try:
        return Path(snapshot_download(name, allow_patterns=patterns))
    except (OSError, ValueError) as err:
        raise OcrHeadsError(
            f"{name}: no such folder, and not found on the hub from here ({type(err).__name__}); pass a checkpoint "
            "folder, or the hub id with network access"
        ) from None


def read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise OcrHeadsError(f"{folder}: no config.json; pass a checkpoint folder")
    return json.loads(path.read_text(encoding="utf-8"))


def native_config(folder: Path) -> tf.InternVLConfig:
    """The config the conversion of `folder` will have, from its small files alone (before any weights)."""
    raw = read_config(folder)
    image_token = token_id(folder, NAMED_TOKENS["context_image_token"])
    return internvl_chat.native_config(raw, image_token, str(folder))


def convert(source: str | Path, out: str | Path, *, system_message: str | None = None, overwrite: bool = False) -> Path:
    """Write the native checkpoint of the remote-layout folder `source` into `out` (complete, or not at all)."""
    source, out = Path(source), Path(out)
    raw = read_config(source)
    if not is_remote_layout(raw):
        raise OcrHeadsError(f"{source}: model type {raw.get('model_type')!r} is not a layout ocrheads converts")
    config = native_config(source)
    processor = _processor(source, raw, system_message)
    with atomic_folder(out, overwrite=overwrite) as folder:
        config.save_pretrained(folder)
        processor.save_pretrained(folder)
        _write_weights(source, folder, raw, config)
        atomic_write_text(folder / "CONVERTED.md", _provenance(source, raw))
    return out


def _processor(source: Path, raw: dict, system_message: str | None):
    """Tokenizer, image processor and chat template of the converted checkpoint."""
    # The remote layout has no video token, but the native processor needs one: `<video>` is added after the
    # vocabulary (an id with no embedding row). Prompts never hold it; text that does is refused by the processor.
    tokenizer = fast_tokenizer(source, NAMED_TOKENS | {"video_token": "<video>"})
    template = raw.get("template", "internlm2-chat")
    conv = internvl_chat.conversation(source, template)
    system = system_message if system_message is not None else raw.get("system_message", conv.get("system_message"))
    if system is None:
        raise OcrHeadsError(f"{source}: template {template!r} names no system message; pass --system-message")
    return image_only(tf.InternVLProcessor)(
        image_processor=internvl_chat.image_processor(raw),
        tokenizer=tokenizer,
        image_seq_length=internvl_chat.image_seq_length(raw),
        chat_template=internvl_chat.chat_template(conv, system, str(source)),
    )


def _shards(source: Path) -> list[str]:
    index = source / "model.safetensors.index.json"
    if index.is_file():
        return sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
    if (source / "model.safetensors").is_file():
        return ["model.safetensors"]
    raise OcrHeadsError(f"{source}: no model.safetensors or model.safetensors.index.json (only safetensors convert)")


def _write_weights(source: Path, folder: Path, raw: dict, config: tf.PretrainedConfig) -> None:
    """Each source shard becomes one native shard of the same name, written tensor by tensor; the names and shapes
    written must be exactly those of a native model of `config` (built on the meta device: no memory)."""
    with torch.device("meta"):
        native = tf.InternVLForConditionalGeneration(config)
    expected = {name: tuple(tensor.shape) for name, tensor in native.state_dict().items()}
    shards = _shards(source)
    weight_map, total = {}, 0
    for shard in shards:
        entries, _ = read_header(source / shard)
        with (source / shard).open("rb") as handle:
            planned = []
            for entry in entries:
                for native in internvl_chat.renamed(entry.name, entry.shape, raw):
                    make = partial(_made, handle, entry, native.take)
                    planned.append(Planned(native.name, DTYPES[entry.dtype], native.shape, make))
                    weight_map[native.name] = shard
            _check_names(planned, expected, shard)
            total += write_streamed(folder / shard, planned, {"format": "pt"})
    missing = sorted(set(expected) - set(weight_map))
    if missing:
        raise OcrHeadsError(f"{source}: the checkpoint lacks {len(missing)} tensor(s) of the model, e.g. {missing[0]}")
    if len(shards) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        atomic_write_text(folder / "model.safetensors.index.json", json.dumps(index, indent=2) + "\n")


def _made(handle, entry: Entry, take) -> torch.Tensor:
    return take(read_tensor(handle, entry))


def _check_names(planned: list[Planned], expected: dict[str, tuple], shard: str) -> None:
    for tensor in planned:
        if tensor.name not in expected:
            raise OcrHeadsError(f"{shard}: {tensor.name} is not a tensor of the native model; not converted")
        if tensor.shape != expected[tensor.name]:
            raise OcrHeadsError(
                f"{shard}: {tensor.name} would be {tensor.shape}, the native model wants {expected[tensor.name]}; "
                "does config.json describe these weights?"
            )


def _provenance(source: Path, raw: dict) -> str:
    return (
        "# Converted by ocrheads\n\n"
        f"- source: {source.resolve()}\n"
        f"- source revision: {revision(source) or 'unknown'}\n"
        f"- source layout: {raw.get('model_type')} ({', '.join(raw.get('architectures', []))})\n"
        f"- ocrheads: {__version__}\n"
        f"- transformers: {tf.__version__}\n\n"
        "Weights renamed to transformers' native InternVL and InternLM2's fused wqkv split into q/k/v (dtype kept); "
        "the tokenizer converted from tokenizer.model with every added token at its id; the processor set to the "
        "checkpoint's tiling; a chat template that writes the prompt the original chat() writes.\n"
    )


def cache_key(source: Path, system_message: str | None) -> str:
    """What the conversion depends on: the small files' bytes, the weight files' names and sizes, the system
    message and the ocrheads version."""
    digest = hashlib.sha256(__version__.encode())
    for name in ("config.json", "tokenizer.model", "tokenizer_config.json", "added_tokens.json", "conversation.py"):
        path = source / name
        digest.update(name.encode() + (path.read_bytes() if path.is_file() else b"-"))
    for path in sorted(source.glob("*.safetensors")):
        digest.update(f"{path.name}:{path.stat().st_size}".encode())
    digest.update(repr(system_message).encode())
    return digest.hexdigest()[:16]


def default_cache() -> Path:
    """Next to the hub cache: …/huggingface/ocrheads-converted."""
    from huggingface_hub.constants import HF_HUB_CACHE

    return Path(HF_HUB_CACHE).parent / "ocrheads-converted"


def converted(
    source: Path, label: str, cache: str | Path | None = None, system_message: str | None = None, console=None
) -> Path:
    """The native conversion of the remote-layout folder `source`, made once into the cache and reused after."""
    console = console or Console(stderr=True)
    root = Path(cache) if cache is not None else default_cache()
    slug = re.sub(r"[^A-Za-z0-9._-]+", "--", label.strip("/")).strip("-.") or "checkpoint"
    out = root / f"{slug}-{cache_key(source, system_message)}"
    if (out / "config.json").is_file():
        console.print(f"{label}: using the native conversion in {out}", soft_wrap=True)
        return out
    console.print(
        f"{label}: a remote-code InternVL checkpoint; converting it once to native InternVL in {out}", soft_wrap=True
    )
    return convert(source, out, system_message=system_message, overwrite=True)
