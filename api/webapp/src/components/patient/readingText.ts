/**
 * Readings in words, for tooltips and tables: value, time in the patient's zone, time of day or
 * meal, device, and for an error reading its reasons (never its values). Also which readings count
 * as morning or evening: by the hours the server's summary used (SessionMean start_hour, end_hour).
 */
import {
  type GlucoseUnit,
  formatBp,
  formatDateTime,
  formatGlucose,
  formatNumber,
} from "../../format";
import type { MeasurementSession } from "../charts/bloodPressureOption";
import { type MealContext, mealOf } from "../charts/glucoseOption";
import { wallClockHour } from "../charts/time";
import type { BloodPressureReading, BloodPressureSummary, GlucoseReading } from "./api";
import { reasonMessage } from "./invalidReasons";

export interface TextContext {
  t: (key: string, named?: Record<string, unknown>) => string;
  locale: string;
  timeZone: string;
  unit: GlucoseUnit;
}

interface DeviceLike {
  device: { manufacturer: string; model: string };
}

export function deviceText(reading: DeviceLike): string {
  return `${reading.device.manufacturer} ${reading.device.model}`;
}

export function listSeparator(locale: string): string {
  return locale.startsWith("zh") ? "；" : "; ";
}

interface Reasoned {
  invalid_reasons: readonly string[];
  exclusion_reasons?: readonly string[];
}

/**
 * Each reason of an invalid reading, worded: from the reading's reasons (which value, which limit),
 * else from the server's exclusion codes, else a general one.
 */
export function reasonsText(reading: Reasoned, ctx: TextContext): string[] {
  const words: string[] = [];
  for (const reason of reading.invalid_reasons) {
    const { key, params } = reasonMessage(reason);
    if (key === "other") continue;
    const named: Record<string, string> = { ...params };
    if (params.field) named.field = ctx.t(`patient.reasonFields.${params.field}`);
    if (params.unit === "bpm") named.unit = ctx.t("patient.bp.unitPulse");
    if (params.field === "glucose_mg_dl" && params.limit) {
      named.limit = formatGlucose(Number(params.limit), ctx.unit, ctx.locale);
      named.unit = ctx.unit;
    }
    if (params.status) named.status = ctx.t(`patient.sensorStatus.${params.status}`);
    words.push(ctx.t(`patient.reasons.${key}`, named));
  }
  if (!words.length) {
    for (const code of reading.exclusion_reasons ?? []) {
      if (EXCLUSION_CODES.has(code)) words.push(ctx.t(`patient.excluded.reasons.${code}`));
    }
  }
  const unique = [...new Set(words)];
  return unique.length ? unique : [ctx.t("patient.reasons.other")];
}

const EXCLUSION_CODES = new Set([
  "not_measured",
  "implausible_value",
  "body_movement",
  "cuff_too_loose",
  "improper_position",
  "control_solution",
  "result_too_high",
  "result_too_low",
  "sensor_fault",
  "device_error",
]);

const KNOWN_FLAGS = new Set([
  "body_movement",
  "cuff_too_loose",
  "irregular_pulse",
  "pulse_rate_above_range",
  "pulse_rate_below_range",
  "improper_position",
]);

export function cuffFlagsText(reading: BloodPressureReading, ctx: TextContext): string | null {
  const flags = (reading.measurement_status ?? []).filter((flag) => KNOWN_FLAGS.has(flag));
  if (!flags.length) return null;
  return flags.map((flag) => ctx.t(`patient.cuffFlags.${flag}`)).join(listSeparator(ctx.locale));
}

/** The reading's status in words: valid, flagged by the cuff, or an error with its reasons. */
export function statusText(reading: BloodPressureReading | GlucoseReading, ctx: TextContext): string {
  if (!reading.valid) {
    return ctx.t("patient.status.invalid", {
      reasons: reasonsText(reading, ctx).join(listSeparator(ctx.locale)),
    });
  }
  if (reading.kind === "blood_pressure") {
    const flags = cuffFlagsText(reading, ctx);
    if (flags) return ctx.t("patient.status.flagged", { flags });
  }
  return ctx.t("patient.status.valid");
}

