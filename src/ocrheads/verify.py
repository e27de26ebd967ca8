"""`ocrheads verify`: the parity check to run once per checkpoint, transformers version or GPU before trusting a score.

On one short sample, with the checkpoint's own processor and chat template, one teacher-forced forward pass is
compared three ways: its logits with SDPA's (the registered function must not change the model), its captured
rows with a float64 recomputation from the very queries, keys and mask the function received, and with eager
`output_attentions` where that fits in memory. The rows captured while the model generates (prefill, then cached
decoding steps, as scoring generated answers does) are compared with the same rows of one teacher-forced pass over
what it wrote. It also checks the adapter's image geometry against the image tokens the processor wrote, the
prompt's image placeholders and the answer's tokenisation, and shows what the model reads.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from PIL import Image
from rich.table import Table

from ocrheads.attention import AttentionInputs, Capture, attention_session, install, use_text_attention
from ocrheads.data.generate import generate
from ocrheads.data.manifest import Sample, open_pages, read_manifest
from ocrheads.devices import to_cpu
from ocrheads.errors import OcrHeadsError
from ocrheads.float32 import exact_float32, precision_setting
from ocrheads.heads import ATTENTION, CROSS
from ocrheads.models import ModelSpec
from ocrheads.models.base import ModelAdapter
from ocrheads.scoring.answers import sample_prompt
from ocrheads.scoring.passes import append_tokens

ROW_TOLERANCE = 1e-5  # captured probabilities against float64
# Against float32 eager attention, which is its own forward pass: on the bundled demo model its rows are 4e-5 from a
# float64 softmax of its own queries and keys, but 1.7e-4 from one of the capture's, since SDPA's and eager's float32
# rounding in earlier layers moves the queries and keys and logits in the hundreds amplify that. A structural error
# (a wrong mask, a wrong head) is 1e-2 or more.
EAGER_TOLERANCE = 1e-3
LOGIT_TOLERANCE = 1e-4  # the registered function runs SDPA itself: any difference means it changed the model
EAGER_BUDGET = 2 * 2**30  # bytes of eager attention matrices verify may ask for


@dataclass(frozen=True)
class Check:
    name: str
    status: Literal["pass", "fail", "info"]
    value: str
    detail: str = ""


def _check(name: str, passed: bool, value: str, detail: str = "") -> Check:
    return Check(name, "pass" if passed else "fail", value, detail)


def _against_another_pass(name: str, error: float, dtype: torch.dtype, detail: str) -> Check:
    """Captured rows against those of another forward pass of the model (eager attention, a teacher-forced pass):
    checked within EAGER_TOLERANCE in float32; in other dtypes each pass's rounding moves them, so only shown."""
    if dtype == torch.float32:
        return _check(name, error <= EAGER_TOLERANCE, f"{error:.1e}", f"at most {EAGER_TOLERANCE:g}; {detail}")
    return Check(name, "info", f"{error:.1e}", f"{dtype}: {detail}")


