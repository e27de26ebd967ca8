"""What every model family adapter knows: loading, prompts with N images, and where image tokens sit.

Family knowledge lives only in subclasses (one small file per family); everything else in ocrheads talks
to a model through this interface.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import torch
from PIL import Image
from transformers import BatchEncoding, PretrainedConfig, PreTrainedModel, ProcessorMixin

from ocrheads.attention.requests import kept_logits
from ocrheads.compat import warn_if_untested
from ocrheads.devices import model_device, resolve_device, resolve_dtype, to_cpu, to_device
from ocrheads.errors import OcrHeadsError
from ocrheads.geometry import ImageTokens
from ocrheads.heads import ATTENTION, CROSS, layer_kinds_of
from ocrheads.models.decoding import check_decoding, resolve_decoding
from ocrheads.models.paper_code import PaperCode

# Pages are resized and normalised by PIL on every machine. transformers picks its torchvision image processors
# wherever torchvision is installed (most GPU machines), and they resize text otherwise: on a text page, up to 17
# grey levels of 255 apart at Qwen2-VL's glyph edges, at most two on the other families' (torchvision 0.28,
# transformers 5.25). PIL is what every machine has, what the suite tests, and what the paper's preprocessing did
# (transformers 4.46's Qwen2-VL processor; InternVL's remote code resizes PIL images).
IMAGE_BACKEND = "pil"


class _NoVideoProcessor:
    """Stands where a processor keeps its video processor: every setting reads as unset (None)."""

    def __getattr__(self, name: str) -> None:
        if name.startswith("__"):
            raise AttributeError(name)
        return None


NO_VIDEO = _NoVideoProcessor()


def image_only(processor_class: type) -> type:
    """A processor subclass without the video processor, which cannot load without torchvision.

    It keeps the parent's name and every other init argument (image_seq_length, chat_template, ...), so it
    loads from and saves to the same checkpoint files as the parent. transformers builds a loaded processor from
    the names its `__init__` code declares, which for this subclass are only the two sub-processors; so both of
    its constructors from a saved dict are overridden to pass the parent's options on (`from_args_and_dict` up to
    5.24, `from_dict` from 5.25), or a saved image_seq_length, image_seq_len or chat_template is dropped at load.
    """
    parent = inspect.signature(processor_class.__init__)
    signature = parent.replace(parameters=[p for p in parent.parameters.values() if p.name != "video_processor"])
    accepted = set(signature.parameters) - {"self", "kwargs"}

    class NoVideo(ProcessorMixin):
        """Next after the parent class in ImageOnly's method order: takes the absent video processor a parent passes
        on, by name (Gemma 4) or by position (MiniCPM-V 4.6), out before ProcessorMixin, which refuses a
        sub-processor the signature does not name; then leaves it in place for a parent that reads its settings."""

        def __init__(self, *args, **kwargs):
            if kwargs.get("video_processor") is NO_VIDEO:
                del kwargs["video_processor"]
            super().__init__(*(arg for arg in args if arg is not NO_VIDEO), **kwargs)
            self.video_processor = NO_VIDEO

    names = [name for name in signature.parameters if name not in ("self", "args", "kwargs")]

    class ImageOnly(processor_class, NoVideo):
        def __init__(self, *args, **kwargs):
            """The parent's arguments in its order (transformers up to 5.24 passes the sub-processors by position:
            Gemma 4's feature extractor, image processor and tokenizer), less the video processor."""
            super().__init__(**dict(zip(names[: len(args)], args, strict=True)), **kwargs, video_processor=NO_VIDEO)

        @classmethod
        def from_args_and_dict(cls, args, processor_dict, **kwargs):
            positional = list(signature.parameters)[1 : 1 + len(args)]  # after self: what `args` already gives
            options = {**processor_dict, **kwargs}.items()
            return cls(*args, **{key: value for key, value in options if key in accepted and key not in positional})

        @classmethod
        def from_dict(cls, processor_dict, **kwargs):
            return cls.from_args_and_dict((), processor_dict, **kwargs)

    ImageOnly.__init__.__signature__ = signature
    ImageOnly.__name__ = ImageOnly.__qualname__ = processor_class.__name__
    return ImageOnly


