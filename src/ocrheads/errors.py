"""Errors that users can act on: each message names the input at fault and the fix."""


class OcrHeadsError(Exception):
    """Base class: the CLI prints these as one clear line instead of a traceback."""


class DataError(OcrHeadsError):
    """Bad input to a data generator or a malformed dataset on disk."""


class BadPage(DataError):
    """A sample's page that cannot be read (missing, truncated, not an image). In a big set it costs its sample, not
    the run: commands record `reason` for the sample and go on, unless asked to stop at the first."""

    def __init__(self, sample: str, page: str, why: str):
        self.sample, self.reason = sample, f"unreadable page ({page}: {why})"
        super().__init__(f"sample {sample}: cannot read page {page} ({why}); fix or regenerate the dataset")
