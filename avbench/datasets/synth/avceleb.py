"""The FakeAVCeleb-shaped synthetic set: plan (identities, files, metadata) and rendering.

Every identity has one real clip (RealVideo-RealAudio) and one fake per (type, method) pair
FakeAVCeleb has; all fakes of an identity are made from its real clip, as in FakeAVCeleb:

====================  ====================================================================
B / rtvc              real frames; cloned (vocoder) voice of another speaker, new timing,
                      so the lips no longer match the audio
C / wav2lip           real frames with the mouth re-rendered (blurred) to follow a real
                      utterance of another speaker, whose real audio the clip carries
C / faceswap          another identity's inner face, hard seam; real audio, mouth unchanged
C / fsgan             another identity's inner face, feathered seam with a colour mismatch
D / wav2lip           real frames, re-rendered mouth synced to a cloned voice
D / faceswap-wav2lip  face swap (hard seam) + re-rendered mouth synced to a cloned voice
D / fsgan-wav2lip     face swap (soft seam) + re-rendered mouth synced to a cloned voice
====================  ====================================================================

Targets (face donors, voices) always come from the same group, and the same gender where
the group has another speaker of it.
"""

from __future__ import annotations

import csv
import io
import string
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from avbench.datasets.synth import voice as V
from avbench.datasets.synth.common import AUDIO_CHOICES, FPS_CHOICES, frame_times, rng_for
from avbench.datasets.synth.face import Look, Placement, Scene, swapped_look
from avbench.datasets.synth.people import GROUPS, STYLES, Voice, sample_look, sample_voice
from avbench.datasets.synth.render import Swapped, render, sample_motion

IDENTITIES_PER_GROUP = 8  # at scale 1: 4 men and 4 women per group
FRAME_SIZE = 112
HEADER = "source,target1,target2,method,category,type,race,gender,path,"

REAL = "RealVideo-RealAudio"
RVFA = "RealVideo-FakeAudio"
FVRA = "FakeVideo-RealAudio"
FVFA = "FakeVideo-FakeAudio"
LETTER = {REAL: "A", RVFA: "B", FVRA: "C", FVFA: "D"}


@dataclass(frozen=True)
class Person:
    id: str
    group: str
    gender: str  # "men" / "women"
    clip: str  # the real clip's five-digit number
    look: Look
    voice: Voice
    fps: Fraction
    rate: int
    channels: int
    duration: float


@dataclass(frozen=True)
class Clip:
    """One file to write (``kind`` says how) and the metadata rows that list it."""

    type: str
    method: str
    file: str
    kind: str  # real, rtvc, wav2lip-real, faceswap, fsgan, wav2lip-fake, faceswap-wl, fsgan-wl
    face: str = ""  # face donor id
    voice: str = ""  # voice id (whose real or cloned voice the audio is)
    rows: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class Task:
    out: str
    seed: int
    person: Person
    clips: tuple[Clip, ...]
    looks: dict[str, Look]
    voices: dict[str, Voice]


def _youtube_id(rng: np.random.Generator) -> str:
    alphabet = string.ascii_letters + string.digits + "-_"
    return "".join(alphabet[int(i)] for i in rng.integers(0, len(alphabet), 11))


