"""The report's charts: small pure functions from plain data to PNG bytes (matplotlib, Agg).

No TensorFlow here. Text from data (class names, phase names) goes through
``_plain`` so a class called ``$x$`` is shown as typed, not as mathtext.
"""

from __future__ import annotations

import io
import math
from collections import Counter
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import font_manager
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter
from PIL import Image, ImageDraw, ImageFont

RIGHT_COLOR = "#1a7f37"
WRONG_COLOR = "#cf222e"
SPLIT_COLORS = {"train": "#0969da", "eval": "#bf8700", "test": "#8250df"}
PHASE_COLORS = ("#ddf4ff", "#fff8c5", "#dafbe1", "#ffebe9")
STYLE = {"font.size": 10, "axes.titlesize": 11, "figure.dpi": 100}


def _plain(text: str) -> str:
    """Data text for matplotlib: '$' would start mathtext (turning it off globally breaks log-axis ticks)."""
    return str(text).replace("$", r"\$")


def to_png(figure: Figure) -> bytes:
    """Renders and closes a figure (closing matters: pyplot keeps every open figure)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight", facecolor="white")
    plt.close(figure)
    return buffer.getvalue()


def _figure(width: float, height: float, **subplots: Any) -> tuple[Figure, Any]:
    """A figure and its axes; callers hold ``plt.rc_context(STYLE)`` while drawing."""
    return plt.subplots(figsize=(width, height), **subplots)


def class_counts(per_split: Mapping[str, Sequence[int]], class_names: Sequence[str]) -> bytes:
    """Images per class, one panel per split with its own scale (imbalance shows in small splits too)."""
    positions = np.arange(len(class_names))
    with plt.rc_context(STYLE):
        figure, axes = _figure(
            max(7.0, 0.7 * len(class_names) + 2),
            1.7 * len(per_split) + 1.0,
            nrows=len(per_split),
            sharex=True,
            squeeze=False,
        )
        for index, (axis, (split, counts)) in enumerate(zip(axes[:, 0], per_split.items(), strict=True)):
            bars = axis.bar(positions, counts, 0.7, color=SPLIT_COLORS.get(split, f"C{index}"))
            if len(class_names) <= 30:
                axis.bar_label(bars, fontsize=8, padding=1)
            axis.axhline(np.mean(counts), color="#57606a", ls="--", lw=0.8)
            axis.set_ylabel(f"{_plain(split)}\n{sum(counts):,} images")
            axis.set_ylim(0, max(max(counts, default=0), 1) * 1.2)
            axis.spines[["top", "right"]].set_visible(False)
        axes[-1, 0].set_xticks(
            positions,
            [_plain(n) for n in class_names],
            rotation=35 if len(class_names) > 6 else 0,
            ha="right",
        )
        axes[-1, 0].set_xlim(-0.5, len(class_names) - 0.5)
        figure.suptitle("Images per class in each split (dashed: the split's mean per class)")
        figure.tight_layout()
        return to_png(figure)


GRID_THUMB = 112  # px: small images are enlarged (nearest neighbour) so pixels stay visible
GRID_PAD = 10
GRID_FONT_SIZE = 13
GRID_FRAME = 4
GRID_MAX_CAPTION = 190  # px: longer captions are cut with an ellipsis


def _font(size: int) -> ImageFont.FreeTypeFont:
    """DejaVu Sans, which matplotlib ships, so text renders the same on every machine."""
    return ImageFont.truetype(font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans")), size)


def _fit(text: str, font: ImageFont.FreeTypeFont, width: float) -> str:
    """``text`` cut with an ellipsis to fit ``width`` pixels."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"


def _thumbnail(pixels: np.ndarray) -> Image.Image:
    image = Image.fromarray(np.asarray(pixels, dtype=np.uint8))
    scale = GRID_THUMB / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.NEAREST if scale >= 1 else Image.LANCZOS)


