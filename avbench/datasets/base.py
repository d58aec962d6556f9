"""What a dataset adapter produces: an index of :class:`VideoRecord` under a root folder."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from avbench.records import VideoRecord


@dataclass(frozen=True)
class IndexProblem:
    """Something an adapter noticed while indexing: a listed file that is missing, a
    duplicated row, a malformed row. ``where`` is a path relative to the root (or the
    metadata file's name and line)."""

    where: str
    reason: str


@dataclass
class DatasetIndex:
    name: str
    root: Path
    records: list[VideoRecord]
    problems: list[IndexProblem] = field(default_factory=list)
    #: stable over machines: hashes relative paths, sizes and metadata, never absolute paths
    fingerprint: str = ""
    #: frames are full scenes and need face cropping before a detector sees them
    face_crop: bool = False

    def by_id(self) -> dict[str, VideoRecord]:
        return {r.id: r for r in self.records}


class DatasetAdapter(ABC):
    """Reads one dataset's layout. Registered through ``avbench_register_datasets``."""

    name: ClassVar[str] = ""
    face_crop: ClassVar[bool] = False
    #: values each filterable field can take in this dataset (protocol files are checked
    #: against it, so a typo in a protocol is an error rather than an empty split)
    vocabulary: ClassVar[dict[str, tuple[str, ...]]] = {}

    @abstractmethod
    def index(self, root: Path) -> DatasetIndex:
        """Index the dataset under ``root``; raise DataError when it is not this dataset."""

    def _finish(self, root: Path, records: list[VideoRecord], problems: list[IndexProblem],
                digest: Any, sizes: dict[str, int]) -> DatasetIndex:
        """The index, with a fingerprint of ``digest`` (metadata already hashed into it) plus
        the sorted relative paths and sizes of the indexed files: stable across machines."""
        for rel in sorted(r.id for r in records):
            digest.update(f"\n{rel}\t{sizes[rel]}".encode())
        return DatasetIndex(name=self.name, root=root, records=records, problems=problems,
                            fingerprint=digest.hexdigest(), face_crop=self.face_crop)
