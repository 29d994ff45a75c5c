"""The checkpoint format's names and its error.

The metadata file, the array directory, the format tag and the version.

Shared by `jaxsal.checkpoint` and its private helpers (`jaxsal._checkpoint_arrays`,
`jaxsal._checkpoint_metadata`); `CheckpointError` is public as
`jaxsal.checkpoint.CheckpointError`.
"""

from __future__ import annotations

META = "jaxsal.json"
ARRAYS = "arrays"
FORMAT = "jaxsal.checkpoint"
VERSION = 2


class CheckpointError(ValueError):
    """A model that cannot be saved, or a checkpoint that does not load as it was saved."""


CheckpointError.__module__ = "jaxsal.checkpoint"  # its public home, where it is re-exported
