"""Targets and the rich tables of ``avbench bench``."""

from __future__ import annotations

from typing import Any


def fmt_s(x: float | None) -> str:
    if x is None:
        return "-"
    if x >= 7200:
        return f"{x / 3600:.1f} h"
    if x >= 120:
        return f"{x / 60:.1f} min"
    if x >= 1:
        return f"{x:.2f} s"
    if x >= 1e-3:
        return f"{x * 1e3:.1f} ms"
    return f"{x * 1e6:.0f} µs"


def fmt_bytes(x: float | None) -> str:
    if x is None:
        return "-"
    if abs(x) >= 1 << 30:
        return f"{x / (1 << 30):.2f} GiB"
    return f"{x / (1 << 20):.0f} MiB"


def fmt_x(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def fmt_xm(x: float, m: float | None) -> str:
    """A paired-median ratio and, in brackets, the ratio of the fastest runs."""
    return fmt_x(x) if m is None else f"{x:.2f}x (min {m:.2f}x)"


def _num(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def fmt_rate(x: float | None) -> str:
    return "-" if x is None else f"{_num(x)} seg/s"


def fmt_gflop(x: float | None) -> str:
    return "-" if x is None else f"{x / 1e9:.1f} GFLOP"


def targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the performance issue: measured value, goal, met (None: not measured
    here or not applicable to this device / backbone)."""
    out: list[dict[str, Any]] = []
    cuda = str(doc["settings"]["device"]).startswith("cuda")
    full = not doc["settings"].get("smoke", False)  # a --smoke run is judged on nothing

    def add(name: str, value: Any, shown: str, goal: str, met: bool | None,
            note: str = "") -> None:
        out.append({"name": name, "value": value, "shown": shown, "goal": goal, "met": met,
                    "note": note})

    if doc.get("decode"):
        for d in doc["decode"].values():
            r = d["pipeline_vs_floor"]
            judged = d.get("judged", True)
            add(f"media pipeline / bare PyAV decode, {d['source']}", r, fmt_x(r), "<= 1.6x",
                r <= 1.6 if judged else None, "" if judged else d.get("why_not_judged", ""))
    if doc.get("cache"):
        c = doc["cache"]
        add("prepared cache, MB per second of video (audio included)", c["mb_per_s"],
            f"{c['mb_per_s']:.3f} MB/s", "<= 0.47 MB/s (1/8 of raw)", c["mb_per_s"] <= 0.47)
        add("prepared cache, mean PSNR against the pipeline's frames", c["psnr_db_mean"],
            f"{c['psnr_db_mean']:.1f} dB", ">= 40 dB", c["psnr_db_mean"] >= 40)
        r = c["segments_per_core_s"]
        add("random 16-frame segment read (uint8 RGB), per core", r, f"{r:.0f}/s", ">= 100/s",
            r >= 100)
        m = c["fakeavceleb_prepare_minutes"]
        add(f"prepare FakeAVCeleb on {c['fakeavceleb_cores']} cores (projected)", m,
            f"{m:.1f} min", "< 10 min", m < 10)
    model = doc.get("model")
    if model:
        tr, ev = model["train"], model["eval"]
        cpu_full = (not cuda) and full
        why = ("" if cpu_full else "not judged on a --smoke run" if not full else
               "the target is for the CPU")
        name = model.get("detector", "the detector")
        if "ratio" in tr:  # the detector offers a floor
            add(f"{name} train step / floor", tr["ratio"], fmt_x(tr["ratio"]),
                "<= 1.15x", tr["ratio"] <= 1.15 if cpu_full else None, why)
            add(f"{name} evaluation / floor", ev["ratio"], fmt_x(ev["ratio"]),
                "<= 1.1x", ev["ratio"] <= 1.1 if cpu_full else None, why)
        mfu = tr.get("mfu")
        if cuda:
            big = model["batch"] >= 32
            add("bf16 train step, model FLOPs utilisation", mfu,
                "-" if mfu is None else f"{100 * mfu:.1f}%", ">= 35% (batch 32)",
                (mfu >= 0.35 if mfu is not None and big and full else None),
                "" if mfu is not None else "peak TFLOP/s unknown: pass --peak-tflops")
        else:
            add("bf16 train step, model FLOPs utilisation", None, "not measured",
                ">= 35% (H100, batch 32)", None, "needs a CUDA device")
    proj = doc.get("projection")
    if proj:
        s = proj["seconds"]
        add(f"projected {proj.get('epochs', 15)}-epoch intra training", s, fmt_s(s),
            "< 20 min (one H100)",
            s < 1200 if cuda and full and proj["batch"] >= 32 else None,
            "" if cuda else "projection for this device; the target is for one H100")
    lvm = doc.get("loader_vs_model")
    if lvm:
        add("loader keeps up with the training step", lvm["headroom"],
            f"{_num(lvm['headroom'])}x headroom", ">= 1x", lvm["keeps_up"])
    if doc.get("cli"):
        h = doc["cli"]["help_s"]
        add("avbench --help", h, fmt_s(h), "< 0.5 s", h < 0.5)
    return out


def _status(met: bool | None) -> str:
    return {True: "[green]met[/]", False: "[red]missed[/]", None: "[dim]n/a[/]"}[met]


def render(doc: dict[str, Any], console: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    m, st = doc["machine"], doc["settings"]
    det = st.get("detector", "?") + "".join(f" {k}={v}" for k, v in st.get("set", {}).items())
    mode = " | smoke" if st.get("smoke") else " | quick" if st["quick"] else ""
    console.print(
        f"[bold]avbench bench[/] {m['date']} | {m['machine']}, {m['cores']} cores ({escape(m['cpu'])})"
        f"{', ' + escape(m['gpu']) if m.get('gpu') else ', no GPU used'} | torch {m['torch']}, "
        f"{m['torch_threads']} threads | device {st['device']}, detector {escape(det)}, "
        f"batch {st['batch']}{mode} | load {m.get('load_before')} -> {m.get('load_after')}"
    )
    t = Table(show_lines=False, caption=(
        "ratio: median over repetitions (decode: over videos x repetitions) of the ratio of "
        "contenders run in turn; min: ratio of each one's fastest run"))
    for col in ("measurement", "value", "compared with", "ratio"):
        t.add_column(col, justify="left" if col == "measurement" else "right")

    dec = doc.get("decode")
    if dec:
        t.add_section()
        for d in dec.values():
            src = d["source"]
            t.add_row(f"[bold]{src}[/]: decode only (PyAV, one thread, nothing converted) = floor",
                      fmt_s(d["floor_s"]) + "/video", "", "")
            t.add_row("  PyAV decode + to_ndarray (RGB at source size)", fmt_s(d["naive_s"]) + "/video",
                      "", "")
            t.add_row("  media pipeline (decode, 25 fps, 16 kHz mono, resize, segments)",
                      fmt_s(d["pipeline_s"]) + "/video", "floor",
                      fmt_xm(d["pipeline_vs_floor"], d.get("pipeline_vs_floor_min")))
            t.add_row("    the same in CPU time", fmt_s(d["pipeline_cpu_s"]) + "/video",
                      "floor " + fmt_s(d["floor_cpu_s"]), fmt_x(d["pipeline_vs_floor_cpu"]))
            t.add_row("    against PyAV decode + to_ndarray", "", "", fmt_x(d["pipeline_vs_naive"]))
        first = next(iter(dec.values()))
        t.add_row(f"  ({first['clips']} clips of {first['clip_seconds']:g} s per format, h264 + AAC)",
                  "", "", "")
    c = doc.get("cache")
    if c:
        from avbench.bench.cache import FAKEAVCELEB_MEAN_SECONDS, H100_SEGMENTS_PER_S

        t.add_section()
        t.add_row(f"cache {c['format']}: {c['clips']} clips, {c['frame_size']}, "
                  f"{c['seconds_of_video']:.0f} s", "", "", "")
        t.add_row(f"  ({c['footage']})", "", "", "")
        t.add_row("cache size per second of video", f"{c['mb_per_s']:.3f} MB/s",
                  f"raw {c['raw_mb_per_s']:.2f} MB/s", f"{c['ratio_to_raw']:.3f} of raw")
        t.add_row("cache PSNR against the pipeline's frames",
                  f"{c['psnr_db_mean']:.1f} dB mean", f"min {c['psnr_db_min']:.1f} dB", "")
        t.add_row("random segment read, any start (per core)",
                  f"{c['segments_per_core_s']:.0f}/s", f"one H100 needs {H100_SEGMENTS_PER_S:,}/s",
                  f"{c['cores_per_h100']:.1f} cores")
        t.add_row("segment read at a keyframe (evaluation)",
                  f"{c['keyframe_segments_per_core_s']:.0f}/s", "", "")
        t.add_row("prepare a clip (decode + encode + write), CPU",
                  fmt_s(c["prepare_cpu_s_per_clip"]) + "/clip",
                  "decode alone " + fmt_s(c["decode_cpu_s_per_clip"]),
                  f"{c['prepare_clips_per_core_s']:.1f} clips/s per core")
        t.add_row("check an entry (size + sha256)", fmt_s(c["verify_cpu_s_per_clip"]) + "/clip",
                  "", "")
        t.add_row(f"FakeAVCeleb ({c['fakeavceleb_clips']:,} clips x "
                  f"{FAKEAVCELEB_MEAN_SECONDS:g} s) on {c['fakeavceleb_cores']} cores", f"{c['fakeavceleb_prepare_minutes']:.1f} min",
                  f"disk {c['fakeavceleb_disk_gb']:.1f} GB",
                  f"raw uint8: {c['fakeavceleb_raw_disk_gb']:.0f} GB")
    ld = doc.get("loader")
    if ld:
        t.add_section()
        t.add_row(f"loader, main process (batch {ld['batch']})",
                  fmt_rate(ld["main_process_segments_per_s"]), "", "")
        t.add_row("loader, per worker process", fmt_rate(ld["one_worker_segments_per_s"]), "", "")
        t.add_row(f"loader, the engine's {ld['engine_workers']} worker(s)",
                  fmt_rate(ld["engine_workers_segments_per_s"]), "", "")
    lvm = doc.get("loader_vs_model")
    if lvm:
        t.add_row("training step consumes", fmt_rate(lvm["train_consumes_segments_per_s"]),
                  "loader delivers", f"{_num(lvm['headroom'])}x headroom")
    mo = doc.get("model")
    if mo:
        _model_rows(t, mo)
    mem = doc.get("memory")
    if mem:
        t.add_section()
        t.add_row(f"peak memory, training step (batch {mem['batch']})", fmt_bytes(mem["train_peak_bytes"]),
                  "", "")
        t.add_row(f"peak memory, evaluation batch (batch {mem['batch']})",
                  fmt_bytes(mem["eval_peak_bytes"]), "", "")
    pr = doc.get("projection")
    if pr:
        t.add_section()
        t.add_row(f"projected {pr['epochs']}-epoch intra training ({pr['segments']:,} segments, "
                  f"batch {pr['batch']})",
                  fmt_s(pr["seconds"]), "loader-bound" if pr["loader_bound"] else "model-bound", "")
    cl = doc.get("cli")
    if cl:
        t.add_section()
        t.add_row(f"{cl['command']} (median of {len(cl['runs_s'])})", fmt_s(cl["help_s"]), "", "")
    console.print(t)

    tg = Table(title="targets")
    for col in ("target", "measured", "goal", "status"):
        tg.add_column(col, justify="left" if col == "target" else "right")
    for row in doc["targets"]:
        status = _status(row["met"])
        if row["note"]:
            status += f" [dim]({escape(row['note'])})[/]"
        tg.add_row(escape(row["name"]), escape(row["shown"]), escape(row["goal"]), status)
    console.print(tg)


def _model_rows(t: Any, mo: dict[str, Any]) -> None:
    """The model section: the detector's step and evaluation, against its floor when it has
    one, each reference beside it, FLOPs and throughput."""
    from rich.markup import escape

    tr, ev = mo["train"], mo["eval"]
    floor = tr.get("floor")
    t.add_section()
    if floor:
        t.add_row(f"floor: {escape(floor)}", "", "", "")

    def refs(part: dict[str, Any], per: str) -> None:
        for ref in part.get("references", []):
            if ref["timed"]:
                t.add_row(f"  floor, {escape(ref['name'])}", fmt_s(ref[f"s_per_{per}"]) + f"/{per}",
                          "floor", fmt_x(ref["vs_floor"]))

    def flop_refs(part: dict[str, Any], per: str) -> None:
        for ref in part.get("references", []):
            t.add_row(f"  against {escape(ref['name'])}", "",
                      fmt_gflop(ref[f"flops_per_{per}"]), fmt_x(ref["flop_ratio"]))

    t.add_row(f"train step, {escape(mo.get('detector', ''))} ({mo['amp']}, batch {mo['batch']})",
              fmt_s(tr["s_per_clip"]) + "/clip",
              "floor " + fmt_s(tr["floor_s_per_clip"]) if floor else "",
              fmt_xm(tr["ratio"], tr.get("ratio_of_min")) if floor else "")
    if tr.get("page_faults_per_step") is not None:
        t.add_row("  page faults per training step (memory handed to the process)",
                  f"{tr['page_faults_per_step']:,}", "", "")
    refs(tr, "clip")
    t.add_row("train FLOPs (forward + backward)", fmt_gflop(tr["flops_per_clip"]) + "/clip",
              "floor " + fmt_gflop(tr["floor_flops_per_clip"]) if floor else "",
              fmt_x(tr["flop_ratio"]) if floor else "")
    flop_refs(tr, "clip")
    peak = tr.get("peak_tflops")
    mfu = tr.get("mfu")
    t.add_row("train achieved throughput", f"{1000 * tr['achieved_tflops']:.1f} GFLOP/s",
              f"peak {peak:g} TFLOP/s" if peak else "peak unknown",
              f"MFU {100 * mfu:.1f}%" if mfu is not None else "-")
    t.add_row("evaluation", fmt_s(ev["s_per_segment"]) + "/segment",
              "floor " + fmt_s(ev["floor_s_per_segment"]) if floor else "",
              fmt_xm(ev["ratio"], ev.get("ratio_of_min")) if floor else "")
    refs(ev, "segment")
    t.add_row("evaluation FLOPs", fmt_gflop(ev["flops_per_segment"]) + "/segment",
              "floor " + fmt_gflop(ev["floor_flops_per_segment"]) if floor else "",
              fmt_x(ev["flop_ratio"]) if floor else "")
    flop_refs(ev, "segment")
