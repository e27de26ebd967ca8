"""The bundled demo model: its task, how it is built and trained, and the `ocrheads demo` pipeline."""
