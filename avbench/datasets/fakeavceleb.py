"""FakeAVCeleb v1.2: reads ``meta_data.csv`` (official or edited form) under the root.

The official file's header names nine columns and ends with a comma, but every row has ten
values: the column headed ``path`` holds the file name and the unnamed tenth the directory,
starting with ``FakeAVCeleb/``. Edited copies name the columns ``...,gender,filename,path``
and use the prefix ``FakeAVCeleb_v1.2/``. Either way the directory's first component is
dropped and the rest joined to the dataset root.

Labels come from the ``type`` column only, never from file names. Videos are keyed by their
path relative to the root; a file listed twice (22 in the real CSV) keeps its first row and the
repeat is reported as an :class:`IndexProblem`, as are listed files that are missing.
Values outside the vocabularies are problems too, named ``meta_data.csv:LINE``: a row with an
unknown type or method is not indexed (its label cannot be known), one with an unknown race or
gender is indexed but no group or gender filter selects it. Nothing is dropped unreported.
"""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path, PurePosixPath, PureWindowsPath

from avbench.datasets.base import DatasetAdapter, DatasetIndex, IndexProblem
from avbench.errors import DataError
from avbench.paths import walk_files
from avbench.records import VideoRecord

METADATA = "meta_data.csv"

GROUPS = ("African", "Asian (East)", "Asian (South)", "Caucasian (American)",
          "Caucasian (European)")
TYPES = ("RealVideo-RealAudio", "RealVideo-FakeAudio", "FakeVideo-RealAudio",
         "FakeVideo-FakeAudio")
METHODS = ("real", "rtvc", "wav2lip", "faceswap", "fsgan", "faceswap-wav2lip", "fsgan-wav2lip")
GENDERS = ("men", "women")

#: (type, method) -> category; the eight pairs FakeAVCeleb has
CATEGORIES: dict[tuple[str, str], str] = {
    ("RealVideo-RealAudio", "real"): "real",
    ("RealVideo-FakeAudio", "rtvc"): "RVFA",
    ("FakeVideo-RealAudio", "wav2lip"): "FVRA-WL",
    ("FakeVideo-RealAudio", "faceswap"): "FVRA-FS",
    ("FakeVideo-RealAudio", "fsgan"): "FVRA-GAN",
    ("FakeVideo-FakeAudio", "wav2lip"): "FVFA-WL",
    ("FakeVideo-FakeAudio", "faceswap-wav2lip"): "FVFA-FS",
    ("FakeVideo-FakeAudio", "fsgan-wav2lip"): "FVFA-GAN",
}

#: type -> (label, label_v, label_a)
LABELS: dict[str, tuple[int, int, int]] = {
    "RealVideo-RealAudio": (0, 0, 0),
    "RealVideo-FakeAudio": (1, 0, 1),
    "FakeVideo-RealAudio": (1, 1, 0),
    "FakeVideo-FakeAudio": (1, 1, 1),
}

#: type -> the letter the ``category`` column of meta_data.csv uses
LETTERS = {"RealVideo-RealAudio": "A", "RealVideo-FakeAudio": "B",
           "FakeVideo-RealAudio": "C", "FakeVideo-FakeAudio": "D"}

_REQUIRED = ("source", "target1", "target2", "method", "category", "type", "race", "gender")


def _decode(data: bytes, name: str) -> str:
    for enc in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    raise DataError(f"{name}: cannot decode the file as UTF-8")


def _columns(header: list[str], name: str) -> tuple[dict[str, int], int, int]:
    """Map the header to column indices; return (named columns, file column, dir column)."""
    names = [h.strip().lower() for h in header]
    cols = {n: i for i, n in enumerate(names) if n}
    missing = [c for c in _REQUIRED if c not in cols]
    if missing:
        raise DataError(
            f"{name} line 1: not FakeAVCeleb's metadata header (missing {', '.join(missing)})"
        )
    if "filename" in cols and "path" in cols:  # edited form: filename, path (directory)
        return cols, cols["filename"], cols["path"]
    if "path" in cols:  # official form: path (file name), then the unnamed directory column
        return cols, cols["path"], cols["path"] + 1
    raise DataError(f"{name} line 1: no 'path' column in the header")


