"""The error hierarchy. Kernels never raise: they return status codes and the
Python layer turns those into one of these, naming the file and byte offset."""


class DetectorError(Exception):
    """Base class: any error the tool reports to the user as one line."""


class CaptureError(DetectorError):
    """A capture file cannot be read at all (missing, not a capture, bad header)."""


class DecodeError(CaptureError):
    """A capture file is damaged part-way; packets before the damage were kept."""


class PolicyError(DetectorError):
    """The site policy is invalid."""


class ModelError(DetectorError):
    """A model file is missing, unsafe, or does not match the policy or features."""


class OutputError(DetectorError):
    """An output file cannot be written where it was asked for."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot write {path}: {reason}; choose a writable path")
        self.path = path
        self.reason = reason