def image_grid(
    images: Sequence[np.ndarray | None],
    titles: Sequence[str],
    *,
    columns: int = 8,
    title_colors: Sequence[str] | None = None,
    row_labels: Sequence[str] | None = None,
) -> bytes:
    """A grid of uint8 RGB images with a caption above each (coloured, and framed, when asked).

    With ``row_labels`` each row is one group (e.g. a class) and ``images`` is
    laid out row by row, ``columns`` per row; ``None`` leaves a cell blank.
    Drawn with PIL: one matplotlib axes per thumbnail costs ~50 ms each.
    """
    font = _font(GRID_FONT_SIZE)
    line_height = GRID_FONT_SIZE + 4
    lines = max((t.count("\n") + 1 for t in titles if t), default=1)
    label_width = int(max(font.getlength(label) for label in row_labels)) + 2 * GRID_PAD if row_labels else 0
    widest = max((font.getlength(line) for t in titles if t for line in t.split("\n")), default=0)
    cell_width = int(min(max(GRID_THUMB + 2 * GRID_FRAME, widest + 4), GRID_MAX_CAPTION)) + GRID_PAD
    cell_height = lines * line_height + GRID_THUMB + 2 * GRID_FRAME + GRID_PAD
    rows = len(row_labels) if row_labels else max(1, math.ceil(len(images) / columns))
    canvas = Image.new(
        "RGB", (label_width + columns * cell_width + GRID_PAD, rows * cell_height + GRID_PAD), "white"
    )
    draw = ImageDraw.Draw(canvas)
    for row in range(rows):
        top = GRID_PAD + row * cell_height
        if row_labels:
            label = row_labels[row]
            draw.text(
                (label_width - GRID_PAD - font.getlength(label), top + lines * line_height + GRID_THUMB / 2),
                label,
                fill="black",
                font=font,
                anchor="lm",
            )
    for index, pixels in enumerate(images):
        if pixels is None:
            continue
        row, column = divmod(index, columns)
        left = label_width + GRID_PAD + column * cell_width
        top = GRID_PAD + row * cell_height
        color = title_colors[index] if title_colors else "black"
        for number, line in enumerate(titles[index].split("\n")):
            draw.text(
                (left + cell_width / 2 - GRID_PAD / 2, top + number * line_height),
                _fit(line, font, cell_width - GRID_PAD),
                fill=color,
                font=font,
                anchor="ma",
            )
        thumb = _thumbnail(pixels)
        box_top = top + lines * line_height
        frame_left = left + (cell_width - GRID_PAD - GRID_THUMB) // 2 - GRID_FRAME
        if title_colors:  # a coloured frame reads faster than the caption
            draw.rectangle(
                (
                    frame_left,
                    box_top,
                    frame_left + GRID_THUMB + 2 * GRID_FRAME - 1,
                    box_top + GRID_THUMB + 2 * GRID_FRAME - 1,
                ),
                fill=color,
            )
        canvas.paste(
            thumb,
            (
                frame_left + GRID_FRAME + (GRID_THUMB - thumb.width) // 2,
                box_top + GRID_FRAME + (GRID_THUMB - thumb.height) // 2,
            ),
        )
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def image_sizes(sizes: Counter, model_size: int | None) -> bytes:
    """Width against height of the ingested images (area: how many), the model's input size marked."""
    points = sizes.most_common()
    widths = np.array([width for (width, _), _ in points])
    heights = np.array([height for (_, height), _ in points])
    counts = np.array([count for _, count in points])
    with plt.rc_context(STYLE):
        figure, axis = _figure(5.5, 3.8)
        axis.scatter(
            widths, heights, s=30 + 600 * np.sqrt(counts / counts.max()), alpha=0.55, color="#0969da"
        )
        if len(points) <= 6:  # few sizes: say how many of each
            for (width, height), count in points:
                axis.annotate(
                    f"{width}×{height}: {count:,}",
                    (width, height),
                    textcoords="offset points",
                    xytext=(12, -14),
                    fontsize=9,
                )
        if model_size:
            axis.scatter(
                [model_size],
                [model_size],
                marker="x",
                s=90,
                color=WRONG_COLOR,
                label=f"model input {model_size}×{model_size}",
            )
        top = max(widths.max(), heights.max(), model_size or 0) * 1.25
        axis.plot([0, top], [0, top], color="#8c959f", lw=0.8, ls=":", label="square")
        axis.set_xlim(0, top)
        axis.set_ylim(0, top)
        axis.set_xlabel("width (px)")
        axis.set_ylabel("height (px)")
        axis.set_title("Image sizes as ingested (dot area: how many images)")
        axis.legend(frameon=False, loc="upper left", fontsize=9)
        axis.spines[["top", "right"]].set_visible(False)
        figure.tight_layout()
        return to_png(figure)


