"""The KoDF-shaped synthetic set: full frames (320x180, 30 fps) with the speaker somewhere
in the picture, so the media layer has to find and crop the face, as with the real KoDF.

Per speaker (scale 1: six of them, one population, so no groups):

- ``original_videos/<uuid>/<uuid>_<nnn>.mp4``: two real clips (two utterances);
- ``synthesized_videos/audio-driven/{atfhp,wav2lip}/<uuid>/...``: per original, its frames
  with the mouth re-rendered (blurred) to follow another real utterance of the same speaker,
  whose real audio the fake carries (KoDF's audio-driven fakes keep real audio);
- ``synthesized_videos/fsgan/<uuid>/...`` and ``synthesized_videos/dfl/<uuid>/...``: another
  speaker's inner face on the first original (feathered seam with a colour mismatch for fsgan,
  hard seam for dfl), real audio and mouth motion kept;
- the Korean distribution's metadata CSVs of the validation split (UTF-8).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from avbench.datasets.synth import voice as V
from avbench.datasets.synth.common import frame_times, rng_for
from avbench.datasets.synth.face import Look, Placement, Scene, swapped_look
from avbench.datasets.synth.people import KODF_STYLE, Voice, sample_look, sample_voice
from avbench.datasets.synth.render import Swapped, render, sample_motion

SPEAKERS = 6  # at scale 1
WIDTH, HEIGHT = 320, 180
FPS = Fraction(30)
AUDIO = ((48000, 1), (44100, 1))
MODEL_NO = {"audio-driven": "7", "fsgan": "3", "dfl": "1"}
ORIGINAL_CSV = "원본영상_validation_메타데이터.csv"
FAKE_CSV = "변조영상_validation_메타데이터.csv"


@dataclass(frozen=True)
class Speaker:
    uuid: str
    woman: bool
    look: Look
    voice: Voice
    place: Placement
    rate: int
    channels: int
    durations: tuple[float, float]


@dataclass(frozen=True)
class Clip:
    path: str  # relative to the root
    kind: str  # original, audio-driven, fsgan, dfl
    source: int  # which original it is made from
    donor: str = ""  # face donor uuid (face swaps)


@dataclass(frozen=True)
class Task:
    out: str
    seed: int
    speaker: Speaker
    clips: tuple[Clip, ...]
    looks: dict[str, Look]


def plan(scale: int, seed: int) -> tuple[list[Speaker], dict[str, list[Clip]]]:
    rng = rng_for(seed, "kodf-plan")
    n = SPEAKERS * scale
    uuids = []
    while len(uuids) < n:
        u = f"{int(rng.integers(0, 16**8)):08x}"
        if u not in uuids:
            uuids.append(u)
    people = []
    for i, u in enumerate(uuids):
        prng = rng_for(seed, "speaker", u)
        woman = i % 2 == 1
        half_w = float(prng.uniform(26, 32))
        rate, channels = AUDIO[int(prng.integers(len(AUDIO)))]
        people.append(Speaker(
            uuid=u, woman=woman, look=sample_look(prng, KODF_STYLE, woman),
            voice=sample_voice(prng, woman),
            place=Placement(float(prng.uniform(0.3, 0.7) * WIDTH),
                            float(prng.uniform(0.36, 0.46) * HEIGHT), half_w),
            rate=rate, channels=channels,
            durations=(round(float(prng.uniform(2.0, 3.0)), 2),
                       round(float(prng.uniform(2.0, 3.0)), 2)),
        ))
    clips: dict[str, list[Clip]] = {}
    for i, p in enumerate(people):
        prng = rng_for(seed, "kodf-targets", p.uuid)
        same = [q for q in people if q.uuid != p.uuid and q.woman == p.woman]
        mates = same or [q for q in people if q.uuid != p.uuid]
        u = p.uuid
        items = [Clip(f"original_videos/{u}/{u}_{j:03d}.mp4", "original", j) for j in range(2)]
        for j in range(2):
            sub = ("atfhp", "wav2lip")[(i + j) % 2]
            items.append(Clip(
                f"synthesized_videos/audio-driven/{sub}/{u}/{u}_{u}_{MODEL_NO['audio-driven']}"
                f"_{j:03d}.mp4", "audio-driven", j))
        for method in ("fsgan", "dfl"):
            d = mates[int(prng.integers(len(mates)))].uuid if mates else u
            items.append(Clip(f"synthesized_videos/{method}/{u}/{u}_{d}_{MODEL_NO[method]}_000.mp4",
                              method, 0, donor=d))
        clips[u] = items
    return people, clips


def metadata_csvs(people: list[Speaker], clips: dict[str, list[Clip]]) -> dict[str, bytes]:
    orig = io.StringIO()
    w = csv.writer(orig, lineterminator="\r\n")
    w.writerow(["영상ID", "UUID", "인물성별", "촬영장소", "촬영시작", "스크립트파일", "시나리오번호"])
    fake = io.StringIO()
    wf = csv.writer(fake, lineterminator="\r\n")
    wf.writerow(["영상ID", "타겟영상", "타겟UUID", "소스UUID", "변조모델", "촬영시작", "인물성별"])
    for i, p in enumerate(people):
        gender = "여" if p.woman else "남"
        names = {}
        for c in clips[p.uuid]:
            name = c.path.rsplit("/", 1)[1]
            if c.kind == "original":
                names[c.source] = name
                w.writerow([name, p.uuid, gender, "실내", f"2020-09-{1 + i % 28:02d}",
                            f"script_{i:03d}_{c.source}.txt", str(c.source + 1)])
        for c in clips[p.uuid]:
            if c.kind != "original":
                name = c.path.rsplit("/", 1)[1]
                wf.writerow([name, names[c.source], p.uuid, c.donor or p.uuid, c.kind,
                             f"2020-09-{1 + i % 28:02d}", gender])
    return {ORIGINAL_CSV: orig.getvalue().encode("utf-8"),
            FAKE_CSV: fake.getvalue().encode("utf-8")}


def _scene(look: Look, place: Placement) -> Scene:
    return Scene(look, HEIGHT, WIDTH, place, body=True)


def render_person(task: Task) -> list[str]:
    from avbench.datasets.synth.writer import write_av

    p, seed = task.speaker, task.seed
    out = Path(task.out)
    scene = _scene(p.look, p.place)
    originals = []
    for j, dur in enumerate(p.durations):
        rng = rng_for(seed, "kodf-clip", p.uuid, "original", j)
        times = frame_times(dur, FPS)
        pl = V.plan_syllables(rng, dur, p.voice)
        audio = V.speech(rng, pl, p.voice, dur)
        op, wd = V.mouth_track(pl, dur, times)
        motion = sample_motion(rng, times, amp_px=0.12 * p.place.half_w)
        originals.append((dur, times, audio, op, wd, motion))
    written = []
    for clip in task.clips:
        dur, times, audio, op, wd, motion = originals[clip.source]
        crng = rng_for(seed, "kodf-clip", p.uuid, clip.path)
        if clip.kind == "original":
            frames = render(scene, op, wd, motion, crng, camera=False)
        elif clip.kind == "audio-driven":
            pl = V.plan_syllables(crng, dur, p.voice)
            audio = V.speech(crng, pl, p.voice, dur)
            o2, w2 = V.mouth_track(pl, dur, times, smooth_s=0.045, gain=1.15)
            frames = render(scene, o2, w2, motion, crng, camera=False,
                            lipsync_blur=0.045 * p.place.half_w)
        else:
            donor = _scene(swapped_look(p.look, task.looks[clip.donor]), p.place)
            frames = render(Swapped(scene, donor, soft=clip.kind == "fsgan"), op, wd, motion,
                            crng, camera=False)
        write_av(out / clip.path, frames, V.to_format(audio, p.rate, p.channels), fps=FPS,
                 sample_rate=p.rate)
        written.append(clip.path)
    return written