def float64_rows(inputs: AttentionInputs) -> torch.Tensor:
    """The captured rows' probabilities recomputed in float64 from what the attention function received."""
    query, key = inputs.query_rows.double(), inputs.key.double()
    key = key.repeat_interleave(query.shape[1] // key.shape[1], dim=1)
    logits = query @ key.transpose(-1, -2) * inputs.scaling
    if inputs.softcap is not None:
        logits = inputs.softcap * torch.tanh(logits / inputs.softcap)
    k_len = key.shape[2]
    if inputs.mask_rows is None:  # causal, queries aligned to the last keys
        last_key = inputs.local_rows + (k_len - inputs.q_len)
        allowed = torch.arange(k_len, device=logits.device) <= last_key[:, None, :, None]
        logits = logits.masked_fill(~allowed, float("-inf"))
    elif inputs.mask_rows.dtype == torch.bool:
        logits = logits.masked_fill(~inputs.mask_rows, float("-inf"))
    else:
        logits = logits + inputs.mask_rows.double()
    return logits.softmax(-1)


def _geometry(adapter: ModelAdapter, batch, pages: list[Image.Image]) -> list[Check]:
    images = adapter.image_tokens(batch, [[page.size for page in pages]])[0]
    image_positions = adapter.image_key_positions(batch, 0)
    claimed = [position for image in images for position in image.positions()]
    wrong = sorted(set(claimed) - image_positions)
    tiles = "; ".join(
        f"image {image.image} ({image.size[0]}x{image.size[1]} px): "
        + " + ".join(f"{tile.rows}x{tile.cols}" for tile in image.tiles)
        for image in images
    )
    detail = f"{tiles}; {len(image_positions) - len(set(claimed))} image tokens see no cell (e.g. a CLS token)"
    passed = not wrong and len(claimed) == len(set(claimed))
    value = f"{len(set(claimed))} of {len(image_positions)} image tokens on grids"
    if wrong:
        detail = f"positions {wrong[:5]} are not image tokens; " + detail
    return [_check("image tokens and grids", passed, value, detail)]


def verify(
    adapter: ModelAdapter, sample: Sample, pages: list[Image.Image], *, eager_budget: int = EAGER_BUDGET
) -> list[Check]:
    """Every check on one sample, float32 computed exactly as runs compute it; the model is left with the registered
    function installed."""
    outside = precision_setting()
    with exact_float32():
        inside = precision_setting()
        if outside == "ieee":
            detail = "in runs, as everywhere in this process"
        else:
            detail = f"in runs; this process has {outside} outside them (turned off while a run computes)"
        precision = _check("float32 matmuls and convolutions", inside == "ieee", inside, detail)
        return [precision, *_checks(adapter, sample, pages, eager_budget)]


def _checks(adapter: ModelAdapter, sample: Sample, pages: list[Image.Image], eager_budget: int) -> list[Check]:
    model, tokenizer = adapter.model, adapter.processor.tokenizer
    template = adapter.chat_template()
    prompt = sample_prompt(adapter, sample)
    placeholders = prompt.count(adapter.image_placeholder)
    if adapter.prompt_format != "chat":
        how = f"prompt format {adapter.prompt_format!r}: the paper code's raw prompts, not the template"
    else:
        how = "prompts are rendered with it" if template else "prompts are the images, then the question"
    decoding = adapter.decoding
    written = f"stops at {list(decoding.stop_tokens)}, repetition penalty {decoding.repetition_penalty:g}"
    if decoding.checkpoint_settings:
        written += f", the checkpoint's {decoding.checkpoint_settings}"
    checks = [
        Check("chat template", "info", "found" if template else "none", how),
        Check("decoding", "info", "greedy", written),
        _check("image placeholders", placeholders == len(pages), f"{placeholders} for {len(pages)} image(s)"),
    ]
    batch = adapter.encode([prompt], [pages])
    checks += _geometry(adapter, batch, pages)
    answer = tokenizer(sample.answer, add_special_tokens=False).input_ids
    read_back = tokenizer.decode(answer, skip_special_tokens=True)
    checks.append(_check("answer tokens decode to the answer", read_back == sample.answer,
                         f"{len(answer)} tokens", f"{sample.answer!r} -> {read_back!r}"))  # fmt: skip
    tokens = torch.tensor([answer])
    sequence = append_tokens(batch, tokens, torch.ones_like(tokens), adapter.written_token_types)
    length = sequence["input_ids"].shape[1]
    layers, heads = len(adapter.layers_of((ATTENTION, CROSS))), adapter.grid[1]  # the layers with attention weights
    own = "eager" if getattr(model.config.get_text_config(), "attn_logit_softcapping", None) else "sdpa"
    with torch.no_grad():  # the model's own attention: SDPA, or eager where it softcaps (SDPA cannot)
        own_logits = use_text_attention(model, own)(**sequence, use_cache=False).logits.float()
        eager = None
        element = torch.finfo(model.dtype).bits // 8
        if layers * heads * length * length * element <= eager_budget:  # a row per layer with attention weights
            attentions = use_text_attention(model, "eager")(**sequence, use_cache=False, output_attentions=True)
            eager = dict(zip(adapter.layers_of((ATTENTION, CROSS)), attentions.attentions, strict=True))
        install(model)
        capture = Capture(torch.arange(length)[None], keep_probs=True, keep_inputs=True)
        with attention_session(model, capture=capture) as session:
            logits = model(**sequence, use_cache=False).logits.float()
    difference = float((logits - own_logits).abs().max())
    checks.append(_check("logits: ocrheads vs the model's attention", difference <= LOGIT_TOLERANCE,
                         f"{difference:.1e}", f"{own.upper() if own == 'sdpa' else own}: max |difference| over "
                         f"{length} positions (at most {LOGIT_TOLERANCE:g})"))  # fmt: skip
    checks += _row_checks(session, eager, model.dtype, (layers, heads, length))
    written, check = _decoding_check(adapter, batch, len(answer) + 8)
    checks.append(check)
    text = tokenizer.decode(adapter.until_end(to_cpu(written[0, batch["input_ids"].shape[1] :]).tolist()))
    found = "reads it" if sample.answer in text else "does not read it"
    checks.append(Check("the model reads the answer", "info", repr(text.strip()), f"answer {sample.answer!r}: {found}"))
    return checks


def _decoding_check(adapter: ModelAdapter, batch, new: int) -> tuple[torch.Tensor, Check]:
    """Generate greedily capturing the rows that write each token (the last prompt row, then one row per decoding
    step); then teacher-force what was written, capturing the same rows in one pass. Returns what was written and
    the largest difference of their probabilities over every layer, head and row."""
    model, prompt = adapter.model, batch["input_ids"].shape[1]
    rows = torch.arange(prompt - 1, prompt - 1 + new)[None]
    with torch.no_grad():
        with attention_session(model, capture=Capture(rows, keep_probs=True, unseen_ok=True)) as decoding:
            written = adapter.generate(batch, new)
        fed = to_cpu(written[:, prompt:-1])  # every written token but the last was fed back
        seen = 1 + fed.shape[1]
        with attention_session(model, capture=Capture(rows[:, :seen], keep_probs=True)) as forced:
            fed_batch = append_tokens(batch, fed, torch.ones_like(fed), adapter.written_token_types)
            adapter.forward(fed_batch)
    error, flips = 0.0, 0
    for layer in forced.layers:
        ours, reference = to_cpu(decoding.captured(layer).probs[:, :, :seen]), to_cpu(forced.captured(layer).probs)
        keys = min(ours.shape[-1], reference.shape[-1])  # the keys past a row's own are 0 in both
        error = max(error, float((ours[..., :keys] - reference[..., :keys]).abs().max()))
        flips += int((ours.argmax(-1) != reference.argmax(-1)).sum())
    layers, heads = len(forced.layers), adapter.grid[1]
    detail = f"{layers} layers x {heads} heads x {seen} rows; argmax moved in {flips} (head, row) pairs"
    return written, _against_another_pass("decoding rows vs a teacher-forced pass", error, model.dtype, detail)


def _row_checks(session, eager, dtype: torch.dtype, shape: tuple[int, int, int]) -> list[Check]:
    """Captured rows against float64 (always) and eager attention (when computed), layer by layer."""
    ours_error = eager_error = ours_vs_eager = 0.0
    flips = eager_flips = 0
    for layer in session.layers:
        [inputs] = session.inputs(layer)
        reference = to_cpu(float64_rows(inputs))  # compared on the CPU: eager rows come back on the input's GPU
        probs = to_cpu(session.captured(layer).probs[:, :, inputs.columns])
        ours_error = max(ours_error, float((probs.double() - reference).abs().max()))
        flips += int((probs.argmax(-1) != reference.argmax(-1)).sum())
        if eager is not None:
            rows = to_cpu(eager[layer]).double()
            eager_error = max(eager_error, float((rows - reference).abs().max()))
            ours_vs_eager = max(ours_vs_eager, float((probs.double() - rows).abs().max()))
            eager_flips += int((rows.argmax(-1) != reference.argmax(-1)).sum())
    layers, heads, length = shape
    pairs = layers * heads * length
    checks = [
        _check("captured rows vs float64", ours_error <= ROW_TOLERANCE, f"{ours_error:.1e}",
               f"{layers} layers x {heads} heads x {length} rows (at most {ROW_TOLERANCE:g}); "
               f"argmax moved in {flips} of {pairs} (head, row) pairs")
    ]  # fmt: skip
    if eager is None:
        return [*checks, Check("captured rows vs eager attention", "info", "skipped", "it would not fit the budget")]
    detail = (
        f"eager output_attentions (the paper's method) is {eager_error:.1e} from float64 and moves the argmax in "
        f"{eager_flips} of {pairs} pairs; the capture is {ours_error:.1e} from float64"
    )
    return [*checks, _against_another_pass("captured rows vs eager attention", ours_vs_eager, dtype, detail)]


def verify_checkpoint(
    spec: ModelSpec, data: Path | None, sample_id: str | None, *, eager_budget: int = EAGER_BUDGET
) -> tuple[str, list[Check]]:
    """Load the checkpoint and verify it on `sample_id` of `data` (an image sample), or, given neither, on a short
    passkey page generated here; returns the sample's id and the checks."""
    if (data is None) != (sample_id is None):
        raise OcrHeadsError("give --data and --sample together, or neither (then a short passkey page is generated)")
    with tempfile.TemporaryDirectory() as scratch:
        if data is None:
            data, sample_id = Path(scratch) / "sample", "passkey-00000"
            generate("passkey", data, n=1, lengths=(200,), digits=5, seed=0, progress=False)
        found = {sample.id: sample for sample in read_manifest(data)}
        if sample_id not in found:
            raise OcrHeadsError(f"no sample {sample_id} in {data}; ids look like {next(iter(found))}")
        sample = found[sample_id]
        if sample.modality != "image":
            raise OcrHeadsError(f"sample {sample.id} is a text sample; verify needs an image sample")
        return sample.id, verify(spec.load(), sample, open_pages(data, sample), eager_budget=eager_budget)


def checks_table(checks: list[Check], title: str) -> Table:
    """The checks as a table for the terminal: pass in green, fail in red, information in cyan."""
    table = Table(title=title)
    for column in ("check", "result", "value", "detail"):
        table.add_column(column, overflow="fold")
    colours = {"pass": "green", "fail": "bold red", "info": "cyan"}
    for check in checks:
        table.add_row(check.name, f"[{colours[check.status]}]{check.status}", check.value, check.detail)
    return table