def _mark_phases(axis: Any, phases: Sequence[Mapping[str, Any]]) -> None:
    """Shades each training phase and names it at the top of the axis."""
    for index, phase in enumerate(phases):
        start = phase["first_epoch"] + 0.5  # epochs are drawn 1-based, a phase spans [first+1, last]
        end = phase["first_epoch"] + phase["epochs"] + 0.5
        axis.axvspan(start, end, color=PHASE_COLORS[index % len(PHASE_COLORS)], alpha=0.6, lw=0)
        axis.text(
            (start + end) / 2,
            0.98,
            _plain(phase_title(phase["name"])),
            transform=axis.get_xaxis_transform(),
            ha="center",
            va="top",
            fontsize=9,
            color="#57606a",
        )


def phase_title(name: str) -> str:
    """Human names of the Trainer's phases (warmup, finetune, finetune-2, scratch)."""
    titles = {"warmup": "warm-up (frozen backbone)", "scratch": "training from scratch"}
    if name.startswith("finetune"):
        stage = name.partition("-")[2]
        return "fine-tuning" + (f" stage {stage}" if stage else "")
    return titles.get(name, name)


def training_curves(epochs: Sequence[Mapping[str, Any]], phases: Sequence[Mapping[str, Any]]) -> bytes:
    """Loss and accuracy, train (solid) and validation (dashed), per epoch, phases shaded."""
    x = [e["epoch"] + 1 for e in epochs]
    with plt.rc_context(STYLE):
        figure, axes = _figure(11, 3.6, ncols=2)
        for axis, metric, title in ((axes[0], "loss", "Loss"), (axes[1], "accuracy", "Accuracy")):
            _mark_phases(axis, phases)
            for prefix, label, style in (("", "training", "-"), ("val_", "validation", "--")):
                values = [e.get(prefix + metric) for e in epochs]
                if any(v is not None for v in values):
                    axis.plot(
                        x,
                        [np.nan if v is None else v for v in values],
                        style,
                        marker="o",
                        ms=4,
                        label=label,
                        color="#0969da" if not prefix else "#bf3989",
                    )
            axis.set_title(title)
            axis.set_xlabel("epoch")
            axis.set_xticks(x)
            axis.set_xlim(0.5, max(x) + 0.5)
            axis.legend(frameon=False, loc="best")
            axis.spines[["top", "right"]].set_visible(False)
        axes[1].set_ylim(0, 1.05)
        figure.tight_layout()
        return to_png(figure)


def learning_rate_schedule(epochs: Sequence[Mapping[str, Any]], phases: Sequence[Mapping[str, Any]]) -> bytes:
    """The learning rate at the end of each epoch (log scale), phases shaded."""
    x = [e["epoch"] + 1 for e in epochs]
    rates = [e.get("learning_rate", e.get("lr")) for e in epochs]
    with plt.rc_context(STYLE):
        figure, axis = _figure(11, 2.6)
        _mark_phases(axis, phases)
        axis.step(x, rates, where="mid", marker="o", ms=4, color="#0969da")
        axis.set_yscale("log")
        # Label the rates actually used: a constant rate would otherwise sit between unlabelled decades.
        used = sorted({r for r in rates if r})
        axis.set_yticks(used, [f"{r:.3g}" for r in used])
        axis.minorticks_off()
        axis.set_ylim(min(used) / 2, max(used) * 2)
        axis.set_xticks(x)
        axis.set_xlim(0.5, max(x) + 0.5)
        axis.set_xlabel("epoch")
        axis.set_ylabel("learning rate")
        axis.spines[["top", "right"]].set_visible(False)
        figure.tight_layout()
        return to_png(figure)


