"""The engine: runs a detector on a protocol split, trains torch detectors, evaluates."""
