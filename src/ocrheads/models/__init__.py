"""Model family adapters, recognised from a checkpoint's config."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

from huggingface_hub import hf_hub_download
from huggingface_hub.errors import HFValidationError
from safetensors import SafetensorError, safe_open
from transformers import AutoConfig, PretrainedConfig

from ocrheads.devices import resolve_device, resolve_dtype
from ocrheads.errors import OcrHeadsError
from ocrheads.models import convert
from ocrheads.models.base import ModelAdapter, checkpoint_grid
from ocrheads.models.decoding import check_decoding
from ocrheads.models.gemma3 import Gemma3Adapter
from ocrheads.models.gemma4 import Gemma4Adapter
from ocrheads.models.generic import GenericAdapter
from ocrheads.models.idefics import Idefics3Adapter, SmolVLMAdapter
from ocrheads.models.internvl import InternVLAdapter
from ocrheads.models.llava import LlavaAdapter
from ocrheads.models.llava_next import LlavaNextAdapter, LlavaOnevisionAdapter
from ocrheads.models.mllama import MllamaAdapter
from ocrheads.models.paligemma import PaliGemmaAdapter
from ocrheads.models.pixtral import Mistral3Adapter, PixtralAdapter
from ocrheads.models.qwen_vl import (
    Glm4vAdapter,
    Glm4vMoeAdapter,
    Glm46vAdapter,
    Qwen2_5_VLAdapter,
    Qwen3_5Adapter,
    Qwen3_5MoeAdapter,
    Qwen3VLAdapter,
    Qwen3VLMoeAdapter,
    QwenVLAdapter,
)

ADAPTERS: tuple[type[ModelAdapter], ...] = (
    QwenVLAdapter,
    Qwen2_5_VLAdapter,
    Qwen3VLAdapter,
    Qwen3VLMoeAdapter,
    Qwen3_5Adapter,
    Qwen3_5MoeAdapter,
    Glm4vAdapter,
    Glm4vMoeAdapter,
    Glm46vAdapter,
    InternVLAdapter,
    LlavaAdapter,
    Idefics3Adapter,
    SmolVLMAdapter,
    Gemma3Adapter,
    PaliGemmaAdapter,
    PixtralAdapter,
    Mistral3Adapter,
    LlavaNextAdapter,
    LlavaOnevisionAdapter,
    MllamaAdapter,
    Gemma4Adapter,
    GenericAdapter,  # last: any other image-text-to-text model, its geometry probed
)


def adapter_class(config: PretrainedConfig) -> type[ModelAdapter]:
    for adapter in ADAPTERS:
        if adapter.claims(config):
            return adapter
    supported = ", ".join(t for adapter in ADAPTERS for t in adapter.model_types)
    raise OcrHeadsError(f"model type {config.model_type!r} is not supported; supported: {supported}")


def checkpoint_config(name_or_path: str | Path) -> PretrainedConfig:
    """A checkpoint's config alone (small files): what is checked before any weights are loaded. A remote-code
    layout that ocrheads converts gives the config its native conversion will have."""
    name = str(name_or_path)
    return _config(name, _raw_config(name))


def _config(name: str, raw: dict | None) -> PretrainedConfig:
    """The config of checkpoint `name`, given its config.json as written (`raw`, None where unread)."""
    if raw is not None and convert.is_remote_layout(raw):
        return convert.native_config(convert.source_folder(name, small_files_only=True))
    if raw is not None:
        convert.refuse_unknown_remote(raw, name)
    try:
        return AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as err:
        if name.startswith((".", "/", "~")) or Path(name).exists():
            reason = f"there is no folder {name}" if not Path(name).exists() else str(err).splitlines()[0]
            raise OcrHeadsError(f"--model {name}: {reason}; pass a checkpoint folder") from None
        raise OcrHeadsError(
            f"--model {name}: not a local folder, and not found on the hub from here; pass a local checkpoint "
            "folder, or the hub id with network access (with HF_HUB_OFFLINE=1, a checkpoint already in the cache)"
        ) from None


def _raw_config(name: str) -> dict | None:
    """config.json as written, or None where it cannot be had (AutoConfig then says why); a local folder without
    one is refused here."""
    if Path(name).is_dir() and not (Path(name) / "config.json").is_file():
        raise OcrHeadsError(f"--model {name}: the folder has no config.json; pass a checkpoint folder")
    try:
        path = Path(name) / "config.json" if Path(name).is_dir() else Path(hf_hub_download(name, "config.json"))
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, HFValidationError):
        return None


DOWNLOAD_AGAIN = "it looks like an interrupted download: download the checkpoint again"


def load_adapter(name_or_path: str | Path, *, convert_cache: str | Path | None = None, **options) -> ModelAdapter:
    """Load a checkpoint (hub id or local folder; a remote-code InternVL one is converted once, into the cache)
    through its family's adapter; options as ModelAdapter.load."""
    named = ("device", "dtype", "device_map", "prompt_format", "decoding")
    load = {key: options.pop(key) for key in named if key in options}
    spec = ModelSpec(str(name_or_path), **load, pixels=options, convert_cache=convert_cache)
    return spec.load()


