"""How a run writes its answers: greedily, stopping and penalising repeats as the run pins.

A checkpoint's generation_config.json can change greedy decoding behind a caller's back: Qwen2-VL-Instruct's asks
for a repetition penalty of 1.05 (METHOD.md 2.1), which `generate(do_sample=False)` applies. So the two settings of
a checkpoint's generation config that change which token greedy decoding picks or where it stops (its
end-of-sequence ids and its repetition penalty) are resolved once, at load, against what the user asked for, and
pinned in the run's config: a run says exactly how it decoded, and a changed generation_config.json is a changed
run. Sampling settings (temperature, top_k, top_p) never apply: ocrheads decodes greedily. A checkpoint's other
settings that change greedy decoding (an n-gram ban, a minimum length, ...) apply as transformers applies them,
and are pinned too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ocrheads.errors import OcrHeadsError

EOS = "eos"  # in a stop-token list: the checkpoint's own end-of-sequence ids
DEFAULT_STOPS = (EOS,)
# Generation-config settings that change what greedy decoding writes, besides stops and the penalty, with the value
# that changes nothing (transformers' logits processors for decoder-only greedy search).
OTHER_GREEDY_SETTINGS = {
    "no_repeat_ngram_size": 0, "min_length": 0, "min_new_tokens": 0, "bad_words_ids": None, "sequence_bias": None,
    "forced_bos_token_id": None, "forced_eos_token_id": None, "suppress_tokens": None, "begin_suppress_tokens": None,
    "exponential_decay_length_penalty": None,
}  # fmt: skip


@dataclass(frozen=True)
class Decoding:
    """Greedy decoding as resolved for a loaded checkpoint: generation stops at any of `stop_tokens`, and logits
    of tokens already in the sequence are divided (or, when negative, multiplied) by `repetition_penalty`;
    `checkpoint_settings` are the checkpoint's other settings that change greedy decoding, as transformers applies
    them."""

    stop_tokens: tuple[int, ...]
    repetition_penalty: float
    checkpoint_settings: dict = field(default_factory=dict)

    def settings(self) -> dict:
        settings = {"stop_tokens": list(self.stop_tokens), "repetition_penalty": self.repetition_penalty}
        return settings | ({"checkpoint_settings": self.checkpoint_settings} if self.checkpoint_settings else {})


def check_decoding(request: dict, vocab_size: int | None = None) -> None:
    """A decoding request (`stop_tokens`: token ids and "eos"; `repetition_penalty`: a positive number) is one the
    model can follow; else one line that names the value and the fix."""
    unknown = sorted(set(request) - {"stop_tokens", "repetition_penalty"})
    if unknown:
        raise OcrHeadsError(f"unknown decoding setting(s) {', '.join(unknown)}; use stop_tokens, repetition_penalty")
    stops = request.get("stop_tokens")
    if stops is not None:
        if not stops:
            raise OcrHeadsError(f"--stop-tokens needs at least one token id, or {EOS} (the checkpoint's own)")
        for token in stops:
            if token == EOS:
                continue
            if isinstance(token, bool) or not isinstance(token, int) or token < 0:
                raise OcrHeadsError(f"--stop-tokens takes token ids and {EOS!r}, got {token!r}")
            if vocab_size is not None and token >= vocab_size:
                raise OcrHeadsError(f"--stop-tokens {token} is outside the model's vocabulary of {vocab_size} ids")
    penalty = request.get("repetition_penalty")
    if penalty is not None and (isinstance(penalty, bool) or not isinstance(penalty, int | float) or penalty <= 0):
        raise OcrHeadsError(f"--repetition-penalty takes a number above 0 (1: none), got {penalty!r}")


def parse_stop_tokens(values: list[str] | None) -> list[int | str] | None:
    """Command-line stop tokens: ids, and "eos" for the checkpoint's own end-of-sequence ids."""
    if values is None:
        return None
    parsed = []
    for value in values:
        if value == EOS:
            parsed.append(EOS)
        elif value.isdigit():
            parsed.append(int(value))
        else:
            raise OcrHeadsError(f"--stop-tokens takes token ids and {EOS!r}, got {value!r}")
    return parsed


def resolve_decoding(request: dict, generation_config) -> Decoding:
    """The request against the checkpoint's generation config: "eos" stands for its end-of-sequence ids; no
    repetition penalty asked for means the checkpoint's own (none when it sets none)."""
    ends = generation_config.eos_token_id
    ends = [] if ends is None else [ends] if isinstance(ends, int) else list(ends)
    stops: list[int] = []
    for token in request.get("stop_tokens") or DEFAULT_STOPS:
        stops += ends if token == EOS else [token]
    penalty = request.get("repetition_penalty")
    if penalty is None:
        penalty = generation_config.repetition_penalty
    others = {name: getattr(generation_config, name, None) for name in OTHER_GREEDY_SETTINGS}
    others = {name: _plain(value) for name, value in others.items() if value not in (None, OTHER_GREEDY_SETTINGS[name])}
    return Decoding(tuple(dict.fromkeys(stops)), float(1.0 if penalty is None else penalty), others)


def _plain(value):
    """A setting as a plain YAML value (a sequence bias has tuple keys: written as text)."""
    try:
        return json.loads(json.dumps(value))
    except TypeError:
        return str(value)
