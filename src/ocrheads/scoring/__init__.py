"""Scoring heads: OCR scores (attention on the image tokens of the answer text) and retrieval scores (copying)."""
