"""Errors a user can cause. The CLI prints them as one line and exits non-zero."""

from __future__ import annotations


class AvbenchError(Exception):
    """Base class: the message is complete and meant for the user, one line."""

    exit_code = 2


class ConfigError(AvbenchError):
    """A bad ``--set`` value, an unknown config key, a bad settings file."""


class PluginError(AvbenchError):
    """An unknown detector/protocol/dataset name, or a plugin that cannot be loaded."""


class DataError(AvbenchError):
    """A dataset root or metadata file that is missing or malformed."""


class ProtocolError(AvbenchError):
    """A protocol file that is malformed, or a split that cannot be built."""


class ResultsError(AvbenchError):
    """A results folder that is missing or unreadable."""


class LeakageError(AvbenchError):
    """A video would reach ``fit`` although it belongs to the test split (or two splits)."""


class BadMediaError(AvbenchError):
    """A media file that cannot be decoded; names the file and the reason."""

    def __init__(self, path: str, reason: str, kind: str = "corrupt"):
        self.path = str(path)
        self.reason = reason
        self.kind = kind
        super().__init__(f"{self.path}: {reason}")


class TrainingError(AvbenchError):
    """Training cannot go on (non-finite loss, out of memory); the message says why."""


class DetectorOutputError(AvbenchError):
    """A detector's ``scores()``/``predict()`` returned what the contract forbids (a score
    outside [0, 1] or not finite, a wrong shape, an unknown key): the plugin's fault, so exit 1,
    with one line naming the detector, its plugin and the method."""

    exit_code = 1


class CheckpointError(AvbenchError):
    """A checkpoint (``checkpoints/last.pt``, the best-validation snapshot in it) or saved
    state that cannot be read or does not fit the detector; names the file and the cause."""

    def __init__(self, path: str, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"checkpoint {self.path}: {reason}")
