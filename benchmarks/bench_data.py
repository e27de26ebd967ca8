"""Time generating the paper's passkey set: 600 samples, 150 each at 1k/2k/4k/8k haystack characters.

Run: OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_data.py
"""

import tempfile
import time
from pathlib import Path

from ocrheads import generate


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        samples = generate("passkey", Path(folder) / "passkey", n=600)
        seconds = time.perf_counter() - start
        pages = sum(len(sample.pages) for sample in samples)
        size = sum(path.stat().st_size for path in Path(folder).rglob("*") if path.is_file())
    print(f"passkey: {len(samples)} samples, {pages} pages, {size / 2**20:.1f} MiB in {seconds:.1f} s")
    print(f"  {seconds / len(samples) * 1000:.1f} ms per sample, {pages / seconds:.0f} pages/s")


if __name__ == "__main__":
    main()
