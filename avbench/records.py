"""The per-video record every dataset adapter produces and every protocol filters."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# Fields a protocol filter may name (see protocols.py) and what they hold.
FILTER_FIELDS = ("dataset", "group", "gender", "type", "method", "category", "identity",
                 "label", "label_v", "label_a")


@dataclass(frozen=True)
class VideoRecord:
    """One video of a dataset.

    ``id`` is the key: the video's path relative to its dataset root, with forward slashes
    (FakeAVCeleb reuses file names across folders, so nothing shorter is unique). Labels use
    1 = fake, 0 = real, for the whole video (``label``), its visual stream (``label_v``) and its
    audio stream (``label_a``).
    """

    id: str
    dataset: str
    label: int
    label_v: int
    label_a: int
    type: str = ""
    method: str = ""
    category: str = ""
    group: str = ""
    gender: str = ""
    identity: str = ""
    targets: tuple[str, ...] = ()
    extra: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    @property
    def path(self) -> str:
        """Path relative to the dataset root (the id)."""
        return self.id

    def to_dict(self) -> dict:
        d = asdict(self)
        d["targets"] = list(self.targets)
        d["extra"] = dict(self.extra)
        return d
