"""Errors that users can act on: each message names the input at fault and the fix."""


class OcrHeadsError(Exception):
    """Base class: the CLI prints these as one clear line instead of a traceback."""


class DataError(OcrHeadsError):
    """Bad input to a data generator or a malformed dataset on disk."""
