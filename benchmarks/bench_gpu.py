"""The GPU benchmark (run by scripts/gpu_check.sh): row capture against SDPA and eager attention, whole-run scoring
against plain generate and forward, and causal estimates, on Qwen2-VL-2B- and -7B-shaped models built on the GPU.

1. Capture: one 448x448 page (256 image tokens) plus digit tokens up to N; a plain SDPA forward, the same forward
   capturing 16 answer rows in every layer with 16 key sets (what OCR scoring asks), and eager `output_attentions`
   (the paper's method) where its matrices fit. Median of three after a warm-up, synchronised; memory is the peak
   above what was allocated before the forward.
2. Whole run at the paper's settings (passkeys of 1k, 2k, 4k and 8k characters, 2 to 12 pages each at 256 x 28 x 28
   pixels, batch 8): `score_ocr_batch` with generated answers against a plain `generate` of the same batches, and
   with gold answers against a plain forward over prompt and answer (the last row's logits only, as scoring keeps);
   samples per second.
3. Causal: the attribution estimate of one batch against a plain forward of it, and its peak memory.
4. Decoding: one batch of paper passkeys, its prefill and each decoding step timed apart, plain and capturing, and
   where a plain step's time goes (torch's profiler: the ops that take the most host time, and the host waits).
Also, on any device, the CPU proxy for launches: torch calls made inside the attention function per layer call of a
forward, and torch calls of the whole model per decoding step.
A table that fails (out of memory, say) is one line saying why; the tables after it still run, and the benchmark
exits non-zero at the end.

Run: python benchmarks/bench_gpu.py [--shapes 2b 7b]   (on a GPU; bfloat16)
     python benchmarks/bench_gpu.py --dry-run           (tiny shapes on the CPU: the same code, small numbers)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from PIL import Image
from torch.overrides import TorchFunctionMode
from transformers import AttentionInterface

from ocrheads.attention import Capture, attention_session, function, install, use_text_attention
from ocrheads.data.generate import generate
from ocrheads.data.manifest import read_manifest
from ocrheads.devices import to_device
from ocrheads.models import adapter_class
from ocrheads.scoring.answers import encode_samples, gold_ids
from ocrheads.scoring.causal import score_causal_batch
from ocrheads.scoring.kinds import CAUSAL, OCR
from ocrheads.scoring.ocr import score_ocr_batch
from ocrheads.scoring.options import CausalOptions, scoring_options
from ocrheads.testing.qwen2_vl_shapes import qwen2_vl_shaped
from ocrheads.testing.virtual_devices import virtual_gpus

ROWS, KEY_SETS, REPEATS, BATCH = 16, 16, 3, 8
EAGER_BYTES = 100 * 2**30  # eager attentions above this are not attempted (the table says how much they would take)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _measured(run, device: str) -> tuple[float, float | None]:
    """(median seconds of REPEATS runs after a warm-up, peak GiB above the memory held before), synchronised."""
    run()
    times, peak = [], None
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        held = torch.cuda.memory_allocated()
    for _ in range(REPEATS):
        _sync(device)
        start = time.perf_counter()
        result = run()
        _sync(device)
        times.append(time.perf_counter() - start)
        del result
    if device.startswith("cuda"):
        peak = (torch.cuda.max_memory_allocated() - held) / 2**30
    return statistics.median(times), peak


def _shown(seconds: float, peak: float | None) -> str:
    time_text = f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"
    return time_text if peak is None else f"{time_text}, {peak:.2f} GiB"


def _page_batch(adapter, length: int, device: str) -> dict:
    page = Image.new("RGB", (448, 448), "white")
    prompt = adapter.image_placeholder
    probe = adapter.processor(text=[prompt], images=[page], return_tensors="pt")["input_ids"].shape[1]
    return dict(adapter.encode([prompt + "7" * (length - probe)], [[page]]))


def capture_table(adapter, lengths: list[int], device: str, shape: str) -> list[str]:
    model = adapter.model
    layers, heads = adapter.grid
    lines = []
    for length in lengths:
        batch = _page_batch(adapter, length, device)
        rows = torch.arange(length - ROWS, length)[None]
        key_sets = torch.zeros(1, KEY_SETS, length, dtype=torch.bool)
        key_sets[0, torch.arange(KEY_SETS), torch.arange(KEY_SETS) + 10] = True

        def plain(batch=batch):
            with torch.no_grad():
                return model(**batch, logits_to_keep=1, use_cache=False).logits

        capture = Capture(rows, key_sets=key_sets)

        def captured(batch=batch, capture=capture):
            with torch.no_grad(), attention_session(model, capture=capture) as session:
                model(**batch, logits_to_keep=1, use_cache=False)
            return [session.captured(layer).argmax for layer in session.layers]

        def eager(batch=batch):
            with torch.no_grad():
                return model(**batch, logits_to_keep=1, use_cache=False, output_attentions=True).attentions

        use_text_attention(model, "sdpa")
        sdpa = _measured(plain, device)
        install(model)
        ours = _measured(captured, device)
        eager_bytes = layers * heads * length * length * model.dtype.itemsize
        if eager_bytes <= EAGER_BYTES:
            use_text_attention(model, "eager")
            eager_text = _shown(*_measured(eager, device))
        else:
            eager_text = f"not run: about {eager_bytes / 2**30:.0f} GiB of attentions"
        install(model)
        ratio = ours[0] / sdpa[0]
        lines.append(f"| {shape} | {length:,} | {_shown(*sdpa)} | {_shown(*ours)} ({ratio:.2f}x) | {eager_text} |")
    return lines


def _passkeys(folder: Path, lengths: list[int], per_length: int) -> tuple[list, list]:
    generate("passkey", folder, n=per_length * len(lengths), lengths=tuple(lengths), progress=False)
    samples = read_manifest(folder)
    return samples, [[Image.open(folder / page).convert("RGB") for page in s.pages] for s in samples]


def whole_run_table(adapter, samples, pages, device: str, shape: str) -> list[str]:
    """Samples per second of scoring against plain generate (generated answers) and plain forward (gold)."""
    batches = [(samples[i : i + BATCH], pages[i : i + BATCH]) for i in range(0, len(samples), BATCH)]
    pad = adapter.processor.tokenizer.pad_token_id

    def plain_generate():
        for chosen, images in batches:
            batch = encode_samples(adapter, chosen, images)
            with torch.no_grad():
                adapter.model.generate(**batch, max_new_tokens=32, do_sample=False, pad_token_id=pad)

    def plain_forward():
        from ocrheads.scoring.passes import append_tokens

        for chosen, images in batches:
            batch = encode_samples(adapter, chosen, images)
            gold = gold_ids(adapter, chosen)
            width = max(map(len, gold))
            tokens = torch.tensor([ids + [0] * (width - len(ids)) for ids in gold])
            mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in gold])
            with torch.no_grad():
                extended = append_tokens(batch, tokens, mask, adapter.written_token_types)
                adapter.model(**extended, use_cache=False, logits_to_keep=1)

    def scoring(answers: str):
        def run():
            for chosen, images in batches:
                score_ocr_batch(adapter, chosen, images, scoring_options(answers=answers), OCR.table_for(adapter))

        return run

    lines = []
    for name, baseline, ours in (("generated", plain_generate, scoring("generated")),
                                 ("gold", plain_forward, scoring("gold"))):  # fmt: skip
        use_text_attention(adapter.model, "sdpa")
        base = _measured(baseline, device)[0]
        install(adapter.model)
        mine = _measured(ours, device)[0]
        rate = len(samples) / mine
        lines.append(f"| {shape} | {name} | {len(samples) / base:.2f} /s | {rate:.2f} /s | {mine / base:.2f}x |")
    return lines


def causal_line(adapter, samples, pages, device: str, shape: str) -> str:
    chosen, images = samples[:BATCH], pages[:BATCH]
    options = CausalOptions(exact_top=0)  # the estimate alone

    def forward():
        batch = encode_samples(adapter, chosen, images)
        with torch.no_grad():
            adapter.model(**batch, use_cache=False, logits_to_keep=1)

    def estimate():
        score_causal_batch(adapter, chosen, images, options, CAUSAL.table_for(adapter), None)

    install(adapter.model)
    base = _measured(forward, device)
    ours = _measured(estimate, device)
    batch = f"{len(chosen)} samples, {sum(map(len, images))} pages"
    return f"| {shape} | {batch} | {_shown(*base)} | {_shown(*ours)} | {ours[0] / base[0]:.2f}x |"


class _Calls(TorchFunctionMode):
    """Counts torch calls on GPU tensors (a kernel launch, or at least a dispatch, each), property reads aside."""

    def __init__(self):
        super().__init__()
        self.counting, self.calls = False, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.counting and getattr(func, "__name__", "") != "__get__":
            tensors = [v for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor)]
            self.calls += any(t.is_cuda for t in tensors)
        return func(*args, **kwargs)


@contextmanager
def _counted_calls():
    """Torch calls made inside the registered attention function (each is at least one kernel launch on a GPU)."""
    mode = _Calls()

    def wrapped(*args, **kwargs):
        mode.counting = True
        try:
            return function.ocrheads_attention(*args, **kwargs)
        finally:
            mode.counting = False

    AttentionInterface.register(function.ATTENTION_NAME, wrapped)
    try:
        with mode:
            yield mode
    finally:
        AttentionInterface.register(function.ATTENTION_NAME, function.ocrheads_attention)


def launch_proxy(adapter, device: str) -> str:
    """Torch calls on GPU tensors per layer call inside the attention function: a plain forward, and one capturing
    rows (on the CPU, under virtual devices: the same count a GPU would see)."""
    batch = _page_batch(adapter, 512, device)
    rows = torch.arange(512 - ROWS, 512)[None]
    key_sets = torch.zeros(1, KEY_SETS, 512, dtype=torch.bool)
    layers = adapter.grid[0]
    install(adapter.model)
    counts = {}
    for name, capture in (("plain", None), ("capture", Capture(rows, key_sets=key_sets))):
        placed = virtual_gpus("single", adapter.model) if device == "cpu" else nullcontext()
        with placed, torch.no_grad(), _counted_calls() as mode:
            moved = to_device(batch, adapter.device)
            with attention_session(adapter.model, capture=capture):
                adapter.model(**moved, logits_to_keep=1, use_cache=False)
        counts[name] = mode.calls / layers
    plain, capture = counts["plain"], counts["capture"]
    return f"torch calls per layer inside the attention function: plain {plain:.0f}, capturing rows {capture:.0f}"


def _answer_capture(length: int, steps: int) -> Capture:
    """What OCR scoring captures while generating: the last prompt row and every written token's row, 16 key sets."""
    return Capture(torch.arange(length - 1, length + steps)[None], key_sets=torch.zeros(1, KEY_SETS, length + steps,
                   dtype=torch.bool), unseen_ok=True)  # fmt: skip