def plan(scale: int, seed: int) -> tuple[list[Person], dict[str, list[Clip]]]:
    rng = rng_for(seed, "fakeavceleb-plan")
    per_group = IDENTITIES_PER_GROUP * scale
    numbers = rng.choice(10000, size=per_group * len(GROUPS), replace=False)
    people: list[Person] = []
    k = 0
    for group in GROUPS:
        for j in range(per_group):
            woman = j % 2 == 1
            pid = f"id{int(numbers[k]):05d}"
            k += 1
            prng = rng_for(seed, "person", pid)
            fps = FPS_CHOICES[int(prng.integers(len(FPS_CHOICES)))]
            rate, channels = AUDIO_CHOICES[int(prng.integers(len(AUDIO_CHOICES)))]
            people.append(Person(
                id=pid, group=group, gender="women" if woman else "men",
                clip=f"{int(prng.integers(0, 1000)):05d}",
                look=sample_look(prng, STYLES[group], woman),
                voice=sample_voice(prng, woman),
                fps=fps, rate=rate, channels=channels,
                duration=round(float(prng.uniform(2.0, 3.0)), 2),
            ))
    by_group: dict[str, list[Person]] = {}
    for p in people:
        by_group.setdefault(p.group, []).append(p)
    dup_quota = {"African": scale}
    clips: dict[str, list[Clip]] = {}
    for p in people:
        prng = rng_for(seed, "targets", p.id)
        mates = [q for q in by_group[p.group] if q.id != p.id]
        same = [q for q in mates if q.gender == p.gender] or mates

        def pick(pool=same, prng=prng):
            return pool[int(prng.integers(len(pool)))].id

        c = p.clip
        d = f"FakeAVCeleb/{{}}/{p.group}/{p.gender}/{p.id}"

        def row(type_, method, file, t1="-", t2="-", d=d, p=p):
            return (p.id, t1, t2, method, LETTER[type_], type_, p.group, p.gender, file,
                    d.format(type_))

        t_wl, t_fs, t_gan, v_rtvc, v_wl = pick(), pick(), pick(), pick(), pick()
        t_fs2, v_fs2, t_gan2, v_gan2 = pick(), pick(), pick(), pick()
        yt = [_youtube_id(prng) for _ in range(4)]
        items = [
            Clip(REAL, "real", f"{c}.mp4", "real", rows=(row(REAL, "real", f"{c}.mp4"),)),
            Clip(RVFA, "rtvc", f"{c}_fake.mp4", "rtvc", voice=v_rtvc,
                 rows=(row(RVFA, "rtvc", f"{c}_fake.mp4", "fake.mp4"),)),
            Clip(FVRA, "wav2lip", f"{c}_{t_wl}_wavtolip.mp4", "wav2lip-real", voice=t_wl,
                 rows=(row(FVRA, "wav2lip", f"{c}_{t_wl}_wavtolip.mp4", t_wl),)),
            Clip(FVRA, "faceswap", f"{c}_{t_fs}_{yt[0]}_faceswap.mp4", "faceswap", face=t_fs,
                 rows=(row(FVRA, "faceswap", f"{c}_{t_fs}_{yt[0]}_faceswap.mp4", t_fs),)),
            Clip(FVRA, "fsgan", f"{c}_{t_gan}_{yt[1]}.mp4", "fsgan", face=t_gan,
                 rows=(row(FVRA, "fsgan", f"{c}_{t_gan}_{yt[1]}.mp4", t_gan),)),
        ]
        if p.gender == "women" and dup_quota.get(p.group, 0) > 0:
            # FakeAVCeleb's quirk: a faceswap-wav2lip file named like the wav2lip one, listed
            # twice (first as faceswap-wav2lip, then as wav2lip); the file is the former
            dup_quota[p.group] -= 1
            name = f"{c}_{v_wl}_wavtolip.mp4"
            items.append(Clip(FVFA, "faceswap-wav2lip", name, "faceswap-wl", face=v_wl,
                              voice=v_wl,
                              rows=(row(FVFA, "faceswap-wav2lip", name, v_wl),
                                    row(FVFA, "wav2lip", name, v_wl))))
        else:
            fs_name = f"{c}_{t_fs2}_{yt[2]}_faceswap_{v_fs2}_wavtolip.mp4"
            items.append(Clip(FVFA, "faceswap-wav2lip", fs_name, "faceswap-wl", face=t_fs2,
                              voice=v_fs2, rows=(row(FVFA, "faceswap-wav2lip", fs_name, t_fs2),)))
            wl_name = f"{c}_{v_wl}_wavtolip.mp4"
            items.append(Clip(FVFA, "wav2lip", wl_name, "wav2lip-fake", voice=v_wl,
                              rows=(row(FVFA, "wav2lip", wl_name, v_wl),)))
        gan_name = f"{c}_{t_gan2}_{yt[3]}_{v_gan2}_wavtolip.mp4"
        items.append(Clip(FVFA, "fsgan-wav2lip", gan_name, "fsgan-wl", face=t_gan2, voice=v_gan2,
                          rows=(row(FVFA, "fsgan-wav2lip", gan_name, t_gan2, v_gan2),)))
        clips[p.id] = items
    return people, clips


def metadata_csv(people: list[Person], clips: dict[str, list[Clip]]) -> bytes:
    """meta_data.csv in the official form: nine-name header ending with a comma, ten values
    per row, CRLF line endings; rows grouped by type as in the real file (D, C, B, A)."""
    buf = io.StringIO()
    buf.write(HEADER + "\r\n")
    writer = csv.writer(buf, lineterminator="\r\n")
    for type_ in (FVFA, FVRA, RVFA, REAL):
        for p in people:
            for clip in clips[p.id]:
                if clip.type == type_:
                    writer.writerows(clip.rows)
    return buf.getvalue().encode("utf-8")