def _grown_axis(one: torch.Size, two: torch.Size) -> int:
    """The first axis twice as long in `two` as in `one` (0 where none is)."""
    return next((axis for axis, (a, b) in enumerate(zip(one, two, strict=True)) if b == 2 * a), 0)


def checkpoint_grid(config: PretrainedConfig) -> tuple[int, int]:
    """(layers, query heads) of the text model, from the config alone: the grid head scores and head lists refer to."""
    text = config.get_text_config()
    return text.num_hidden_layers, text.num_attention_heads


class ModelAdapter(ABC):
    family: ClassVar[str]
    model_types: ClassVar[tuple[str, ...]]  # config.model_type values this adapter recognises
    image_placeholder: ClassVar[str]  # what the processor expands into an image's tokens
    model_class: ClassVar[type[PreTrainedModel]]
    processor_class: ClassVar[type[ProcessorMixin]]
    pixel_options: ClassVar[tuple[str, ...]] = ()  # processor bounds a user may set at load time
    prompt_formats: ClassVar[tuple[str, ...]] = ("chat",)  # "chat": the chat template; "paper": the paper code's own
    paper_questions: ClassVar[dict[str, str]] = {}  # task -> the question as the paper's code asked it ("paper")
    paper_code: ClassVar[PaperCode | None] = None  # what --preset paper-code sets, for a family the paper ran
    written_token_types: ClassVar[dict[str, int]] = {}  # token-type ids of written text where not 0 (PaliGemma's)
    # Where the image's tokens are keys: "sequence" (positions of input_ids, in every attention layer) or "cross"
    # (the keys of image cross-attention layers, indexed from 0; the sequence holds a placeholder seeing no pixels)
    image_keys: ClassVar[str] = "sequence"

    def __init__(
        self,
        model: PreTrainedModel,
        processor: ProcessorMixin,
        pixels: dict | None = None,
        prompt_format: str = "chat",
        decoding: dict | None = None,
    ):
        self.check_prompt_format(prompt_format)
        check_decoding(dict(decoding or {}), model.config.get_text_config().vocab_size)
        self.model = model
        self.processor = processor
        self.pixels = dict(pixels or {})  # the processor bounds the user set at load time
        self.prompt_format = prompt_format
        self.decoding = resolve_decoding(dict(decoding or {}), model.generation_config)
        self.check_agreement()

    @property
    def name(self) -> str:
        """The hub id or folder the model was loaded from (what run configs record as the model)."""
        return str(self.model.name_or_path)

    @property
    def grid(self) -> tuple[int, int]:
        return checkpoint_grid(self.model.config)

    @classmethod
    def layer_kinds_of(cls, config: PretrainedConfig) -> tuple[str, ...]:
        """Each text layer's kind, from the config alone (a family with cross-attention layers says which)."""
        return layer_kinds_of(config)

    @property
    def layer_kinds(self) -> tuple[str, ...]:
        return self.layer_kinds_of(self.model.config)

    def layers_of(self, kinds: tuple[str, ...]) -> list[int]:
        """The text layers of the given kinds, in order."""
        return [layer for layer, kind in enumerate(self.layer_kinds) if kind in kinds]

    @classmethod
    def claims(cls, config: PretrainedConfig) -> bool:
        """Whether this adapter reads checkpoints of `config` (by model type; a family may look further)."""
        return config.model_type in cls.model_types

    @classmethod
    def check_pixel_options(cls, pixels: dict) -> None:
        unknown = sorted(set(pixels) - set(cls.pixel_options))
        if unknown:
            allowed = ", ".join(cls.pixel_options) or "none"
            raise OcrHeadsError(f"{cls.family} has no pixel option(s) {', '.join(unknown)}; it takes: {allowed}")

    def check_agreement(self) -> None:  # noqa: B027 - a hook: most families have nothing to check
        """Refuse, in one line, a checkpoint whose processor and model settings disagree where the geometry needs
        them to agree (a family that has such settings says which)."""

    @classmethod
    def check_prompt_format(cls, prompt_format: str) -> None:
        if prompt_format not in cls.prompt_formats:
            why = " (the paper's code wrote no raw prompts for it)" if prompt_format == "paper" else ""
            raise OcrHeadsError(f"{cls.family} has no prompt format {prompt_format!r}{why}; it takes: "
                                f"{', '.join(cls.prompt_formats)}")  # fmt: skip

    @classmethod
    def load(
        cls,
        name_or_path: str | Path,
        *,
        dtype: str | torch.dtype = "auto",
        device: str = "cpu",
        device_map: str | None = None,
        prompt_format: str = "chat",
        decoding: dict | None = None,
        **pixels,
    ) -> ModelAdapter:
        """Model and processor from a hub id or a local folder; `pixels` are the family's processor bounds.

        dtype: "auto" (the checkpoint's), float32, bfloat16 or float16; device: cpu, cuda, cuda:N or auto;
        device_map "auto" spreads a model too big for one GPU over all of them (accelerate), instead of `device`;
        prompt_format: one of the family's `prompt_formats`; decoding: stop_tokens and repetition_penalty
        (ocrheads.models.decoding), the checkpoint's own where not given.
        """
        cls.check_pixel_options(pixels)
        cls.check_prompt_format(prompt_format)
        warn_if_untested()
        dtype = resolve_dtype(dtype)
        if device_map is not None:
            model = cls.model_class.from_pretrained(name_or_path, dtype=dtype, device_map=device_map).eval()
        else:
            model = cls.model_class.from_pretrained(name_or_path, dtype=dtype).to(resolve_device(device)).eval()
        processor = cls.processor_for(name_or_path).from_pretrained(name_or_path, backend=IMAGE_BACKEND)
        pixels = {k: v for k, v in pixels.items() if v is not None}
        cls.set_pixel_options(model, processor, **pixels)
        return cls(model, processor, pixels, prompt_format, decoding)

    @classmethod
    def processor_for(cls, name_or_path: str | Path) -> type[ProcessorMixin]:
        """The processor class a checkpoint loads with: the family's."""
        return cls.processor_class

    def settings(self) -> dict:
        """Everything about the loaded model that changes what it sees, computes and writes, as plain YAML values:
        its dtype, the pixel bounds the user gave, the image processor's backend (PIL and torchvision resize text
        differently) and resolved settings, the prompt format and template's hash, and how it decodes."""
        image_processor = json.loads(self.processor.image_processor.to_json_string())
        image_processor.pop("image_processor_type", None)  # the class name: the backend says what matters in it
        image_processor.pop("processor_class", None)
        dtype = str(self.model.dtype).removeprefix("torch.")
        template = self.chat_template()
        digest = hashlib.sha256(template.encode("utf-8")).hexdigest()[:16] if template else None
        return {"dtype": dtype, "pixels": json.loads(json.dumps(self.pixels)),
                "image_backend": self.processor.image_processor.backend, "image_processor": image_processor,
                "prompt_format": self.prompt_format, "chat_template_sha256": digest,
                "decoding": self.decoding.settings()}  # fmt: skip

    def chat_template(self) -> str | None:
        """The template prompts are rendered with, if the checkpoint has one."""
        return getattr(self.processor, "chat_template", None) or self.processor.tokenizer.chat_template

    @classmethod
    def set_pixel_options(cls, model: PreTrainedModel, processor: ProcessorMixin, **options) -> None:
        """Apply the user's pixel options (names from `pixel_options`) to a loaded model and processor: by default,
        image processor settings."""
        for name, value in options.items():
            setattr(processor.image_processor, name, value)

    @property
    def device(self) -> torch.device:
        return model_device(self.model)

    def hardware(self) -> dict:
        """Where it runs: recorded in run configs, but not pinned (a resumed run, or another rank, may use
        another GPU)."""
        devices = sorted({str(p.device) for p in self.model.parameters()})
        names = sorted({torch.cuda.get_device_name(d) for d in devices if d.startswith("cuda")})
        return {"devices": devices, "gpus": names}

    def question(self, task: str, question: str) -> str:
        """A sample's question as this run asks it: as the sample words it or, in the paper format, as the paper's
        code worded it for the sample's task."""
        return self.paper_questions.get(task, question) if self.prompt_format == "paper" else question

    def prompt(self, question: str, n_images: int) -> str:
        """The user turn with n images then the question, through the chat template where there is one (the
        "chat" format; a family with a "paper" format overrides this for it).

        The template is rendered by the tokenizer: some processors' own renderers insist on a video processor.
        """
        template = self.chat_template()
        if template:
            content = [{"type": "image"}] * n_images + [{"type": "text", "text": question}]
            messages = [{"role": "user", "content": content}]
            return self.processor.tokenizer.apply_chat_template(
                messages, chat_template=template, add_generation_prompt=True, tokenize=False
            )
        return self.image_placeholder * n_images + question

    def encode(self, prompts: Sequence[str], images: Sequence[Sequence[Image.Image]]) -> BatchEncoding:
        """Tokenise a batch (left-padded for generation), checking each prompt has one placeholder per image."""
        if len(prompts) != len(images):
            raise OcrHeadsError(f"{len(prompts)} prompts but {len(images)} image lists; give one list per prompt")
        for index, (prompt, pages) in enumerate(zip(prompts, images, strict=True)):
            found = prompt.count(self.image_placeholder)
            if found != len(pages):
                raise OcrHeadsError(
                    f"prompt {index} has {found} image placeholder(s) but {len(pages)} image(s); "
                    f"build it with adapter.prompt(question, n_images={len(pages)})"
                )
        self.processor.tokenizer.padding_side = "left"
        batch = self._tokenized(list(prompts), [self.prepared_pages(p) for p in images] if any(images) else None)
        if "pixel_values" in batch and batch["pixel_values"].is_floating_point():
            batch["pixel_values"] = batch["pixel_values"].to(self.model.dtype)
        return to_device(batch, self.device)

    def processed(self, prompt: str, pages: list[Image.Image]) -> BatchEncoding:
        """One prompt's ids and pixels as the processor makes them for a run, on the CPU and before any cast to the
        model's dtype (the geometry probe reads the pixels' exact values)."""
        return self._tokenized([prompt], [self.prepared_pages(pages)])

    def _tokenized(self, prompts: list[str], pages: list[list[Image.Image]] | None) -> BatchEncoding:
        """Ids and pixels of a batch, on the CPU: the processor expands each placeholder into its image's tokens."""
        return self.processor(text=prompts, images=pages, padding=True, return_tensors="pt", **self.image_options())

    def tokenized_text(self, prompt: str) -> str:
        """The text the tokenizer reads for a prompt without images: the prompt, where the processor adds nothing."""
        return prompt

    def image_options(self) -> dict:
        """Image processor settings passed with every processor call (pixel options the processor's own call defaults
        would override if set on the image processor)."""
        return {}

    def image_settings(self, *names: str) -> dict:
        """Image processor settings as the processor applies them on these calls: the adapter's image options, then
        the processor's own call defaults, then the image processor's configuration (InternVLProcessor asks for
        crops and Gemma3Processor for no pan-and-scan whatever a checkpoint's image processor config says)."""
        processor = self.processor
        init = processor.tokenizer.init_kwargs
        merged = processor._merge_kwargs(tokenizer_init_kwargs=init, **self.image_options())["images_kwargs"]
        return {name: merged.get(name, getattr(processor.image_processor, name)) for name in names}

    def generate(self, batch: BatchEncoding, max_new_tokens: int) -> torch.Tensor:
        """Prompt and written tokens: greedy decoding as the run pins it (`self.decoding`), whatever sampling
        settings the checkpoint's generation config holds; every layer computes every prompt row (kept_logits). The
        image token is never written: a written one could not be fed back (the model fills each with a page's row)."""
        tokenizer = self.processor.tokenizer
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        return self.model.generate(
            **batch,
            **kept_logits(self.model),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            eos_token_id=list(self.decoding.stop_tokens) or None,
            repetition_penalty=self.decoding.repetition_penalty,
            pad_token_id=pad,
            suppress_tokens=[self.image_token],
        )

    def repeated(self, batch: BatchEncoding, copies: int) -> BatchEncoding:
        """`batch` `copies` times over, copy-major: each tensor joined along the axis on which the processor lays out
        its prompts (or their pages)."""
        axes = self._item_axes
        joined = {
            key: torch.cat([value] * copies, axes.get(key, 0)) for key, value in batch.items() if torch.is_tensor(value)
        }
        return BatchEncoding({**batch, **joined})

    @functools.cached_property
    def _item_axes(self) -> dict[str, int]:
        """Per processor output, the axis a second prompt with a page extends: measured once, by processing one and
        two (MiniCPM-V 4.6 packs every page's patches into one row of pixels, so its pixel_values grow along the last
        axis; most grow along the first)."""
        pages = self.prepared_pages([Image.new("RGB", (64, 64), "white")])
        one, two = (self._tokenized([self.prompt("", 1)] * count, [pages] * count) for count in (1, 2))
        return {key: _grown_axis(value.shape, two[key].shape) for key, value in one.items() if torch.is_tensor(value)}

    def forward(self, batch: BatchEncoding, logits: int = 1):
        """The model on `batch`, without a cache, computing logits for the last `logits` rows only where its forward
        can skip the others (every layer still computes every row)."""
        return self.model(**batch, use_cache=False, **kept_logits(self.model, logits))

    def until_end(self, ids: list[int]) -> list[int]:
        """Written tokens up to (not including) the first stop, end-of-sequence or padding token."""
        tokenizer = self.processor.tokenizer
        ends = set(self.decoding.stop_tokens) | {tokenizer.eos_token_id, tokenizer.pad_token_id}
        for index, token in enumerate(ids):
            if token in ends:
                return ids[:index]
        return ids

    def prepared_pages(self, pages: Sequence[Image.Image]) -> list[Image.Image]:
        """A prompt's pages as the family's usual pipeline hands them to its processor: as they are, unless the
        adapter's pixel options ask for more."""
        return list(pages)

    def image_tokens(self, batch: BatchEncoding, sizes: Sequence[Sequence[tuple[int, int]]]) -> list[list[ImageTokens]]:
        """For each batch item, each image's token positions and grid; `sizes` are the original (w, h).

        Read from CPU copies of the batch's id and grid tensors, taken once (the device rule, devices.py)."""
        layout = BatchEncoding(
            {
                key: to_cpu(value)
                for key, value in batch.items()
                if not torch.is_tensor(value) or not value.is_floating_point()
            }
        )
        result = []
        for item, item_sizes in enumerate(sizes):
            images = self._image_tokens(layout, item, list(item_sizes))
            if len(images) != len(item_sizes):
                raise OcrHeadsError(
                    f"batch item {item}: found {len(images)} images in input_ids, expected {len(item_sizes)}"
                )
            result.append(images)
        return result

    def image_key_length(self, batch: BatchEncoding) -> int:
        """How many keys image-token positions index in a batch: its sequence's length, for "sequence" image keys."""
        return batch["input_ids"].shape[1]

    @property
    def image_token(self) -> int:
        """The id of the tokens the projector's rows fill."""
        return self.model.config.image_token_id

    def image_key_positions(self, batch: BatchEncoding, item: int) -> set[int]:
        """Every key position of batch item `item` that is an image token (some see no cell, e.g. a CLS token)."""
        ids = to_cpu(batch["input_ids"][item])
        return set(torch.nonzero(ids == self.image_token).flatten().tolist())

    @classmethod
    def image_key_layers_of(cls, config: PretrainedConfig) -> list[int]:
        """The layers (of a checkpoint of `config`) whose keys hold the image's tokens."""
        wanted = CROSS if cls.image_keys == "cross" else ATTENTION
        return [layer for layer, kind in enumerate(cls.layer_kinds_of(config)) if kind == wanted]

    def image_key_layers(self) -> list[int]:
        return self.image_key_layers_of(self.model.config)

    @abstractmethod
    def _image_tokens(self, batch: BatchEncoding, item: int, sizes: list[tuple[int, int]]) -> list[ImageTokens]: ...


def runs_of(ids: torch.Tensor, token_id: int) -> list[tuple[int, int]]:
    """(start, length) of each maximal run of `token_id` in a 1-D id tensor."""
    hits = (ids == token_id).int()
    edges = torch.diff(torch.cat([torch.zeros(1, dtype=torch.int), hits, torch.zeros(1, dtype=torch.int)]))
    starts = torch.nonzero(edges == 1).flatten().tolist()
    ends = torch.nonzero(edges == -1).flatten().tolist()
    return [(start, end - start) for start, end in zip(starts, ends, strict=True)]