def decoding_launch_proxy(adapter, device: str, steps: int = 8) -> str:
    """Torch calls on GPU tensors of the whole model per decoding step of `generate`, plain and capturing the answer's
    rows (deferred rows computed at the session's end included): a decoding step's GPU time is its launches."""
    batch = _page_batch(adapter, 512, device)
    pad = adapter.processor.tokenizer.pad_token_id
    install(adapter.model)
    per_step = {}
    for name, capture in (("plain", lambda new: None), ("capture", lambda new: _answer_capture(512, new))):
        calls = {}
        for new in (1, 1 + steps):
            mode = _Calls()
            placed = virtual_gpus("single", adapter.model) if device == "cpu" else nullcontext()
            with placed, torch.no_grad(), mode:
                moved = to_device(batch, adapter.device)
                mode.counting = True
                with attention_session(adapter.model, capture=capture(new)):
                    adapter.model.generate(**moved, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                                           pad_token_id=pad)  # fmt: skip
                mode.counting = False
            calls[new] = mode.calls
        per_step[name] = (calls[1 + steps] - calls[1]) / steps
    plain, capture = per_step["plain"], per_step["capture"]
    return f"torch calls per decoding step, whole model: plain {plain:.0f}, capturing rows {capture:.0f}"


def decoding_table(adapter, samples, pages, device: str, shape: str, steps: int = 32) -> str:
    """One batch's prefill (generate of one token) and mean decoding step ((generate of 1 + steps) - prefill) / steps,
    plain and capturing the answer's rows."""
    chosen, images = samples[:BATCH], pages[:BATCH]
    batch = encode_samples(adapter, chosen, images)
    length = batch["input_ids"].shape[1]
    pad = adapter.processor.tokenizer.pad_token_id
    install(adapter.model)

    def generated(new: int, capture):
        def run():
            with torch.no_grad(), attention_session(adapter.model, capture=capture):
                adapter.model.generate(**batch, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                                       pad_token_id=pad)  # fmt: skip

        return run

    cells = []
    for capture in (None, _answer_capture(length, steps)):
        prefill = _measured(generated(1, capture), device)[0]
        whole = _measured(generated(1 + steps, capture), device)[0]
        cells += [prefill, (whole - prefill) / steps]
    shown = [_shown(seconds, None) for seconds in cells]
    ratio = cells[3] / cells[1]
    return f"| {shape} | {BATCH} x {length:,} tokens | {' | '.join(shown)} ({ratio:.2f}x) |"


