"""Every error the builder raises, in one tree.

    BuilderError                 base; `python -m builder` prints its message and exits 1
    ├── SourceError              a source is unknown, missing, unreachable or fails its checksum
    ├── UnsupportedModel         a model/GGUF whose architecture or tensor type cannot be converted
    └── OutputError              the output folder cannot be written or replaced

The core's errors (`core.errors`: a bad manifest.json or price table) are reported the same way.
Third-party exceptions are translated where they enter (``raise X(...) from exc``).
"""

from __future__ import annotations


class BuilderError(Exception):
    """Base of the builder's errors; the message is written for the person running the command."""


class SourceError(BuilderError):
    pass


class UnsupportedModel(BuilderError):
    pass


class OutputError(BuilderError):
    pass
