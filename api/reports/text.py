"""The reports' words in English and Simplified Chinese, and how their numbers are written.

The wording follows the web app's patient page (api/webapp/src/locales/patient.*.ts) so that a doctor
reads the same terms on screen and on paper. Glucose is converted from the canonical mg/dL for display
only (vitals.units: whole mg/dL, mmol/L to one decimal, as meters show it); blood pressure is in mmHg.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from typing import Final, Literal, get_args

from alerts.catalogue import RULES
from vitals.units import GlucoseUnit, glucose_from_mg_dl

Language = Literal["en", "zh-CN"]
LANGUAGES: Final[tuple[Language, ...]] = get_args(Language)

_MESSAGES: Final[Mapping[str, tuple[str, str]]] = {
    # --- visit report -------------------------------------------------------------------------------
    "visit.title": ("Home monitoring report", "家庭监测报告"),
    "visit.patient": ("Patient", "患者"),
    "visit.patient_id": ("Patient id", "患者编号"),
    "visit.born": ("Date of birth", "出生日期"),
    "visit.not_recorded": ("not recorded", "未登记"),
    "visit.clinic": ("Clinic", "诊所"),
    "visit.period": ("Period", "时间范围"),
    "visit.period_value": (
        "{first} – {last} ({days} days, {zone})",
        "{first} 至 {last}（{days} 天，{zone}）",
    ),
    "visit.generated": ("Generated", "生成时间"),
    "visit.generated_value": ("{when} by {who}", "{when}，由 {who} 生成"),
    "visit.unit": ("Glucose unit", "血糖单位"),
    "visit.source": (
        "Figures from the clinic server's summary module; invalid readings are never averaged.",
        "数据来自诊所服务器的统计模块；无效读数不计入任何均值。",
    ),
    "visit.page": ("Page {n}", "第 {n} 页"),
    # blood pressure
    "bp.heading": ("Blood pressure", "血压"),
    "bp.home_mean": ("Home BP mean (ESH protocol)", "家庭血压均值（ESH 方案）"),
    "bp.home_mean_value": ("{sys}/{dia} mmHg", "{sys}/{dia} mmHg"),
    "bp.home_window": (
        "{first} – {last}; first measured day {discarded} discarded; {readings} readings on {days} days",
        "{first} 至 {last}；舍弃首个测量日 {discarded}；{days} 天共 {readings} 次读数",
    ),
    "bp.no_home_mean": ("No valid reading in the last 7 days", "近 7 天没有有效读数"),
    "bp.insufficient_note": (
        "Fewer than 12 readings on 3 days: the mean is shown but not classified.",
        "少于 3 天共 12 次读数：仅显示均值，不作分类。",
    ),
    "bp.category": ("Against the target", "与目标比较"),
    "bp.target": ("Target", "目标"),
    "bp.target_value": (
        "below {sys}/{dia} mmHg; low below {low_sys}/{low_dia}",
        "低于 {sys}/{dia} mmHg；低于 {low_sys}/{low_dia} 为偏低",
    ),
    "bp.morning": ("Morning mean ({start}:00–{end}:00)", "晨间均值（{start}:00–{end}:00）"),
    "bp.evening": ("Evening mean ({start}:00–{end}:00)", "晚间均值（{start}:00–{end}:00）"),
    "bp.morning_label": ("Morning mean", "晨间均值"),
    "bp.evening_label": ("Evening mean", "晚间均值"),
    "bp.session_value": ("{sys}/{dia} mmHg, {readings} readings", "{sys}/{dia} mmHg，{readings} 次读数"),
    "bp.sd": ("Standard deviation", "标准差"),
    "bp.sd_value": ("systolic {sys}, diastolic {dia} mmHg", "收缩压 {sys}，舒张压 {dia} mmHg"),
    "bp.valid": ("Valid readings", "有效读数"),
    "bp.valid_value": ("{readings} on {days} days", "{days} 天共 {readings} 次"),
    "bp.excluded": ("Readings excluded", "未计入的读数"),
    "bp.chart": ("Daily means with the target band", "每日均值及目标范围"),
    "bp.chart_empty": ("No valid blood-pressure reading in this period.", "此期间没有有效血压读数。"),
    "bp.systolic": ("systolic", "收缩压"),
    "bp.diastolic": ("diastolic", "舒张压"),
    "category.below_target": ("Below target", "低于目标"),
    "category.at_target": ("At target", "达标"),
    "category.above_target": ("Above target", "高于目标"),
    "category.insufficient": ("Too few readings to classify", "读数不足，无法分类"),
    # glucose
    "glu.heading": ("Glucose", "血糖"),
    "glu.readings": ("Valid readings", "有效读数"),
    "glu.mean": ("Mean", "平均值"),
    "glu.sd": ("Standard deviation", "标准差"),
    "glu.gmi": ("Glucose management indicator (GMI)", "血糖管理指标（GMI）"),
    "glu.cv": ("Coefficient of variation (CV)", "变异系数（CV）"),
    "glu.cv_missing": ("needs at least 10 readings", "至少需要 10 次读数"),
    "glu.hypo": ("Hypoglycaemia events", "低血糖事件"),
    "glu.hypo_value": ("level 1: {l1}, level 2: {l2}", "1 级：{l1}，2 级：{l2}"),
    "glu.sufficiency": ("Data sufficiency", "数据充分性"),
    "glu.sufficient": (
        "sufficient: 14 days with {wear} of 15-minute slots holding a reading",
        "充分：14 天内 {wear} 的 15 分钟时段有读数",
    ),
    "glu.insufficient": ("not sufficient for GMI and AGP: {reason}", "不足以计算 GMI 和 AGP：{reason}"),
    "glu.reason.no_readings": ("no valid reading", "没有有效读数"),
    "glu.reason.period_shorter_than_14_days": ("the period is shorter than 14 days", "时间范围短于 14 天"),
    "glu.reason.wear_below_70_percent": (
        "readings in {wear} of 15-minute slots (70 % needed)",
        "仅 {wear} 的 15 分钟时段有读数（需要 70%）",
    ),
    "glu.excluded": ("Readings excluded", "未计入的读数"),
    "glu.tir": ("Time in ranges", "各范围时间占比"),
    "glu.tir_consensus": ("Time in range 70–180 mg/dL (consensus)", "70–180 mg/dL 范围内时间（共识）"),
    "glu.tir_none": ("No valid reading: no time in ranges.", "没有有效读数，无法计算各范围时间占比。"),
    "glu.range.very_low": ("Very low", "极低"),
    "glu.range.low": ("Low", "偏低"),
    "glu.range.in_range": ("In range", "达标"),
    "glu.range.high": ("High", "偏高"),
    "glu.range.very_high": ("Very high", "极高"),
    "glu.by_meal": ("By meal context", "按进餐情况"),
    "glu.meal": ("Meal context", "进餐情况"),
    "glu.meal_readings": ("Readings", "读数"),
    "glu.meal_mean": ("Mean ({unit})", "平均值（{unit}）"),
    "meal.fasting": ("Fasting", "空腹"),
    "meal.preprandial": ("Before a meal", "餐前"),
    "meal.postprandial": ("After a meal", "餐后"),
    "meal.bedtime": ("Bedtime", "睡前"),
    "meal.casual": ("Casual", "随机"),
    "meal.unknown": ("Not stated", "未注明"),
    "glu.agp": (
        "Ambulatory glucose profile: percentiles 5, 25, 50, 75, 95 by hour",
        "动态血糖图谱：按小时的第 5、25、50、75、95 百分位",
    ),
    "glu.modal_day": (
        "Readings by time of day (modal day); the AGP needs sufficient data",
        "按一天中时间的读数（模态日）；AGP 需要充分的数据",
    ),
    "glu.no_readings_chart": ("No valid glucose reading in this period.", "此期间没有有效血糖读数。"),
    "glu.target_band": ("target {low}–{high} {unit}", "目标 {low}–{high} {unit}"),
    # exclusions
    "reason.not_measured": ("not measured", "未测得"),
    "reason.implausible_value": ("implausible value", "数值不合理"),
    "reason.body_movement": ("body movement", "身体移动"),
    "reason.cuff_too_loose": ("cuff too loose", "袖带过松"),
    "reason.improper_position": ("improper position", "测量姿势不正确"),
    "reason.control_solution": ("control solution", "质控液"),
    "reason.result_too_high": ("above the meter's range (HI)", "高于血糖仪量程（HI）"),
    "reason.result_too_low": ("below the meter's range (LO)", "低于血糖仪量程（LO）"),
    "reason.sensor_fault": ("meter fault", "血糖仪故障"),
    "reason.device_error": ("device error", "设备错误"),
    "excluded.none": ("none", "无"),
    # alerts
    "alerts.heading": ("Alerts: open, and those of this period", "预警：当前预警及本期预警"),
    "alerts.none": ("No open alert and none in this period.", "没有当前预警，本期也没有预警。"),
    "alerts.opened": ("opened {when}", "{when} 触发"),
    "alerts.state.open": ("open", "待处理"),
    "alerts.state.acknowledged": ("acknowledged", "已确认"),
    "alerts.state.snoozed": ("snoozed", "已暂停提醒"),
    "alerts.state.resolved": ("resolved", "已处理完毕"),
    "alerts.state.escalated": ("escalated", "已升级"),
    "alerts.severity.info": ("info", "提示"),
    "alerts.severity.warning": ("warning", "警告"),
    "alerts.severity.urgent": ("urgent", "紧急"),
    "alerts.nothing_done": ("nothing done yet", "尚未处理"),
    "alerts.system": ("system", "系统"),
    "event.opened": ("opened", "触发"),
    "event.acknowledged": ("acknowledged", "确认"),
    "event.snoozed": ("snoozed", "暂停提醒"),
    "event.resolved": ("resolved", "处理完毕"),
    "event.auto_resolved": ("resolved itself (values back in range)", "自动解除（数值恢复正常）"),
    "event.superseded": ("superseded", "被取代"),
    "event.signed_off": ("signed off", "签核"),
    "event.escalated": ("escalated", "升级"),
    "event.severity_raised": ("severity raised", "级别提高"),
    "event.evidence_added": ("evidence added", "新增依据"),
    "event.snooze_expired": ("snooze ended", "暂停结束"),
    "event.line": ("{when} {what} by {who}", "{when} {who}{what}"),
    "event.note": ("note: {note}", "备注：{note}"),
    # targets
    "targets.heading": ("Targets the alert rules use", "预警规则采用的目标"),
    "targets.bp_goal": ("Home BP goal", "家庭血压目标"),
    "targets.bp_goal_value": ("below {sys}/{dia} mmHg", "低于 {sys}/{dia} mmHg"),
    "targets.glucose_range": ("Glucose target range", "血糖目标范围"),
    "targets.fasting": ("Fasting upper limit", "空腹血糖上限"),
    "targets.postprandial": ("Post-meal limit", "餐后血糖上限"),
    "targets.hypo": ("Hypoglycaemia threshold", "低血糖阈值"),
    "targets.profile": ("Guideline", "指南"),
    "targets.set_by": ("Set by", "设定人"),
    "targets.set_by_value": ("{who}, {when}", "{who}，{when}"),
    "targets.defaults": ("the guideline's values (never changed)", "指南的数值（未修改）"),
    "profile.cn": ("China", "中国"),
    "profile.eu": ("Europe (ESH/ESC)", "欧洲（ESH/ESC）"),
    "profile.us": ("United States (ACC/AHA)", "美国（ACC/AHA）"),
    # --- monthly report -------------------------------------------------------------------------------
    "monthly.title": ("Remote monitoring: monthly report", "远程监测月度报告"),
    "monthly.month": ("Month", "月份"),
    "monthly.threshold": (
        "A 30-day monitoring period counts when it holds readings on at least {n} days (CPT 99454). "
        "Periods run in 30-day steps from each patient's enrolment; those ending in this month are listed.",
        "30 天监测期内至少 {n} 天有读数方为达标（CPT 99454）。监测期自患者入组起每 30 天一期；列出本月结束的监测期。",
    ),
    "monthly.patients": ("Patients", "患者数"),
    "monthly.meeting": ("Periods meeting the threshold", "达标的监测期"),
    "monthly.col.patient": ("Patient", "患者"),
    "monthly.col.period": ("30-day period", "30 天监测期"),
    "monthly.col.days": ("Days with readings", "有读数的天数"),
    "monthly.col.meets": ("≥ {n} days", "≥ {n} 天"),
    "monthly.col.readings": ("Readings", "读数"),
    "monthly.col.month_days": ("Days in month", "本月有读数天数"),
    "monthly.col.alerts_opened": ("Alerts opened", "新预警"),
    "monthly.col.alerts_handled": ("Handled", "已处理"),
    "monthly.yes": ("yes", "是"),
    "monthly.no": ("no", "否"),
    "monthly.in_progress": ("in progress", "进行中"),
    "monthly.no_period": ("no period ends this month", "本月无结束的监测期"),
}


def message(language: Language, key: str, **values: object) -> str:
    """The message `key` in `language`, with `{name}` placeholders filled in."""
    en, zh = _MESSAGES[key]
    text = zh if language == "zh-CN" else en
    return text.format(**values) if values else text


def message_keys() -> frozenset[str]:
    return frozenset(_MESSAGES)


# Rule titles in Chinese: the web app's wording (api/webapp/src/locales/zh-CN.ts), for the rules of
# alerts/catalogue.py; English titles come from the catalogue itself.
_RULE_TITLES_ZH: Final[Mapping[str, str]] = {
    "BP-CRIT-1": "单次血压达到危象水平：休息后复测",
    "BP-CRIT-2": "15 分钟内复测确认血压危象",
    "BP-CRIT-3": "血压危象伴危险症状：建议呼叫急救",
    "BP-LOW-1": "低血压（同一次测量中 2 次读数）",
    "BP-LOW-2": "过度治疗信号：收缩压下降 ≥ 20 mmHg",
    "BP-CTRL-1": "家庭血压均值未达标",
    "BP-CTRL-2": "家庭血压持续未控制（连续 2 个评估期）",
    "BP-CTRL-3": "家庭血压均值相当于 2 级高血压",
    "BP-AM-1": "清晨高血压",
    "BP-AM-2": "早晚收缩压差值过大",
    "BP-TREND-1": "日均收缩压上移（指数加权移动平均 / 累积和检验）",
    "HR-LOW": "静息心动过缓",
    "HR-HIGH": "静息心动过速",
    "HR-IRR": "血压计提示脉搏不规则：建议做 12 导联心电图",
    "GLU-HYPO-1": "1 级低血糖",
    "GLU-HYPO-2": "2 级低血糖",
    "GLU-HYPO-3": "3 级低血糖（报告了需他人协助的事件）",
    "GLU-HYPO-REC": "反复低血糖：请复核治疗方案",
    "GLU-HIGH-1": "连续 2 次读数达 2 级高血糖：请检测酮体",
    "GLU-HIGH-2": "血糖极高",
    "GLU-HIGH-3": "血糖达高血糖高渗状态范围或有酮症酸中毒症状：急症",
    "GLU-CTRL-1": "空腹血糖未达标",
    "GLU-CTRL-2": "餐后血糖高于目标",
    "CGM-SUFF": "持续葡萄糖监测数据不足，无法计算指标",
    "CGM-TBR": "持续葡萄糖监测：低于目标范围的时间",
    "CGM-TAR": "持续葡萄糖监测：高于目标范围的时间",
    "CGM-TIR": "持续葡萄糖监测：目标范围内时间未达目标",
    "CGM-CV": "血糖变异系数 > 36%",
    "CGM-GRI": "血糖风险指数位于 D/E 区",
    "CGM-GMI": "血糖管理指标较前 14 天上升",
    "DQ-01": "数据中断：没有读数",
    "DQ-02": "已排除无效或有标记的读数",
    "DQ-03": "30 天内有数据的天数少于 16 天",
    "OPS-GW-OFFLINE": "网关离线：患者的读数无法传到诊所",
    "OPS-METER-BATTERY": "测量设备电量低：请更换电池或充电",
    "OPS-BROKER-DROPS": "诊所消息服务器丢弃了消息：该家庭的读数将延迟到达",
}


def rule_title(language: Language, rule_id: str) -> str:
    """A rule's title; a rule unknown to this catalogue shows its id."""
    if language == "zh-CN" and rule_id in _RULE_TITLES_ZH:
        return _RULE_TITLES_ZH[rule_id]
    spec = RULES.get(rule_id)
    return spec.title if spec is not None else rule_id


