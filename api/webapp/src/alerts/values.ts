/**
 * An alert's trigger values (canonical units, keyed by name; alerts/singles.py and windows.py), as
 * labelled lines in the user's language and glucose unit. Keys the app has no words for, and
 * internal ones (report ids, criteria text), are left out rather than shown in English.
 */
import {
  MG_DL_PER_MMOL_L,
  formatDate,
  formatDateTime,
  formatGlucose,
  formatNumber,
  formatPercent,
  type GlucoseUnit,
} from "../format";
import en from "../locales/en";

type Kind =
  | "mmhg"
  | "mmhgPerDay"
  | "glucose"
  | "glucoseMmol"
  | "mmol"
  | "bpm"
  | "count"
  | "minutes"
  | "hours"
  | "percent"
  | "fraction"
  | "points"
  | "time"
  | "day"
  | "flag"
  | "symptoms"
  | "advice"
  | "meal"
  | "readingKind"
  | "batteries";

const KINDS: Record<string, Kind> = {
  systolic_mmhg: "mmhg",
  diastolic_mmhg: "mmhg",
  pulse_bpm: "bpm",
  session_mean_pulse_bpm: "bpm",
  irregular_pulse: "flag",
  measured_at: "time",
  reported_at: "time",
  glucose_mg_dl: "glucose",
  glucose_mmol_l: "glucoseMmol",
  previous_glucose_mg_dl: "glucose",
  ketones_mmol_l: "mmol",
  episode_minutes: "minutes",
  meal: "meal",
  symptoms: "symptoms",
  advice: "advice",
  confirmed: "flag",
  crisis_systolic_mmhg: "mmhg",
  crisis_diastolic_mmhg: "mmhg",
  confirming_systolic_mmhg: "mmhg",
  confirming_diastolic_mmhg: "mmhg",
  previous_systolic_mmhg: "mmhg",
  previous_diastolic_mmhg: "mmhg",
  fall_systolic_mmhg: "mmhg",
  standing_fall_systolic_mmhg: "mmhg",
  baseline_systolic_mmhg: "mmhg",
  w7_systolic_mmhg: "mmhg",
  w7_diastolic_mmhg: "mmhg",
  w7_readings: "count",
  baseline_w7_systolic_mmhg: "mmhg",
  morning_systolic_mmhg: "mmhg",
  morning_diastolic_mmhg: "mmhg",
  morning_readings: "count",
  evening_systolic_mmhg: "mmhg",
  evening_diastolic_mmhg: "mmhg",
  evening_readings: "count",
  ewma_systolic_mmhg: "mmhg",
  ewma_limit_mmhg: "mmhg",
  cusum_hi_mmhg: "mmhg",
  cusum_h_mmhg: "mmhg",
  baseline_sigma_mmhg: "mmhg",
  baseline_days: "count",
  slope_mmhg_per_day: "mmhgPerDay",
  fasting_mean_mg_dl: "glucose",
  fasting_limit_mg_dl: "glucose",
  fasting_values: "count",
  postprandial_mean_mg_dl: "glucose",
  postprandial_limit_mg_dl: "glucose",
  postprandial_values: "count",
  level1_in_7_days: "count",
  level2_in_14_days: "count",
  tbr_lt70_percent: "percent",
  tbr_lt54_percent: "percent",
  tar_gt180_percent: "percent",
  tar_gt250_percent: "percent",
  gmi_percent: "percent",
  previous_gmi_percent: "percent",
  gmi_rise_points: "points",
  cgm_days: "count",
  cgm_wear_fraction: "fraction",
  data_days_in_30: "count",
  hours_since_last_reading: "hours",
  stale_after_hours: "hours",
  flagged_sessions_7_days: "count",
  flagged_of_last_3_readings: "count",
  local_day: "day",
  kind: "readingKind",
  suggest_referral: "flag",
  silent_since: "time",
  meters: "batteries",
};

// Glucose thresholds named in a label (time below 70 mg/dL ...), shown in the user's unit.
const THRESHOLDS_MG_DL: Record<string, number> = {
  tbr_lt70_percent: 70,
  tbr_lt54_percent: 54,
  tar_gt180_percent: 180,
  tar_gt250_percent: 250,
};

// The advice texts of alerts/singles.py, by their English wording.
const ADVICE: Record<string, keyof typeof en.advice> = {
  "re-measure after 1-5 min seated rest; check red-flag symptoms": "remeasure",
  "same-day contact by the family doctor": "sameDay",
  "advise emergency services": "emergency",
  "emergency services": "emergency",
  "12-lead ECG; BP accuracy reduced with irregular pulse": "ecg",
  "check ketones": "ketones",
};

