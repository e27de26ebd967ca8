"""Peak memory of `ocrheads convert` on a synthetic remote-code InternVL checkpoint of a few hundred MiB.

The conversion streams tensor by tensor, so its memory should follow the largest tensor, not the checkpoint.
For scale, the obvious alternative in the same setting: load every tensor (safetensors `load_file`), rename and
split them, save them (`save_file`). Each conversion runs in its own process; the figure is the growth of its
peak resident memory (VmHWM, reset just before converting) over its resident size then, so imports do not count.

Run: OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_convert.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MIB = 2**20
SHAPE = dict(text_width=1024, text_layers=8, heads=16, kv_heads=4, intermediate=2816, vision_width=256, vision_layers=4,
             vision_heads=4)  # fmt: skip


def _status(field: str) -> int:
    """A memory figure of this process from /proc/self/status, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def _reset_peak() -> None:
    """Start the peak (VmHWM) afresh at the current resident size (Linux: clear_refs 5)."""
    Path("/proc/self/clear_refs").write_text("5")


def worker(method: str, source: Path, out: Path) -> dict:
    import transformers  # noqa: F401 - imported before the baseline, like everything the conversion uses
    from safetensors.torch import load_file, save_file

    from ocrheads.models.convert import convert, internvl_chat, read_config

    raw = read_config(source)
    _reset_peak()
    before, start = _status("VmRSS"), time.perf_counter()
    if method == "streamed":
        convert(source, out)
    else:
        out.mkdir()
        for shard in sorted(source.glob("*.safetensors")):
            tensors = load_file(shard)
            native = {
                r.name: r.take(t).contiguous()
                for n, t in tensors.items()
                for r in internvl_chat.renamed(n, tuple(t.shape), raw)
            }
            save_file(native, out / shard.name)
    return {"method": method, "growth_mib": (_status("VmHWM") - before) / MIB, "seconds": time.perf_counter() - start}


def main() -> None:
    import torch

    from ocrheads.testing.tiny_internvl_chat import Shape, write_tiny_internvl_chat

    with tempfile.TemporaryDirectory() as scratch:
        source = write_tiny_internvl_chat(Path(scratch) / "remote", Shape(**SHAPE), shards=2)
        sizes = {}
        from safetensors import safe_open

        for shard in source.glob("*.safetensors"):
            with safe_open(shard, "pt") as handle:
                for name in handle.keys():  # noqa: SIM118
                    sizes[name] = handle.get_slice(name).get_shape()
        elements = {name: torch.Size(shape).numel() * 4 for name, shape in sizes.items()}
        total, largest = sum(elements.values()) / MIB, max(elements.values()) / MIB
        results = []
        for method in ("streamed", "load-all"):
            out = Path(scratch) / method
            command = [sys.executable, __file__, "--worker", method, str(source), str(out)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"checkpoint {total:.0f} MiB in 2 shards (float32), largest tensor {largest:.1f} MiB")
    print("| conversion | peak memory growth | x largest tensor | x checkpoint | time |")
    print("|---|---|---|---|---|")
    for result in results:
        growth = result["growth_mib"]
        print(f"| {result['method']} | {growth:.0f} MiB | {growth / largest:.1f}x | {growth / total:.2f}x | "
              f"{result['seconds']:.1f} s |")  # fmt: skip


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        print(json.dumps(worker(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))))
    else:
        main()