// --- Morning and evening -------------------------------------------------------------------------

export type SessionOf = (reading: { measured_at: string }) => MeasurementSession;

function within(hour: number, start: number, end: number): boolean {
  return start <= end ? hour >= start && hour < end : hour >= start || hour < end;
}

/**
 * Morning or evening by the hours of the server's session means. Without a morning (or evening)
 * mean the server found no such valid reading, so none is marked as one.
 */
export function sessionClassifier(summary: BloodPressureSummary | null, timeZone: string): SessionOf {
  const morning = summary?.morning_mean ?? null;
  const evening = summary?.evening_mean ?? null;
  return (reading) => {
    const hour = wallClockHour(reading.measured_at, timeZone);
    if (morning && within(hour, morning.start_hour, morning.end_hour)) return "morning";
    if (evening && within(hour, evening.start_hour, evening.end_hour)) return "evening";
    return "other";
  };
}

// --- Tooltips ----------------------------------------------------------------------------------------

export function bloodPressureLines(
  reading: BloodPressureReading,
  sessionOf: SessionOf,
  ctx: TextContext,
): string[] {
  const time = formatDateTime(reading.measured_at, ctx.locale, ctx.timeZone);
  if (!reading.valid) {
    return [
      ctx.t("patient.bp.errors"),
      time,
      ...reasonsText(reading, ctx),
      deviceText(reading),
    ];
  }
  const lines = [
    ctx.t("patient.bp.value", { value: formatBp(reading.systolic_mmhg, reading.diastolic_mmhg, ctx.locale) }),
  ];
  if (reading.pulse_bpm != null) {
    lines.push(ctx.t("patient.bp.pulseValue", { value: formatNumber(reading.pulse_bpm, ctx.locale) }));
  }
  lines.push(`${time} · ${ctx.t(`patient.session.${sessionOf(reading)}`)}`);
  const flags = cuffFlagsText(reading, ctx);
  if (flags) lines.push(ctx.t("patient.status.flagged", { flags }));
  lines.push(deviceText(reading));
  return lines;
}

export function mealText(reading: GlucoseReading, ctx: TextContext): string {
  const meal: MealContext = mealOf(reading);
  return ctx.t(`patient.glucose.meals.${meal}`);
}

export function glucoseValueText(mgDl: number | null | undefined, ctx: TextContext): string {
  return ctx.t("patient.glucose.value", { value: formatGlucose(mgDl, ctx.unit, ctx.locale), unit: ctx.unit });
}

export function glucoseLines(reading: GlucoseReading, ctx: TextContext): string[] {
  const time = formatDateTime(reading.measured_at, ctx.locale, ctx.timeZone);
  if (!reading.valid) {
    return [
      ctx.t("patient.glucose.errors"),
      time,
      ...reasonsText(reading, ctx),
      mealText(reading, ctx),
      deviceText(reading),
    ];
  }
  return [glucoseValueText(reading.glucose_mg_dl, ctx), time, mealText(reading, ctx), deviceText(reading)];
}

// --- Latest glucose ------------------------------------------------------------------------------

export interface LatestGlucose {
  glucose_mg_dl: number;
  measured_at: string;
}

/** The most recent valid glucose reading of a list (as the server sent it), or null. */
export function latestValidGlucose(readings: readonly GlucoseReading[]): LatestGlucose | null {
  let latest: LatestGlucose | null = null;
  for (const reading of readings) {
    if (!reading.valid || reading.glucose_mg_dl == null) continue;
    if (!latest || Date.parse(reading.measured_at) > Date.parse(latest.measured_at)) {
      latest = { glucose_mg_dl: reading.glucose_mg_dl, measured_at: reading.measured_at };
    }
  }
  return latest;
}
