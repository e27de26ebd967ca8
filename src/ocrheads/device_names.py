"""The device and dtype names a user gives (--device, --dtype), as plain strings: the command line's help needs them
without importing torch, and devices.py turns them into torch's."""

DEVICES = "cpu, cuda, cuda:N or auto"
DTYPE_NAMES = ("auto", "float32", "bfloat16", "float16")  # auto: the checkpoint's own