def decoding_profile(adapter, samples, pages, device: str, steps: int = 8) -> str:
    """Where a plain decoding step's time goes: torch's profiler over the steps of one batch's generate (prefill
    subtracted by profiling it alone), the ops with the most host time, and the host's waits for the GPU."""
    from torch.profiler import ProfilerActivity, profile

    chosen, images = samples[:BATCH], pages[:BATCH]
    batch = encode_samples(adapter, chosen, images)
    pad = adapter.processor.tokenizer.pad_token_id
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    with torch.no_grad():
        adapter.model.generate(**batch, max_new_tokens=2, do_sample=False, pad_token_id=pad)  # warm-up
        with profile(activities=activities) as profiled:
            adapter.model.generate(**batch, max_new_tokens=1 + steps, min_new_tokens=1 + steps, do_sample=False,
                                   pad_token_id=pad)  # fmt: skip
    events = profiled.key_averages()
    waiting = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "aten::_local_scalar_dense")  # syncs, item()
    waits = sum(event.count for event in events if event.key in waiting)
    table = events.table(sort_by="self_cpu_time_total", row_limit=10, max_name_column_width=40)
    title = f"generate of {1 + steps} tokens, batch {len(chosen)}: the host waited for the GPU {waits} times"
    return f"{title}\n\n```\n{table}```\n"