def voxceleb_txt(p: Person, rng: np.random.Generator) -> str:
    lines = [f"Identity  : \t{p.id}", f"Reference : \t{_youtube_id(rng)}", "Offset    : \t0",
             f"FV Conf   : \t{rng.uniform(5, 15):.3f}\t(1)", "", "FRAME \tX \tY \tW \tH "]
    for k in range(1, 6):
        lines.append(f"{k:06d} \t{int(rng.integers(80, 120))} \t{int(rng.integers(30, 60))} "
                     f"\t{int(rng.integers(90, 110))} \t{int(rng.integers(90, 110))} ")
    return "\n".join(lines) + "\n"


# -- rendering ---------------------------------------------------------------------------


def _scene(look: Look) -> Scene:
    s = FRAME_SIZE
    return Scene(look, s, s, Placement(s * 0.5, s * 0.5, s * 0.29), body=True)


def render_person(task: Task) -> list[str]:
    """Write every clip of one identity; return the relative paths written."""
    from avbench.datasets.synth.writer import write_av

    p, seed = task.person, task.seed
    out = Path(task.out)
    times = frame_times(p.duration, p.fps)
    rng = rng_for(seed, "clip", p.id, "real")
    plan_real = V.plan_syllables(rng, p.duration, p.voice)
    audio_real = V.speech(rng, plan_real, p.voice, p.duration)
    open_real, width_real = V.mouth_track(plan_real, p.duration, times)
    scene = _scene(p.look)
    # a face-tracked crop: the head stays nearly still in the frame
    motion = sample_motion(rng, times, amp_px=0.02 * FRAME_SIZE, amp_deg=1.0)
    frames_real = render(scene, open_real, width_real, motion, rng_for(seed, "noise", p.id))
    blur = 0.010 * FRAME_SIZE

    def cloned(voice_id: str, key: str):
        crng = rng_for(seed, "clip", p.id, key)
        base = task.voices[voice_id]
        # a cloned voice: close to the target speaker's, not equal (SV2TTS's speaker
        # embedding is approximate)
        v = replace(base, f0=base.f0 * crng.uniform(0.92, 1.08),
                    formant_scale=base.formant_scale * crng.uniform(0.97, 1.03),
                    breath=0.0, open_quotient=0.32)
        pl = V.plan_syllables(crng, p.duration, v)
        return pl, V.speech(crng, pl, v, p.duration, vocoder=True)

    def lipsync(pl):
        # a lip-sync generator follows the audio, a little smoother and less articulated
        return V.mouth_track(pl, p.duration, times, smooth_s=0.045, gain=1.15)

    def swap_scene(donor_id: str, soft: bool):
        return Swapped(scene, _scene(swapped_look(p.look, task.looks[donor_id])), soft=soft)

    written = []
    for clip in task.clips:
        crng = rng_for(seed, "clip", p.id, clip.kind)
        if clip.kind == "real":
            frames, audio = frames_real, audio_real
        elif clip.kind == "rtvc":
            _, audio = cloned(clip.voice, clip.kind)
            frames = frames_real
        elif clip.kind == "wav2lip-real":
            tv = task.voices[clip.voice]
            pl = V.plan_syllables(crng, p.duration, tv)
            audio = V.speech(crng, pl, tv, p.duration)
            op, wd = lipsync(pl)
            frames = render(scene, op, wd, motion, crng, lipsync_blur=blur)
        elif clip.kind in ("faceswap", "fsgan"):
            audio = audio_real
            frames = render(swap_scene(clip.face, clip.kind == "fsgan"), open_real, width_real,
                            motion, crng)
        elif clip.kind == "wav2lip-fake":
            pl, audio = cloned(clip.voice, clip.kind)
            op, wd = lipsync(pl)
            frames = render(scene, op, wd, motion, crng, lipsync_blur=blur)
        elif clip.kind in ("faceswap-wl", "fsgan-wl"):
            pl, audio = cloned(clip.voice, clip.kind)
            op, wd = lipsync(pl)
            frames = render(swap_scene(clip.face, clip.kind == "fsgan-wl"), op, wd, motion, crng,
                            lipsync_blur=blur)
        else:  # pragma: no cover - plan() only makes the kinds above
            raise ValueError(clip.kind)
        rel = f"{clip.type}/{p.group}/{p.gender}/{p.id}/{clip.file}"
        write_av(out / rel, frames, V.to_format(audio, p.rate, p.channels), fps=p.fps,
                 sample_rate=p.rate)
        written.append(rel)
    return written
