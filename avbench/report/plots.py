"""Figures of a report, drawn with matplotlib's Agg canvas (never a window, never pyplot's
global state), as PNG or SVG bytes that are the same for the same data.

matplotlib is imported here, inside the functions, so that importing this module (and the
CLI) stays light. Every figure is drawn under matplotlib's default style whatever the user's
matplotlibrc says, and written without a creation date or software version in its metadata
(SVG ids are salted with a fixed string), so the same numbers give the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

FORMATS = ("png", "svg")
DPI = 100
SVG_SALT = "avbench"
#: the order categories are listed in (others follow, sorted)
CATEGORY_ORDER = ("real", "RVFA", "FVRA-WL", "FVFA-WL", "FVFA-FS", "FVFA-GAN")


@contextmanager
def _style() -> Iterator[Any]:
    import matplotlib
    import matplotlib.style

    with matplotlib.rc_context():
        matplotlib.style.use("default")
        matplotlib.rcParams["svg.hashsalt"] = SVG_SALT
        matplotlib.rcParams["svg.fonttype"] = "path"  # no font on the reader's side needed
        yield matplotlib


def new_figure(width: float, height: float) -> Any:
    """A figure on an Agg canvas (call inside :func:`drawing`)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


@contextmanager
def drawing() -> Iterator[None]:
    """The style every figure of avbench is drawn (and saved) under."""
    with _style():
        yield


def to_bytes(fig: Any, fmt: str = "png") -> bytes:
    """The figure as ``png`` or ``svg`` bytes, without dates or versions in the metadata."""
    if fmt not in FORMATS:
        raise ValueError(f"figure format {fmt!r}: use {' or '.join(FORMATS)}")
    meta = {"Software": None} if fmt == "png" else {"Date": None, "Creator": None}
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=DPI, metadata=meta)
    return buf.getvalue()


def category_of(row: Any) -> str:
    """The category a video is plotted under: its ``category`` (``real`` for reals), else its
    type and method (FakeAVCeleb's FVRA face swaps belong to no category), else its label."""
    cat = str(row.get("category", "") or "")
    if cat and cat != "nan":
        return cat
    if int(row["label"]) == 0:
        return "real"
    parts = [str(row.get(k, "") or "") for k in ("type", "method")]
    parts = [p for p in parts if p and p != "nan"]
    return "/".join(parts) if parts else "fake"


def categories(df: Any) -> Any:
    """:func:`category_of` for every row of a scores frame (a pandas Series)."""
    return df.apply(category_of, axis=1)


def category_sort_key(name: str) -> tuple[int, str]:
    return (CATEGORY_ORDER.index(name) if name in CATEGORY_ORDER else len(CATEGORY_ORDER), name)


def roc_figure(title: str, curves: Sequence[tuple[str, Any, Any]]) -> bytes | None:
    """ROC curves of one fold, one per detector: ``curves`` are (detector, labels, scores).
    ``None`` when no curve can be drawn (one class only)."""
    import numpy as np
    from sklearn.metrics import roc_auc_score, roc_curve

    drawable = [(d, np.asarray(y, dtype=int), np.asarray(s, dtype=float))
                for d, y, s in curves if len(np.unique(np.asarray(y))) == 2]
    if not drawable:
        return None
    with drawing():
        fig = new_figure(4.6, 4.2)
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1], color="0.7", linestyle="--", linewidth=1, label="chance")
        for det, y, s in drawable:
            fpr, tpr, _ = roc_curve(y, s)
            ax.plot(fpr, tpr, linewidth=1.6,
                    label=f"{det} (AUC {100 * roc_auc_score(y, s):.1f})")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_xlabel("false positive rate (reals called fake)")
        ax.set_ylabel("true positive rate (fakes found)")
        ax.set_title(f"ROC: {title}", fontsize=10)
        ax.legend(loc="lower right", fontsize=8)
        ax.grid(alpha=0.3)
        return to_bytes(fig)


def histogram_figure(title: str, panels: Sequence[tuple[str, Any, Any]],
                     xlabel: str = "score P(fake)", bins: Any = None,
                     fmt: str = "png") -> bytes | None:
    """Per-category histograms, one panel per entry of ``panels`` (panel title, values,
    category of each value); each category's bars sum to 1, so categories of very different
    sizes can be compared. Scores use 20 bins over [0, 1]; other values (``bins`` None and
    values outside [0, 1]) 20 bins over their range. ``None`` when there is nothing to draw."""
    import numpy as np

    panels = [(t, np.asarray(v, dtype=float), np.asarray(c, dtype=object))
              for t, v, c in panels if len(v)]
    if not panels:
        return None
    if bins is None:
        lo = min(float(v.min()) for _, v, _ in panels)
        hi = max(float(v.max()) for _, v, _ in panels)
        bins = (np.linspace(0.0, 1.0, 21) if lo >= 0.0 and hi <= 1.0
                else np.linspace(lo, hi if hi > lo else lo + 1.0, 21))
    names = sorted({str(c) for _, _, cats in panels for c in cats}, key=category_sort_key)
    with drawing():
        import matplotlib

        colours = matplotlib.colormaps["tab10"]
        width = min(4.2 * len(panels), 13.0)
        fig = new_figure(width, 3.4)
        axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
        for ax, (panel, values, cats) in zip(axes, panels, strict=True):
            for k, name in enumerate(names):
                v = values[cats == name]
                if not len(v):
                    continue
                ax.hist(v, bins=bins, weights=np.full(len(v), 1.0 / len(v)), histtype="step",
                        linewidth=1.6, color=colours(k % 10), label=f"{name} (n={len(v)})")
            ax.set_title(panel, fontsize=10)
            ax.set_xlabel(xlabel)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="upper center")
        axes[0].set_ylabel("share of the category's videos")
        fig.suptitle(title, fontsize=10)
        return to_bytes(fig, fmt)