def shape_sections(adapter, shape: str, samples, pages, device: str, lengths: list[int]) -> dict:
    """A shape's tables and lines, each made when called, by name (a failure says which)."""
    return {
        "launches": lambda: launch_proxy(adapter, device),
        "decoding launches": lambda: decoding_launch_proxy(adapter, device) + "\n",
        "capture": lambda: _table(
            ["model", "tokens", "plain SDPA forward", "with ocrheads' capture", "eager `output_attentions`"],
            capture_table(adapter, lengths, device, shape)),
        "whole run": lambda: _table(
            ["model", f"answers (batch {BATCH})", "plain generate / forward", "ocrheads score ocr", "ratio"],
            whole_run_table(adapter, samples, pages, device, shape)),
        "causal": lambda: _table(["model", "batch", "plain forward", "causal estimate", "ratio"],
                                 [causal_line(adapter, samples, pages, device, shape)]),
        "decoding": lambda: _table(
            ["model", "batch", "prefill, plain", "decoding step, plain", "prefill, capturing",
             "decoding step, capturing"], [decoding_table(adapter, samples, pages, device, shape)]),
        "decoding profile": lambda: decoding_profile(adapter, samples, pages, device),
    }  # fmt: skip


def guarded(name: str, make) -> tuple[str, bool]:
    """(`make()`, True), or (one line saying why it failed, False): a GPU check has one call, and one table running
    out of memory must not cost it the tables after it."""
    try:
        return make(), True
    except Exception as error:  # every failure is reported the same way, and the next table runs
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return f"{name}: failed, {type(error).__name__}: {first}\n", False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["2b", "7b"], choices=["tiny", "2b", "7b"])
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU, small lengths")
    args = parser.parse_args()
    dry = args.dry_run
    device = "cpu" if dry else "cuda"
    shapes = ["tiny"] if dry else args.shapes
    dtype = torch.float32 if dry else torch.bfloat16
    lengths = [512, 1024] if dry else [2048, 8192, 16384, 32768]
    passkey_lengths, per_length = ([120, 1024], 2) if dry else ([1024, 2048, 4096, 8192], 4)
    name = torch.cuda.get_device_name(0) if device == "cuda" else "CPU"
    print(f"# {name}, {dtype}, torch {torch.__version__}", flush=True)
    failed = []
    with tempfile.TemporaryDirectory() as scratch:
        samples, pages = _passkeys(Path(scratch) / "paper", passkey_lengths, per_length)
        for shape in shapes:  # each shape's tables as soon as they are measured: a deadline keeps what was done
            model, processor = qwen2_vl_shaped(shape, device, dtype)
            adapter = adapter_class(model.config)(model, processor)
            print(f"\n## {shape}\n", flush=True)
            for name, make in shape_sections(adapter, shape, samples, pages, device, lengths).items():
                text, done = guarded(f"{shape} {name}", make)
                print(text, flush=True)
                failed += [] if done else [f"{shape} {name}"]
            del model, adapter
            if device == "cuda":
                torch.cuda.empty_cache()
    if failed:
        sys.exit(f"failed: {', '.join(failed)} (each says why above)")


def _table(header: list[str], lines: list[str]) -> str:
    return "| " + " | ".join(header) + " |\n" + "|---" * len(header) + "|\n" + "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
