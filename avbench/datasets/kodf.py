"""KoDF: labels from the folders, identities from the Korean metadata CSVs when present.

Layout of the English release::

    original_videos/**.mp4                 real (label 0/0/0)
    synthesized_videos/<method>/**.mp4     fake; method = audio-driven, dffs, dfl, fo, fsgan

The folders below those vary and are scanned recursively (links out of the root and link
loops are problems, not followed). A root without either folder, or without a video in it, is
an error: a run on it would see one class only. KoDF's fakes keep the real audio, so
a fake is label 1, label_v 1, label_a 0. The frames are full scenes (``face_crop=True``): the
media layer finds and crops the face.

The Korean distribution adds ``원본영상_{training,validation}_메타데이터.csv`` (columns
``영상ID, UUID, 인물성별, ...``) and ``변조영상_{training,validation}_메타데이터.csv``
(``영상ID, 타겟영상, 타겟UUID, 소스UUID, 변조모델, ..., 인물성별``). Where they are found (in
the root or a folder or two below it) they fill ``identity`` (the person in the video: UUID
for originals, 타겟UUID for fakes), ``targets`` (소스UUID, the face or voice source, when it is
another person) and ``gender``; they never change a label. Their encoding may be UTF-8 (with or
without BOM) or CP949, and file names may be in NFC or NFD form.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from avbench.datasets.base import DatasetAdapter, DatasetIndex, IndexProblem
from avbench.datasets.fakeavceleb import scan_files
from avbench.errors import DataError
from avbench.records import VideoRecord

REAL_DIR = "original_videos"
FAKE_DIR = "synthesized_videos"
METHODS = ("audio-driven", "dffs", "dfl", "fo", "fsgan")
_CSV_NAME = re.compile(r"^(원본영상|변조영상)_(training|validation)_메타데이터\.csv$")
_ENCODINGS = ("utf-8-sig", "cp949", "euc-kr")
_MEN = {"남", "남성", "남자", "m", "male", "man", "men"}
_WOMEN = {"여", "여성", "여자", "f", "female", "woman", "women"}
GENDERS = ("men", "women", "")


def _nfc(s: str) -> str:
    return unicodedata.normalize("NFC", s)


def normalise_gender(value: str) -> str:
    v = _nfc(value).strip().lower()
    if v in _MEN:
        return "men"
    if v in _WOMEN:
        return "women"
    return v


@dataclass(frozen=True)
class _Meta:
    kind: str  # "original" or "synthesized"
    csv: str
    identity: str
    targets: tuple[str, ...]
    gender: str
    extra: tuple[tuple[str, str], ...]


def find_metadata_csvs(root: Path, max_depth: int = 2) -> list[Path]:
    """The Korean metadata CSVs in the root or up to ``max_depth`` folders below it (the
    video folders are not searched)."""
    found = []
    root_s = str(root)
    for dirpath, dirnames, filenames in os.walk(root_s):
        rel = os.path.relpath(dirpath, root_s)
        depth = 0 if rel == "." else rel.count(os.sep) + 1
        if depth == 0:
            dirnames[:] = [d for d in dirnames if d not in (REAL_DIR, FAKE_DIR)]
        if depth >= max_depth:
            dirnames[:] = []
        dirnames.sort()
        for fn in sorted(filenames):
            if _CSV_NAME.match(_nfc(fn)):
                found.append(Path(dirpath) / fn)
    return found


def _read_csv(path: Path) -> tuple[bytes, list[str], list[tuple[int, dict[str, str]]], str]:
    """(raw bytes, header, [(line, row by column)], encoding); blank rows are left out."""
    data = path.read_bytes()
    for enc in _ENCODINGS:
        try:
            text = data.decode(enc)
        except UnicodeDecodeError:
            continue
        reader = csv.reader(io.StringIO(text, newline=""))
        header: list[str] = []
        out = []
        for row in reader:
            if reader.line_num == 1 and not header:
                header = [_nfc(h).strip().lstrip("\ufeff") for h in row]
                continue
            if not any(c.strip() for c in row):
                continue
            out.append((reader.line_num,
                        {h: _nfc(v).strip() for h, v in zip(header, row, strict=False)}))
        return data, header, out, enc
    raise DataError(f"{path.name}: cannot decode (tried {', '.join(_ENCODINGS)})")


def _classify(root: Path, files: dict[str, int], problems: list[IndexProblem]
              ) -> list[tuple[str, str, str]]:
    """(relative path, type, method) of each video under the two folders, in sorted order;
    unknown method folders and files outside the folders are problems. Raises DataError when
    either folder holds no video."""
    found: list[tuple[str, str, str]] = []  # (rel, type, method)
    unknown_methods: dict[str, int] = {}
    outside = 0
    for rel in sorted(files):
        parts = rel.split("/")
        if parts[0] == REAL_DIR and len(parts) >= 2:
            found.append((rel, "original", "real"))
        elif parts[0] == FAKE_DIR and len(parts) >= 3:
            method = parts[1]
            if method not in METHODS:
                unknown_methods[method] = unknown_methods.get(method, 0) + 1
            found.append((rel, "synthesized", method))
        else:
            outside += 1
    for folder, type_, pattern in ((REAL_DIR, "original", "**.mp4"),
                                   (FAKE_DIR, "synthesized", "<method>/**.mp4")):
        if not any(t == type_ for _, t, _ in found):
            raise DataError(
                f"KoDF root {root}: no {folder}/{pattern} video found; without them a run "
                "would see one class only")
    for method, n in sorted(unknown_methods.items()):
        problems.append(IndexProblem(
            f"{FAKE_DIR}/{method}",
            f"unknown method folder ({n} videos indexed as fakes of method {method!r})"))
    if outside:
        problems.append(IndexProblem(
            ".", f"{outside} .mp4 files outside {REAL_DIR}/ and {FAKE_DIR}/<method>/ ignored"))
    return found


class KoDFAdapter(DatasetAdapter):
    """Index KoDF from its folders (and its metadata CSVs when present)."""

    name = "kodf"
    face_crop = True
    vocabulary = {
        "dataset": ("kodf",),
        "group": ("",),
        "type": ("original", "synthesized"),
        "method": ("real", *METHODS),
        "category": ("real", *METHODS),
        "gender": GENDERS,
    }

    def index(self, root: Path) -> DatasetIndex:
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"KoDF root {root} does not exist or is not a folder")
        for folder in (REAL_DIR, FAKE_DIR):
            if not (root / folder).is_dir():
                raise DataError(
                    f"KoDF root {root} has no {folder}/ folder (a KoDF root holds {REAL_DIR}/ "
                    f"and {FAKE_DIR}/<method>/); without it a run would see one class only")
        problems: list[IndexProblem] = []
        files = scan_files(root, problems=problems)
        found = _classify(root, files, problems)

        h = hashlib.sha256()
        meta = self._metadata(root, problems, h)
        records = []
        unmatched = 0
        for rel, type_, method in found:
            fn = _nfc(rel.rsplit("/", 1)[-1])
            m = meta.get(fn) or meta.get(fn.rsplit(".", 1)[0])
            identity, targets, gender, extra = "", (), "", ()
            if m is not None:
                if m.kind != type_:
                    problems.append(IndexProblem(
                        rel, f"listed in {m.csv} as {m.kind} but lies in the {type_} folders;"
                             " the folder decides the label"))
                identity, targets, gender, extra = m.identity, m.targets, m.gender, m.extra
            elif meta:
                unmatched += 1
            label_v = 0 if type_ == "original" else 1
            records.append(VideoRecord(
                id=rel,
                dataset=self.name,
                label=label_v,
                label_v=label_v,
                label_a=0,
                type=type_,
                method=method,
                category=method,
                group="",
                gender=gender,
                identity=identity,
                targets=targets,
                extra=extra,
            ))
        if unmatched:
            problems.append(IndexProblem(
                ".", f"{unmatched} of {len(records)} videos are not in the metadata CSVs"))
        return self._finish(root, records, problems, h, files)

    def _metadata(self, root: Path, problems: list[IndexProblem], h) -> dict[str, _Meta]:
        """File name (and stem) -> metadata, from every CSV found; hashes the CSVs into h."""
        out: dict[str, _Meta] = {}
        paths = find_metadata_csvs(root)
        for path in sorted(paths, key=lambda p: _nfc(p.relative_to(root).as_posix())):
            rel_csv = _nfc(path.relative_to(root).as_posix())
            data, header, rows, _enc = _read_csv(path)
            h.update(rel_csv.encode() + b"\0" + hashlib.sha256(data).digest())
            kind = "original" if _nfc(path.name).startswith("원본영상") else "synthesized"
            if rows and "영상ID" not in header:
                problems.append(IndexProblem(rel_csv, "no 영상ID column; file not used"))
                continue
            for line, row in rows:
                vid = row.get("영상ID", "")
                if not vid:
                    continue
                gender = normalise_gender(row.get("인물성별", ""))
                if gender not in GENDERS:
                    problems.append(IndexProblem(
                        f"{rel_csv}:{line}", f"gender {row.get('인물성별', '')!r} is not a known "
                        f"spelling of men or women; video {vid} gets gender {gender!r}, which "
                        "no gender filter selects"))
                if kind == "original":
                    identity = row.get("UUID", "")
                    targets: tuple[str, ...] = ()
                    extra = ()
                else:
                    identity = row.get("타겟UUID", "")
                    src = row.get("소스UUID", "")
                    targets = (src,) if src and src != identity else ()
                    extra = tuple((k, row[k]) for k in ("타겟영상", "변조모델") if row.get(k))
                m = _Meta(kind, rel_csv, identity, targets, gender, extra)
                for key in {vid, vid.rsplit(".", 1)[0] if vid.lower().endswith(".mp4") else vid}:
                    out.setdefault(key, m)
        return out