@dataclass(frozen=True, slots=True)
class Numbers:
    """How one report writes its numbers: glucose in the reader's unit, times in the patient's zone."""

    language: Language
    glucose_unit: GlucoseUnit
    zone: tzinfo

    def glucose(self, mg_dl: float | None) -> str:
        """A glucose value in the report's unit (no unit): whole mg/dL or mmol/L to one decimal."""
        if mg_dl is None:
            return "–"
        if self.glucose_unit is GlucoseUnit.MG_DL:
            return f"{round(mg_dl):d}"
        return f"{glucose_from_mg_dl(mg_dl, GlucoseUnit.MMOL_L):.1f}"

    def glucose_with_unit(self, mg_dl: float | None) -> str:
        return f"{self.glucose(mg_dl)} {self.glucose_unit.value}"

    def mmhg(self, value: float | None) -> str:
        """Blood pressure as the summary module rounded it (one decimal)."""
        return "–" if value is None else f"{value:.1f}"

    def percent(self, value: float | None) -> str:
        return "–" if value is None else f"{value:.1f} %"

    def day(self, value: date) -> str:
        return value.isoformat()

    def moment(self, value: datetime) -> str:
        """A moment in the patient's time zone, to the minute."""
        return value.astimezone(self.zone).strftime("%Y-%m-%d %H:%M")