def _relative_dir(directory: str, where: str) -> PurePosixPath:
    """The listed directory without its first component, checked not to leave the root."""
    d = directory.strip().replace("\\", "/")
    if not d:
        raise DataError(f"{where}: empty directory column")
    if d.startswith("/") or PureWindowsPath(d).drive or PureWindowsPath(d).root:
        raise DataError(f"{where}: absolute path {directory!r} is not allowed")
    parts = [p for p in d.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise DataError(f"{where}: path {directory!r} would leave the dataset root")
    return PurePosixPath(*parts[1:]) if len(parts) > 1 else PurePosixPath()


def _check_file_name(file: str, where: str) -> str:
    f = file.strip()
    if not f:
        raise DataError(f"{where}: empty file name")
    if "/" in f or "\\" in f or f in (".", ".."):
        if f.startswith(("/", "\\")) or PureWindowsPath(f).drive:
            raise DataError(f"{where}: absolute path {file!r} is not allowed")
        if ".." in f.replace("\\", "/").split("/"):
            raise DataError(f"{where}: file name {file!r} would leave the dataset root")
        raise DataError(f"{where}: file name {file!r} holds a directory")
    return f


def _no_label(type_: str, method: str) -> str:
    """Why a row of ``type_`` and ``method`` (not one of the CATEGORIES pairs) has no label."""
    if type_ not in TYPES:
        return f"type {type_!r} is not one of {', '.join(TYPES)}"
    if method not in METHODS:
        return f"method {method!r} is not one of {', '.join(METHODS)}"
    return f"type {type_} with method {method} is not a FakeAVCeleb category"


def scan_files(root: Path, suffix: str = ".mp4",
               problems: list[IndexProblem] | None = None) -> dict[str, int]:
    """Relative path (forward slashes) -> size of every file with ``suffix`` under root.

    Links out of the root, link loops and broken links are not followed; each is added to
    ``problems`` (when given) once.
    """
    files, refused = walk_files(root, keep=lambda fn: fn.lower().endswith(suffix))
    if problems is not None:
        problems.extend(IndexProblem(where, reason) for where, reason in refused)
    return files


class FakeAVCelebAdapter(DatasetAdapter):
    """Index FakeAVCeleb v1.2 from its ``meta_data.csv``."""

    name = "fakeavceleb"
    face_crop = False
    vocabulary = {
        "dataset": ("fakeavceleb",),
        "group": GROUPS,
        "type": TYPES,
        "method": METHODS,
        "category": tuple(dict.fromkeys(CATEGORIES.values())),
        "gender": GENDERS,
    }

    def index(self, root: Path) -> DatasetIndex:
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"FakeAVCeleb root {root} does not exist or is not a folder")
        csv_path = root / METADATA
        if not csv_path.is_file():
            raise DataError(
                f"{root} has no {METADATA}: not a FakeAVCeleb v1.2 root (the folder that holds "
                f"{METADATA} and RealVideo-RealAudio/ ...)"
            )
        data = csv_path.read_bytes()
        text = _decode(data, METADATA)
        problems: list[IndexProblem] = []
        rows = self._parse(text, problems)
        on_disk = scan_files(root, problems=problems)

        records: list[VideoRecord] = []
        first_line: dict[str, int] = {}
        kept: dict[str, VideoRecord] = {}
        missing = 0
        listed = 0
        for line, rel, rec in rows:
            listed += 1
            if rel in first_line:
                prev = kept.get(rel)
                kept_as = f"{prev.type}/{prev.method}" if prev else "not indexed"
                again = f"{rec.type}/{rec.method}" if rec else "a row not indexed"
                problems.append(IndexProblem(
                    rel,
                    f"listed again in {METADATA} line {line} (as {again}); "
                    f"kept line {first_line[rel]} ({kept_as})",
                ))
                continue
            first_line[rel] = line
            if rec is None:  # a value outside the vocabulary; reported by _parse
                continue
            if rel not in on_disk:
                missing += 1
                problems.append(IndexProblem(rel, f"listed in {METADATA} line {line} but missing"))
                continue
            kept[rel] = rec
            records.append(rec)
        if missing:
            problems.append(IndexProblem(
                METADATA, f"{missing} of {len(first_line)} listed files are missing"))
        unlisted = sorted(set(on_disk) - set(first_line))
        for rel in unlisted:
            problems.append(IndexProblem(rel, f"not listed in {METADATA}; ignored"))
        if not records:
            raise DataError(
                f"{root}: none of the {listed} files listed in {METADATA} exist under the root"
            )
        return self._finish(root, records, problems, hashlib.sha256(data), on_disk)

    def _parse(self, text: str, problems: list[IndexProblem]
               ) -> list[tuple[int, str, VideoRecord | None]]:
        """(line, relative path, record) per row; the record is None for a row whose type or
        method is unknown (its label cannot be known): such values, and races or genders
        outside the vocabulary, are problems named ``meta_data.csv:LINE``."""
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{METADATA} is empty") from None
        cols, fcol, dcol = _columns(header, METADATA)
        width = max(len(header), dcol + 1)
        out: list[tuple[int, str, VideoRecord | None]] = []
        for row in reader:
            line = reader.line_num
            where = f"{METADATA} line {line}"
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) > width and not any(c.strip() for c in row[width:]):
                row = row[:width]  # trailing commas
            if len(row) != width:
                raise DataError(f"{where}: expected {width} values, found {len(row)}")
            get = {c: row[i].strip() for c, i in cols.items()}
            type_, method = get["type"], get["method"]
            if not get["source"]:
                raise DataError(f"{where}: empty source id")
            file = _check_file_name(row[fcol], where)
            rel = (_relative_dir(row[dcol], where) / file).as_posix()
            at = f"{METADATA}:{line}"
            category = CATEGORIES.get((type_, method))
            if category is None:
                problems.append(IndexProblem(
                    at, f"{_no_label(type_, method)}; {rel} not indexed (its label is unknown)"))
                out.append((line, rel, None))
                continue
            # column, the record field (and protocol filter) it fills, the values it can take
            for column, field, known in (("race", "group", GROUPS), ("gender", "gender", GENDERS)):
                if get[column] not in known:
                    problems.append(IndexProblem(
                        at, f"{column} {get[column]!r} is not one of {', '.join(known)}; {rel} is "
                            f"indexed, but no {field} filter selects it"))
            label, label_v, label_a = LABELS[type_]
            targets = tuple(t for t in (get["target1"], get["target2"]) if t and t != "-")
            if get["category"] and get["category"] != LETTERS[type_]:
                problems.append(IndexProblem(
                    at, f"category letter {get['category']!r} does not match type {type_}"
                           f" ({LETTERS[type_]}); labels follow the type"))
            out.append((line, rel, VideoRecord(
                id=rel,
                dataset=self.name,
                label=label,
                label_v=label_v,
                label_a=label_a,
                type=type_,
                method=method,
                category=category,
                group=get["race"],
                gender=get["gender"],
                identity=get["source"],
                targets=targets,
                extra=(("line", str(line)),),
            )))
        return out