export interface ValueLine {
  key: string;
  label: string;
  text: string;
}

export interface ValueContext {
  t: (key: string, named?: Record<string, unknown>) => string;
  locale: string;
  unit: GlucoseUnit;
  /** The patient's time zone, for reading times. */
  timeZone?: string | null;
}

function many(value: unknown, one: (v: number) => string): string | null {
  if (typeof value === "number" && Number.isFinite(value)) return one(value);
  if (Array.isArray(value) && value.length && value.every((v) => typeof v === "number")) {
    return value.map((v) => one(v as number)).join(", ");
  }
  return null;
}

function words(value: unknown, group: Record<string, string>, prefix: string, ctx: ValueContext): string | null {
  const list = Array.isArray(value) ? value : [value];
  const known = list.filter((v): v is string => typeof v === "string" && v in group);
  return known.length ? known.map((v) => ctx.t(`${prefix}.${v}`)).join(ctx.locale === "zh-CN" ? "、" : ", ") : null;
}

function valueText(kind: Kind, value: unknown, ctx: ValueContext): string | null {
  const { locale, unit, t } = ctx;
  switch (kind) {
    case "mmhg":
      return many(value, (v) => `${formatNumber(v, locale)} mmHg`);
    case "mmhgPerDay":
      return many(value, (v) => t("alertValues.perDay", { value: formatNumber(v, locale, 1) }));
    case "glucose":
      return many(value, (v) => `${formatGlucose(v, unit, locale)} ${unit}`);
    case "glucoseMmol":
      return many(value, (v) => `${formatGlucose(v * MG_DL_PER_MMOL_L, unit, locale)} ${unit}`);
    case "mmol":
      return many(value, (v) => `${formatNumber(v, locale, 1)} mmol/L`);
    case "bpm":
      return many(value, (v) => `${formatNumber(v, locale)} ${t("units.bpm")}`);
    case "count":
      return many(value, (v) => formatNumber(v, locale, Number.isInteger(v) ? 0 : 1));
    case "minutes":
      return many(value, (v) => t("units.minutes", { n: formatNumber(v, locale) }));
    case "hours":
      return many(value, (v) => t("units.hours", { n: formatNumber(v, locale) }));
    case "percent":
      return many(value, (v) => formatPercent(v, locale, 1));
    case "fraction":
      return many(value, (v) => formatPercent(v * 100, locale));
    case "points":
      return many(value, (v) => t("units.percentPoints", { n: formatNumber(v, locale, 1) }));
    case "time":
      return typeof value === "string" ? formatDateTime(value, locale, ctx.timeZone) : null;
    case "day":
      return typeof value === "string" ? formatDate(`${value}T12:00:00Z`, locale, "UTC") : null;
    case "flag":
      return typeof value === "boolean" ? t(value ? "alertValues.yes" : "alertValues.no") : null;
    case "symptoms":
      return words(value, en.symptoms, "symptoms", ctx);
    case "meal":
      return words(value, en.meal, "meal", ctx);
    case "readingKind":
      return words(value, en.readingKind, "readingKind", ctx);
    case "batteries": {
      const levels = Array.isArray(value)
        ? value.map((m) => (m as { battery_percent?: unknown }).battery_percent).filter((v) => typeof v === "number")
        : [];
      return many(levels, (v) => formatPercent(v, locale));
    }
    case "advice": {
      const key = typeof value === "string" ? ADVICE[value] : undefined;
      return key ? t(`advice.${key}`) : null;
    }
  }
}

export function valueLines(values: Record<string, unknown>, ctx: ValueContext): ValueLine[] {
  const lines: ValueLine[] = [];
  for (const [key, value] of Object.entries(values)) {
    const kind = KINDS[key];
    if (!kind || value == null) continue;
    // The engine may give a glucose in both units: show it once, in the user's.
    if (key === "glucose_mmol_l" && values.glucose_mg_dl != null) continue;
    const text = valueText(kind, value, ctx);
    if (text == null || text === "") continue;
    const threshold = THRESHOLDS_MG_DL[key];
    const label = ctx.t(`alertValues.${key}`, {
      threshold: threshold == null ? "" : `${formatGlucose(threshold, ctx.unit, ctx.locale)} ${ctx.unit}`,
    });
    lines.push({ key, label, text });
  }
  // Advice last: it reads as the conclusion.
  return lines.sort((a, b) => Number(a.key === "advice") - Number(b.key === "advice"));
}
