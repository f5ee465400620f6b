"""The visit report as a PDF (ReportLab platypus; no browser): A4, one column, in the reader's language
and glucose unit, every figure as the summary module gave it (glucose converted for display only).

Layout, top to bottom: who and when; blood pressure (the ESH home mean and its category against the
target, morning and evening means, SD, valid readings and days, exclusions, daily chart with the target
band); glucose (ranges bar, mean, SD, GMI, CV, hypoglycaemia events, sufficiency, exclusions, means by
meal context, the AGP when the data suffice, else the modal day); alerts with what was done; the
targets and who set them.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any, Final

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle
from reportlab.platypus.flowables import Flowable

from alerts.summaries import BloodPressureSummary, ExcludedCount, GlucoseSummary
from api.reports import charts
from api.reports.fonts import report_font
from api.reports.text import Language, Numbers, message, rule_title
from api.reports.visit import ReportAlert, VisitReport

MARGIN: Final = 16 * mm


class _Styles:
    def __init__(self, font: str) -> None:
        self.font = font
        self.title = ParagraphStyle("title", fontName=font, fontSize=16, leading=20, spaceAfter=6)
        self.heading = ParagraphStyle(
            "heading", fontName=font, fontSize=12, leading=15, spaceBefore=8, spaceAfter=4
        )
        self.subheading = ParagraphStyle("subheading", fontName=font, fontSize=9.5, leading=12, spaceBefore=4)
        self.body = ParagraphStyle("body", fontName=font, fontSize=8.5, leading=11)
        self.small = ParagraphStyle("small", fontName=font, fontSize=7.5, leading=9.5, textColor=colors.grey)
        self.cell = ParagraphStyle("cell", fontName=font, fontSize=8.5, leading=10.5)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class _Writer:
    """Builds the story of one report."""

    def __init__(self, report: VisitReport, language: Language) -> None:
        self.report = report
        self.language = language
        self.styles = _Styles(report_font())
        self.numbers = Numbers(language, report.glucose_unit, report.zone)
        self.story: list[Flowable] = []

    def t(self, key: str, **values: object) -> str:
        return message(self.language, key, **values)

    def p(self, text: str, style: ParagraphStyle | None = None) -> Paragraph:
        return Paragraph(_escape(text), style or self.styles.body)

    def facts(self, rows: Sequence[tuple[str, str]]) -> Table:
        table = Table(
            [[self.p(k, self.styles.cell), self.p(v, self.styles.cell)] for k, v in rows],
            colWidths=[58 * mm, None],
            hAlign="LEFT",
        )
        table.setStyle(
            TableStyle(
                [
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                    ("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.lightgrey),
                    ("TOPPADDING", (0, 0), (-1, -1), 1.5),
                    ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
                ]
            )
        )
        return table

    def excluded(self, counts: Sequence[ExcludedCount]) -> str:
        if not counts:
            return self.t("excluded.none")
        return "; ".join(f"{self.t(f'reason.{c.reason}')}: {c.count}" for c in counts)

    # --- sections --------------------------------------------------------------------------------
    def header(self) -> None:
        r, n = self.report, self.numbers
        self.story.append(self.p(self.t("visit.title"), self.styles.title))
        self.story.append(
            self.facts(
                [
                    (self.t("visit.patient"), f"{r.family_name} {r.given_name}"),
                    (self.t("visit.patient_id"), r.patient_id),
                    (self.t("visit.born"), r.date_of_birth or self.t("visit.not_recorded")),
                    (self.t("visit.clinic"), r.clinic_name),
                    (
                        self.t("visit.period"),
                        self.t(
                            "visit.period_value",
                            first=n.day(r.first_day),
                            last=n.day(r.last_day),
                            days=r.summary.period.days,
                            zone=r.summary.period.timezone,
                        ),
                    ),
                    (
                        self.t("visit.generated"),
                        self.t("visit.generated_value", when=n.moment(r.generated_at), who=r.generated_by),
                    ),
                    (self.t("visit.unit"), r.glucose_unit.value),
                ]
            )
        )
        self.story.append(self.p(self.t("visit.source"), self.styles.small))

    def blood_pressure(self, bp: BloodPressureSummary) -> None:
        n = self.numbers
        self.story.append(self.p(self.t("bp.heading"), self.styles.heading))
        rows: list[tuple[str, str]] = []
        home = bp.home_mean
        if home is None:
            rows.append((self.t("bp.home_mean"), self.t("bp.no_home_mean")))
        else:
            value = self.t("bp.home_mean_value", sys=n.mmhg(home.systolic), dia=n.mmhg(home.diastolic))
            window = self.t(
                "bp.home_window",
                first=n.day(home.first_day),
                last=n.day(home.last_day),
                discarded=n.day(home.discarded_day) if home.discarded_day else "–",
                readings=home.readings,
                days=home.days,
            )
            rows.append((self.t("bp.home_mean"), f"{value} — {window}"))
            if not home.sufficient:
                rows.append(("", self.t("bp.insufficient_note")))
        rows.append((self.t("bp.category"), self.t(f"category.{bp.category}")))
        target = bp.target
        rows.append(
            (
                self.t("bp.target"),
                self.t(
                    "bp.target_value",
                    sys=f"{target.systolic_mmhg:g}",
                    dia=f"{target.diastolic_mmhg:g}",
                    low_sys=f"{target.low_systolic_mmhg:g}",
                    low_dia=f"{target.low_diastolic_mmhg:g}",
                ),
            )
        )
        for key, session in (("bp.morning", bp.morning_mean), ("bp.evening", bp.evening_mean)):
            label = (
                self.t(key, start=session.start_hour, end=session.end_hour)
                if session
                else self.t(f"{key}_label")
            )
            rows.append(
                (
                    label,
                    self.t(
                        "bp.session_value",
                        sys=n.mmhg(session.systolic),
                        dia=n.mmhg(session.diastolic),
                        readings=session.readings,
                    )
                    if session
                    else "–",
                )
            )
        rows.append(
            (self.t("bp.sd"), self.t("bp.sd_value", sys=n.mmhg(bp.sd_systolic), dia=n.mmhg(bp.sd_diastolic)))
        )
        rows.append(
            (
                self.t("bp.valid"),
                self.t("bp.valid_value", readings=bp.valid_readings, days=bp.days_with_readings),
            )
        )
        rows.append((self.t("bp.excluded"), self.excluded(bp.excluded)))
        self.story.append(self.facts(rows))
        self.story.append(self.p(self.t("bp.chart"), self.styles.subheading))
        if bp.daily:
            chart = charts.bp_daily_chart(
                bp, self.report.first_day, self.report.last_day, self.language, self.styles.font
            )
            self.story.append(chart)
        else:
            self.story.append(self.p(self.t("bp.chart_empty")))

    def glucose(self, g: GlucoseSummary) -> None:
        n = self.numbers
        self.story.append(self.p(self.t("glu.heading"), self.styles.heading))
        self.story.append(self.p(self.t("glu.tir"), self.styles.subheading))
        if g.ranges is not None:
            self.story.append(charts.tir_bar(g.ranges, self.language, self.styles.font))
        else:
            self.story.append(self.p(self.t("glu.tir_none")))
        if g.agp_reason is None:
            sufficiency = self.t("glu.sufficient", wear=n.percent(g.wear_percent))
        else:
            reason = self.t(f"glu.reason.{g.agp_reason}", wear=n.percent(g.wear_percent))
            sufficiency = self.t("glu.insufficient", reason=reason)
        gmi = f"{g.gmi_percent:.1f} %" if g.gmi_percent is not None else "–"
        rows = [
            (self.t("glu.readings"), str(g.readings)),
            (self.t("glu.mean"), n.glucose_with_unit(g.mean_mg_dl) if g.mean_mg_dl is not None else "–"),
            (self.t("glu.sd"), n.glucose_with_unit(g.sd_mg_dl) if g.sd_mg_dl is not None else "–"),
            (self.t("glu.gmi"), gmi),
            (
                self.t("glu.cv"),
                n.percent(g.cv_percent) if g.cv_percent is not None else self.t("glu.cv_missing"),
            ),
            (self.t("glu.tir_consensus"), n.percent(g.time_in_range_70_180_percent)),
            (
                self.t("glu.hypo"),
                self.t("glu.hypo_value", l1=g.hypo_events.level_1, l2=g.hypo_events.level_2),
            ),
            (self.t("glu.sufficiency"), sufficiency),
            (self.t("glu.excluded"), self.excluded(g.excluded)),
        ]
        self.story.append(self.facts(rows))
        if g.by_meal:
            self.story.append(self.p(self.t("glu.by_meal"), self.styles.subheading))
            header = [
                self.t("glu.meal"),
                self.t("glu.meal_readings"),
                self.t("glu.meal_mean", unit=n.glucose_unit.value),
            ]
            body = [[self.t(f"meal.{m.meal}"), str(m.readings), n.glucose(m.mean_mg_dl)] for m in g.by_meal]
            table = Table(
                [[self.p(c, self.styles.cell) for c in row] for row in [header, *body]],
                colWidths=[50 * mm, 30 * mm, 40 * mm],
                hAlign="LEFT",
            )
            table.setStyle(
                TableStyle(
                    [
                        ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.grey),
                        ("LINEBELOW", (0, 1), (-1, -1), 0.25, colors.lightgrey),
                    ]
                )
            )
            self.story.append(table)
        target = g.target
        band = self.t(
            "glu.target_band",
            low=n.glucose(target.low_mg_dl),
            high=n.glucose(target.high_mg_dl),
            unit=n.glucose_unit.value,
        )
        if g.agp is not None and g.agp:
            block: list[Flowable] = [
                self.p(f"{self.t('glu.agp')} ({band})", self.styles.subheading),
                charts.agp_chart(g.agp, target, n, self.styles.font),
            ]
        elif self.report.modal_day:
            block = [
                self.p(f"{self.t('glu.modal_day')} ({band})", self.styles.subheading),
                charts.modal_day_chart(self.report.modal_day, target, n, self.styles.font),
            ]
        else:
            block = [self.p(self.t("glu.no_readings_chart"))]
        self.story.append(KeepTogether(block))

    def alert(self, a: ReportAlert) -> list[Flowable]:
        n = self.numbers
        title = (
            f"{rule_title(self.language, a.rule_id)} ({a.rule_id}) — "
            f"{self.t(f'alerts.severity.{a.severity.value}')}, {self.t(f'alerts.state.{a.state.value}')}, "
            f"{self.t('alerts.opened', when=n.moment(a.opened_at))}"
        )
        lines: list[Flowable] = [self.p(title, self.styles.cell)]
        done = [s for s in a.steps if s.event != "opened"]
        if not done:
            lines.append(self.p("  · " + self.t("alerts.nothing_done"), self.styles.small))
        for step in done:
            key = f"event.{step.event}"
            what = self.t(key) if key in _EVENT_KEYS else step.event
            text = self.t(
                "event.line", when=n.moment(step.at), what=what, who=step.actor or self.t("alerts.system")
            )
            if step.note:
                text += " — " + self.t("event.note", note=step.note)
            lines.append(self.p("  · " + text, self.styles.small))
        return lines

    def alerts(self) -> None:
        self.story.append(self.p(self.t("alerts.heading"), self.styles.heading))
        if not self.report.alerts:
            self.story.append(self.p(self.t("alerts.none")))
        for a in self.report.alerts:
            self.story.append(KeepTogether(self.alert(a)))
            self.story.append(Spacer(1, 2))

    def targets(self) -> None:
        r, n = self.report, self.numbers
        tg = r.targets
        self.story.append(self.p(self.t("targets.heading"), self.styles.heading))
        set_by = (
            self.t("targets.set_by_value", who=r.targets_set_by, when=n.moment(r.targets_set_at))
            if r.targets_set_by and r.targets_set_at
            else self.t("targets.defaults")
        )
        self.story.append(
            self.facts(
                [
                    (
                        self.t("targets.bp_goal"),
                        self.t(
                            "targets.bp_goal_value",
                            sys=f"{tg.bp_goal_systolic_mmhg:g}",
                            dia=f"{tg.bp_goal_diastolic_mmhg:g}",
                        ),
                    ),
                    (
                        self.t("targets.glucose_range"),
                        f"{n.glucose(tg.glucose_hypo_mg_dl)}–{n.glucose_with_unit(tg.glucose_postprandial_high_mg_dl)}",
                    ),
                    (self.t("targets.fasting"), n.glucose_with_unit(tg.glucose_fasting_high_mg_dl)),
                    (self.t("targets.postprandial"), n.glucose_with_unit(tg.glucose_postprandial_high_mg_dl)),
                    (self.t("targets.hypo"), n.glucose_with_unit(tg.glucose_hypo_mg_dl)),
                    (self.t("targets.profile"), self.t(f"profile.{tg.guideline_profile.value}")),
                    (self.t("targets.set_by"), set_by),
                ]
            )
        )

    def build(self) -> list[Flowable]:
        self.header()
        self.blood_pressure(self.report.summary.blood_pressure)
        self.glucose(self.report.summary.glucose)
        self.alerts()
        self.targets()
        return self.story


_EVENT_KEYS: Final = frozenset(
    f"event.{e}"
    for e in (
        "opened",
        "acknowledged",
        "snoozed",
        "resolved",
        "auto_resolved",
        "superseded",
        "signed_off",
        "escalated",
        "severity_raised",
        "evidence_added",
        "snooze_expired",
    )
)


def render_visit_pdf(report: VisitReport, language: Language) -> bytes:
    """The visit report as PDF bytes. CPU-bound (tens of milliseconds): call it from a worker thread."""
    writer = _Writer(report, language)
    story = writer.build()
    buffer = io.BytesIO()
    font = writer.styles.font
    footer = f"{report.family_name} {report.given_name} · {report.patient_id}"

    def on_page(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont(font, 7)
        canvas.setFillColor(colors.grey)
        canvas.drawString(MARGIN, 9 * mm, footer)
        canvas.drawRightString(A4[0] - MARGIN, 9 * mm, message(language, "visit.page", n=doc.page))
        canvas.restoreState()

    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=MARGIN,
        title=message(language, "visit.title"),
        author=report.clinic_name,
        lang=language,
    )
    doc.build(story, onFirstPage=on_page, onLaterPages=on_page)
    return buffer.getvalue()
