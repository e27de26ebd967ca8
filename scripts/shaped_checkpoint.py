"""Write a Qwen2-VL checkpoint folder of a published shape (random weights, the real tokenizer), for the GPU check:
python scripts/shaped_checkpoint.py {tiny,2b,7b} OUT [--device cuda] [--dtype bfloat16]"""

import argparse
import time

import torch

from ocrheads.testing.qwen2_vl_shapes import SHAPES, qwen2_vl_shaped

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("shape", choices=["tiny", *SHAPES])
parser.add_argument("out")
parser.add_argument("--device", default="cpu")
parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
args = parser.parse_args()
start = time.perf_counter()
model, processor = qwen2_vl_shaped(args.shape, args.device, getattr(torch, args.dtype))
built = time.perf_counter() - start
model.save_pretrained(args.out)
processor.save_pretrained(args.out)
saved = time.perf_counter() - start - built
parameters = sum(p.numel() for p in model.parameters()) / 1e9
print(f"{args.shape}: {parameters:.2f} B parameters, built in {built:.1f} s, saved in {saved:.1f} s")
