"""The visit report's charts, drawn with ReportLab's own graphics from the summary module's figures:
daily blood-pressure means with the target band, the time-in-ranges bar, the AGP (percentiles by hour
of day) and the modal day (every valid reading on one 24-hour clock).

Colours follow the web app's charts: green for the target band, the consensus range colours for the
glucose ranges (Battelino 2019 [33] AGP report, clinical-rules.md §2.7).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final

from reportlab.graphics.shapes import Circle, Drawing, Line, Polygon, PolyLine, Rect, String
from reportlab.lib import colors
from reportlab.lib.colors import Color

from alerts.summaries import AgpHour, BloodPressureSummary, GlucoseRanges, GlucoseTarget
from api.reports.text import Language, Numbers, message
from api.reports.visit import ModalDayPoint
from vitals.units import GlucoseUnit, glucose_from_mg_dl

WIDTH: Final = 480.0
HEIGHT: Final = 170.0
_LEFT, _RIGHT, _BOTTOM, _TOP = 36.0, 8.0, 24.0, 16.0
FONT_SIZE: Final = 7.0

TARGET_BAND: Final = Color(0.80, 0.93, 0.82)
TARGET_LINE: Final = Color(0.18, 0.55, 0.27)
SYSTOLIC: Final = Color(0.75, 0.16, 0.16)
DIASTOLIC: Final = Color(0.13, 0.35, 0.70)
GRID: Final = Color(0.85, 0.85, 0.85)
# Range colours of the consensus AGP report: very low dark red, low red, in range green, high amber,
# very high orange.
RANGE_COLOURS: Final[dict[str, Color]] = {
    "very_low": Color(0.55, 0.05, 0.05),
    "low": Color(0.90, 0.25, 0.20),
    "in_range": Color(0.20, 0.62, 0.30),
    "high": Color(0.98, 0.75, 0.20),
    "very_high": Color(0.95, 0.50, 0.10),
}
AGP_OUTER: Final = Color(0.75, 0.82, 0.93)
AGP_INNER: Final = Color(0.45, 0.60, 0.85)
AGP_MEDIAN: Final = Color(0.05, 0.20, 0.55)


def _rect(x: float, y: float, width: float, height: float, fill: Color) -> Rect:
    """A filled rectangle without an outline."""
    rect = Rect(x, y, width, height)
    rect.fillColor = fill
    rect.strokeColor = None
    return rect


@dataclass(frozen=True, slots=True)
class _Frame:
    """A plot area inside a drawing, mapping data coordinates to points."""

    x0: float
    x1: float
    y0: float
    y1: float
    font: str

    @property
    def left(self) -> float:
        return _LEFT

    @property
    def right(self) -> float:
        return WIDTH - _RIGHT

    @property
    def bottom(self) -> float:
        return _BOTTOM

    @property
    def top(self) -> float:
        return HEIGHT - _TOP

    def x(self, value: float) -> float:
        return self.left + (value - self.x0) / (self.x1 - self.x0) * (self.right - self.left)

    def y(self, value: float) -> float:
        clipped = min(max(value, self.y0), self.y1)
        return self.bottom + (clipped - self.y0) / (self.y1 - self.y0) * (self.top - self.bottom)

    def band(self, drawing: Drawing, low: float, high: float, fill: Color) -> None:
        drawing.add(_rect(self.left, self.y(low), self.right - self.left, self.y(high) - self.y(low), fill))

    def hline(self, drawing: Drawing, value: float, colour: Color) -> None:
        """A dashed line across the plot at `value` (a target)."""
        y = self.y(value)
        drawing.add(
            Line(self.left, y, self.right, y, strokeColor=colour, strokeWidth=0.8, strokeDashArray=[3, 2])
        )

    def y_axis(self, drawing: Drawing, ticks: Sequence[float], label: Callable[[float], str]) -> None:
        for tick in ticks:
            y = self.y(tick)
            drawing.add(Line(self.left, y, self.right, y, strokeColor=GRID, strokeWidth=0.3))
            drawing.add(
                String(
                    self.left - 3,
                    y - 2.5,
                    label(tick),
                    fontName=self.font,
                    fontSize=FONT_SIZE,
                    textAnchor="end",
                )
            )
        drawing.add(
            Line(self.left, self.bottom, self.left, self.top, strokeColor=colors.grey, strokeWidth=0.5)
        )
        drawing.add(
            Line(self.left, self.bottom, self.right, self.bottom, strokeColor=colors.grey, strokeWidth=0.5)
        )

    def x_label(self, drawing: Drawing, value: float, text: str) -> None:
        x = self.x(value)
        drawing.add(Line(x, self.bottom, x, self.bottom - 2, strokeColor=colors.grey, strokeWidth=0.5))
        drawing.add(
            String(x, self.bottom - 10, text, fontName=self.font, fontSize=FONT_SIZE, textAnchor="middle")
        )


def _nice_step(span: float, target_ticks: int = 6) -> float:
    raw = span / target_ticks
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _ticks(low: float, high: float) -> list[float]:
    step = _nice_step(high - low)
    first = math.ceil(low / step) * step
    out = []
    value = first
    while value <= high + 1e-9:
        out.append(round(value, 6))
        value += step
    return out


def _legend(drawing: Drawing, font: str, items: Sequence[tuple[str, Color]], y: float) -> None:
    x = _LEFT
    for text, colour in items:
        drawing.add(_rect(x, y, 8, 5, colour))
        drawing.add(String(x + 11, y, text, fontName=font, fontSize=FONT_SIZE))
        x += 14 + len(text) * FONT_SIZE * 0.62 + 10


def bp_daily_chart(
    bp: BloodPressureSummary, first_day: date, last_day: date, language: Language, font: str
) -> Drawing:
    """Daily mean systolic and diastolic (the summary's `daily`) over the period, with the target bands:
    from the low limit up to the goal, systolic and diastolic."""
    drawing = Drawing(WIDTH, HEIGHT)
    days = (last_day - first_day).days
    values = [v for d in bp.daily for v in (d.mean_systolic, d.mean_diastolic)]
    target = bp.target
    low = min([40.0, *values])
    high = max([180.0, target.systolic_mmhg + 20, *values])
    frame = _Frame(-0.5, days + 0.5, low, high, font)
    frame.band(drawing, target.low_systolic_mmhg, target.systolic_mmhg, TARGET_BAND)
    frame.band(drawing, target.low_diastolic_mmhg, target.diastolic_mmhg, Color(0.88, 0.96, 0.89))
    frame.hline(drawing, target.systolic_mmhg, TARGET_LINE)
    frame.hline(drawing, target.diastolic_mmhg, TARGET_LINE)
    frame.y_axis(drawing, _ticks(low, high), lambda v: f"{v:.0f}")
    label_every = max(1, math.ceil((days + 1) / 10))
    for i in range(0, days + 1, label_every):
        frame.x_label(drawing, i, (first_day + timedelta(days=i)).strftime("%m-%d"))
    for colour, attribute in ((SYSTOLIC, "mean_systolic"), (DIASTOLIC, "mean_diastolic")):
        points = [(frame.x((d.date - first_day).days), frame.y(getattr(d, attribute))) for d in bp.daily]
        if len(points) > 1:
            drawing.add(PolyLine([c for p in points for c in p], strokeColor=colour, strokeWidth=1.2))
        for x, y in points:
            drawing.add(Circle(x, y, 1.8, fillColor=colour, strokeColor=colour))
    drawing.add(String(4, HEIGHT - 8, "mmHg", fontName=font, fontSize=FONT_SIZE))
    _legend(
        drawing,
        font,
        [
            (message(language, "bp.systolic"), SYSTOLIC),
            (message(language, "bp.diastolic"), DIASTOLIC),
            (message(language, "bp.target"), TARGET_BAND),
        ],
        2,
    )
    return drawing


def tir_bar(ranges: GlucoseRanges, language: Language, font: str) -> Drawing:
    """One stacked bar of the five ranges' percentages, each labelled with its share."""
    height = 46.0
    drawing = Drawing(WIDTH, height)
    x = _LEFT
    span = WIDTH - _LEFT - _RIGHT
    names = ("very_low", "low", "in_range", "high", "very_high")
    for name in names:
        share = getattr(ranges, name)
        width = span * share / 100.0
        if width > 0:
            drawing.add(_rect(x, 22, width, 16, RANGE_COLOURS[name]))
        x += width
    x = _LEFT
    for name in names:
        text = f"{message(language, f'glu.range.{name}')} {getattr(ranges, name):.1f} %"
        drawing.add(_rect(x, 6, 8, 6, RANGE_COLOURS[name]))
        drawing.add(String(x + 11, 6, text, fontName=font, fontSize=FONT_SIZE))
        x += span / 5
    return drawing


def _glucose_frame(
    values_mg_dl: Sequence[float], target: GlucoseTarget, numbers: Numbers, font: str
) -> _Frame:
    unit = numbers.glucose_unit
    top_mg_dl = max([300.0, *values_mg_dl])
    return _Frame(0.0, 24.0, 0.0, glucose_from_mg_dl(top_mg_dl, unit), font)


def _glucose_axes(drawing: Drawing, frame: _Frame, target: GlucoseTarget, numbers: Numbers) -> None:
    unit = numbers.glucose_unit
    frame.band(
        drawing,
        glucose_from_mg_dl(target.low_mg_dl, unit),
        glucose_from_mg_dl(target.high_mg_dl, unit),
        TARGET_BAND,
    )
    decimals = 0 if unit is GlucoseUnit.MG_DL else 1
    frame.y_axis(drawing, _ticks(frame.y0, frame.y1), lambda v: f"{v:.{decimals}f}")
    for hour in range(0, 25, 3):
        frame.x_label(drawing, hour, f"{hour:02d}:00")
    drawing.add(String(4, HEIGHT - 8, unit.value, fontName=frame.font, fontSize=FONT_SIZE))


def agp_chart(agp: Sequence[AgpHour], target: GlucoseTarget, numbers: Numbers, font: str) -> Drawing:
    """Percentile bands 5-95 and 25-75 and the median by hour of day (values at each hour's middle)."""
    drawing = Drawing(WIDTH, HEIGHT)
    unit = numbers.glucose_unit
    frame = _glucose_frame([h.p95 for h in agp], target, numbers, font)
    _glucose_axes(drawing, frame, target, numbers)

    def band(low: str, high: str, fill: Color) -> None:
        upper = [(frame.x(h.hour + 0.5), frame.y(glucose_from_mg_dl(getattr(h, high), unit))) for h in agp]
        lower = [(frame.x(h.hour + 0.5), frame.y(glucose_from_mg_dl(getattr(h, low), unit))) for h in agp]
        points = [c for p in [*upper, *reversed(lower)] for c in p]
        if len(agp) > 1:
            drawing.add(Polygon(points, fillColor=fill, strokeColor=None))

    band("p5", "p95", AGP_OUTER)
    band("p25", "p75", AGP_INNER)
    median = [(frame.x(h.hour + 0.5), frame.y(glucose_from_mg_dl(h.p50, unit))) for h in agp]
    if len(median) > 1:
        drawing.add(PolyLine([c for p in median for c in p], strokeColor=AGP_MEDIAN, strokeWidth=1.4))
    for x, y in median:
        drawing.add(Circle(x, y, 1.2, fillColor=AGP_MEDIAN, strokeColor=AGP_MEDIAN))
    _legend(
        drawing,
        font,
        [("5–95 %", AGP_OUTER), ("25–75 %", AGP_INNER), ("50 %", AGP_MEDIAN)],
        2,
    )
    return drawing


def modal_day_chart(
    points: Sequence[ModalDayPoint], target: GlucoseTarget, numbers: Numbers, font: str
) -> Drawing:
    """Every valid reading of the period at its local time of day, over the target band."""
    drawing = Drawing(WIDTH, HEIGHT)
    unit = numbers.glucose_unit
    frame = _glucose_frame([p.glucose_mg_dl for p in points], target, numbers, font)
    _glucose_axes(drawing, frame, target, numbers)
    for p in points:
        drawing.add(
            Circle(
                frame.x(p.hour),
                frame.y(glucose_from_mg_dl(p.glucose_mg_dl, unit)),
                1.6,
                fillColor=AGP_MEDIAN,
                strokeColor=None,
            )
        )
    return drawing
