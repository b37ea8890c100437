"""Bar charts as geometry for server-rendered SVG: the template draws the
rectangles (escaped like any other output); no script, no library."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: str
    kind: str  # css class: the series it belongs to


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    zero: float  # the y of the zero line
    bars: tuple[Bar, ...]
    labels: tuple[tuple[float, str], ...]  # (x centre, text) under each group


def bar_chart(
    groups: Sequence[tuple[str, Sequence[tuple[str, Decimal, str]]]],
    width: int = 720,
    height: int = 220,
) -> Chart:
    """Grouped bars: each group a label and its (series, value, value text) bars;
    negative values hang below the zero line."""
    values = [v for _, bars in groups for _, v, _ in bars]
    top = max([Decimal(0), *values])
    bottom = min([Decimal(0), *values])
    span = (top - bottom) or Decimal(1)
    plot = height - 20  # room for the labels underneath
    zero = float(top / span) * plot
    slot = width / max(1, len(groups))
    out: list[Bar] = []
    labels: list[tuple[float, str]] = []
    for n, (label, bars) in enumerate(groups):
        each = slot * 0.8 / max(1, len(bars))
        for m, (kind, value, text) in enumerate(bars):
            size = float(abs(value) / span) * plot
            y = zero - size if value >= 0 else zero
            out.append(Bar(n * slot + slot * 0.1 + m * each, y, each, size, label, text, kind))
        labels.append((n * slot + slot / 2, label))
    return Chart(width, height, zero, tuple(out), tuple(labels))