def lr_finder(
    rates: Sequence[float], losses: Sequence[float], smoothed: Sequence[float] | None, suggested: float | None
) -> bytes:
    """The learning-rate range test: loss against a growing rate (log scale), the suggestion marked.

    Diverged (non-finite) losses are left out; the y-axis stops short of the
    blow-up so the useful descent stays readable.
    """
    finite = [(r, loss) for r, loss in zip(rates, losses, strict=True) if math.isfinite(loss)]
    curve = [(r, v) for r, v in zip(rates, smoothed or [], strict=False) if math.isfinite(v)]
    with plt.rc_context(STYLE):
        figure, axis = _figure(8, 3.4)
        axis.plot(
            [r for r, _ in finite], [v for _, v in finite], color="#8c959f", lw=1, label="loss per batch"
        )
        if curve:
            axis.plot(
                [r for r, _ in curve], [v for _, v in curve], color="#0969da", lw=2, label="smoothed loss"
            )
        if suggested:
            axis.axvline(suggested, color=WRONG_COLOR, ls="--", label=f"suggested {suggested:.2g}")
        reference = [v for _, v in curve] or [v for _, v in finite]
        axis.set_ylim(0, max(reference[0] * 1.5, min(reference) * 2))
        axis.set_xscale("log")
        axis.set_xlabel("learning rate")
        axis.set_ylabel("training loss")
        axis.set_title("Learning-rate range test")
        axis.legend(frameon=False, loc="upper left")
        axis.spines[["top", "right"]].set_visible(False)
        figure.tight_layout()
        return to_png(figure)


def confusion_heatmap(matrix: Sequence[Sequence[int]], class_names: Sequence[str]) -> bytes:
    """Row-normalized confusion matrix (colour = share of the true class), counts written in."""
    counts = np.asarray(matrix, dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    size = len(class_names)
    with plt.rc_context(STYLE):
        figure, axis = _figure(max(5.0, 0.62 * size + 2.5), max(4.0, 0.55 * size + 1.8))
        image = axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        if size <= 25:  # beyond that the numbers are unreadable; the HTML table has them
            for (row, column), count in np.ndenumerate(counts):
                if count:
                    axis.text(
                        column,
                        row,
                        f"{int(count)}",
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if shares[row, column] > 0.5 else "black",
                    )
        axis.set_xticks(range(size), [_plain(n) for n in class_names], rotation=45, ha="right")
        axis.set_yticks(range(size), [_plain(n) for n in class_names])
        axis.set_xlabel("predicted class")
        axis.set_ylabel("true class")
        axis.set_title("Confusion matrix (colour: share of the true class; numbers: images)")
        figure.colorbar(image, ax=axis, fraction=0.04, pad=0.02)
        figure.tight_layout()
        return to_png(figure)


def accuracy_bars(entries: Sequence[tuple[str, float]], highlight: str) -> bytes:
    """Horizontal bars of accuracy: the model next to its baselines."""
    with plt.rc_context(STYLE):
        figure, axis = _figure(8, 0.5 * len(entries) + 0.9)
        names = [_plain(name) for name, _ in entries][::-1]
        values = [value for _, value in entries][::-1]
        colors = ["#0969da" if name == _plain(highlight) else "#8c959f" for name in names]
        bars = axis.barh(names, values, color=colors)
        axis.bar_label(bars, labels=[f"{v:.1%}" for v in values], padding=3)
        axis.set_xlim(0, 1.1)
        axis.xaxis.set_major_formatter(PercentFormatter(1.0))
        axis.set_title("Accuracy on the evaluated split")
        axis.spines[["top", "right"]].set_visible(False)
        figure.tight_layout()
        return to_png(figure)


def label_distributions(current: Mapping[str, float], baseline: Mapping[str, float]) -> bytes:
    """Grouped bars: each class's share of the training images, this data next to the baseline's."""
    names = sorted(set(current) | set(baseline))
    with plt.rc_context(STYLE):
        figure, axis = _figure(max(6.0, 0.6 * len(names) + 2), 3.6)
        positions = np.arange(len(names))
        width = 0.4
        before = [baseline.get(n, 0.0) for n in names]
        after = [current.get(n, 0.0) for n in names]
        axis.bar(positions - width / 2, before, width, label="previously trained", color="#8c959f")
        axis.bar(positions + width / 2, after, width, label="this run", color="#0969da")
        axis.set_xticks(positions, [_plain(n) for n in names], rotation=30, ha="right")
        axis.yaxis.set_major_formatter(PercentFormatter(1.0))
        axis.set_title("Class distribution of the training split")
        axis.legend(frameon=False)
        axis.spines[["top", "right"]].set_visible(False)
        figure.tight_layout()
        return to_png(figure)