@dataclass(frozen=True)
class ModelSpec:
    """A checkpoint and how to load it, not loaded yet: runners given one check their data, heads and run
    directory against its config first, and load the weights only then."""

    name: str
    device: str = "cpu"
    dtype: str = "auto"
    device_map: str | None = None
    pixels: dict = field(default_factory=dict)
    convert_cache: str | Path | None = None  # where remote-code checkpoints are converted (default: by the hub cache)
    prompt_format: str | None = None  # "chat" (None), or a family's "paper" format (ModelAdapter.prompt_formats)
    decoding: dict = field(default_factory=dict)  # stop_tokens, repetition_penalty (models.decoding); else the model's

    @cached_property
    def config(self) -> PretrainedConfig:
        """The checkpoint's config; the load options are checked with it, so a bad one fails before any loading."""
        resolve_device(self.device)
        resolve_dtype(self.dtype)
        config = _config(self.name, self.raw_config)
        adapter = adapter_class(config)
        adapter.check_pixel_options(self.pixels)
        adapter.check_prompt_format(self.format)
        check_decoding(self.decoding, config.get_text_config().vocab_size)
        return config

    @property
    def format(self) -> str:
        return self.prompt_format or "chat"

    def with_paper_code(self) -> ModelSpec:
        """This checkpoint as the paper's code ran its family (prompt format, pixels, stop tokens), under the
        settings the user gave; unchanged for a family the paper did not run."""
        code = adapter_class(self.config).paper_code
        if code is None:
            return self
        return replace(
            self,
            prompt_format=self.prompt_format or code.prompt_format,
            pixels=code.pixels | self.pixels,
            decoding={"stop_tokens": list(code.stop_tokens)} | self.decoding,
        )

    @property
    def grid(self) -> tuple[int, int]:
        return checkpoint_grid(self.config)

    @property
    def layer_kinds(self) -> tuple[str, ...]:
        return adapter_class(self.config).layer_kinds_of(self.config)

    def image_key_layers(self) -> list[int]:
        return adapter_class(self.config).image_key_layers_of(self.config)

    @cached_property
    def raw_config(self) -> dict | None:
        """config.json as written, read once (for a hub id, each read may ask the hub)."""
        return _raw_config(self.name)

    @property
    def remote_layout(self) -> bool:
        """Whether the checkpoint is in a remote-code layout that is converted before loading."""
        return self.raw_config is not None and convert.is_remote_layout(self.raw_config)

    def pinned(self) -> dict:
        """The part of a run's config known before loading (compared with an existing run before loading)."""
        settings = {"pixels": dict(self.pixels), "prompt_format": self.format}
        settings |= {"dtype": self.dtype} if self.dtype != "auto" else {}
        return {"model": self.name, "model_settings": settings}

    def check_weights(self) -> None:
        """A local checkpoint's weight files can be read: an interrupted download leaves a truncated file or a
        missing shard, which would otherwise end a run in a safetensors traceback after its directory was claimed."""
        folder = Path(self.name)
        if not folder.is_dir():
            return
        index = folder / "model.safetensors.index.json"
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
            if missing := [shard for shard in shards if not (folder / shard).is_file()]:
                raise OcrHeadsError(f"--model {self.name}: weight file(s) {', '.join(missing)} are missing; "
                                    f"{DOWNLOAD_AGAIN}")  # fmt: skip
        for path in sorted(folder.glob("*.safetensors")):
            try:
                with safe_open(path, "pt"):
                    pass
            except (SafetensorError, OSError) as err:
                reason = f"{path.name} cannot be read ({str(err).splitlines()[0]})"
                raise OcrHeadsError(f"--model {self.name}: {reason}; {DOWNLOAD_AGAIN}") from None

    def load(self) -> ModelAdapter:
        self.check_weights()
        options = dict(device=self.device, dtype=self.dtype, device_map=self.device_map,
                       prompt_format=self.format, decoding=self.decoding)  # fmt: skip
        folder = self.name
        if self.remote_layout:
            folder = convert.converted(convert.source_folder(self.name), self.name, self.convert_cache)
        try:
            adapter = adapter_class(self.config).load(folder, **options, **self.pixels)
        except SafetensorError as err:  # a hub checkpoint's cached file
            raise OcrHeadsError(f"--model {self.name}: its weights cannot be read ({err}); {DOWNLOAD_AGAIN}") from None
        adapter.model.name_or_path = self.name  # runs record the checkpoint the user named, not the cache folder
        return adapter


def resolve(model: ModelAdapter | ModelSpec) -> ModelAdapter:
    return model.load() if isinstance(model, ModelSpec) else model


__all__ = [
    "ADAPTERS",
    "ModelAdapter",
    "ModelSpec",
    "adapter_class",
    "checkpoint_config",
    "checkpoint_grid",
    "load_adapter",
    "resolve",
]
