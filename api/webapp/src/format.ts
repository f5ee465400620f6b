/**
 * Formatting for display. The API's values are canonical (mmHg, mg/dL, UTC times); these helpers
 * only present them, in the user's unit and locale. Exports:
 *
 * - MG_DL_PER_MMOL_L: 18.01559, the factor of vitals/units.py.
 * - GlucoseUnit: "mmol/L" | "mg/dL".
 * - glucoseInUnit(mgDl, unit): number in the unit (not rounded).
 * - glucoseFromUnit(value, unit): mg/dL from a number typed in the unit (for forms).
 * - formatGlucose(mgDl, unit, locale): "7.0" (mmol/L, 1 decimal) or "126" (mg/dL, whole); "–" for null.
 * - glucoseDecimals(unit): 1 or 0.
 * - formatMmHg(value, locale): whole mmHg; formatBp(sys, dia, locale): "135/85".
 * - formatNumber(value, locale, decimals), formatPercent(value, locale, decimals): "72%".
 * - parseApiTime(iso): Date; a time without an offset is read as UTC (the API stores UTC).
 * - formatDateTime(iso, locale, timeZone?): date and time in the user's locale, in `timeZone`
 *   (the patient's zone where a patient's reading time is shown) or the browser's zone.
 * - formatDate(iso, locale, timeZone?), formatTime(iso, locale, timeZone?).
 * - formatRelative(iso, locale, now?): "3 hours ago" / "3小时前".
 * - personName({given_name, family_name}): family name first; no space between CJK names.
 * - NO_VALUE: the dash shown where there is no value.
 */

export const MG_DL_PER_MMOL_L = 18.01559;
export const NO_VALUE = "–";

export type GlucoseUnit = "mmol/L" | "mg/dL";

export function glucoseInUnit(mgDl: number, unit: GlucoseUnit): number {
  return unit === "mg/dL" ? mgDl : mgDl / MG_DL_PER_MMOL_L;
}

export function glucoseFromUnit(value: number, unit: GlucoseUnit): number {
  return unit === "mg/dL" ? value : value * MG_DL_PER_MMOL_L;
}

export function glucoseDecimals(unit: GlucoseUnit): number {
  return unit === "mg/dL" ? 0 : 1;
}

export function formatNumber(value: number | null | undefined, locale: string, decimals = 0): string {
  if (value == null || !Number.isFinite(value)) return NO_VALUE;
  return new Intl.NumberFormat(locale, {
    minimumFractionDigits: decimals,
    maximumFractionDigits: decimals,
    useGrouping: false,
  }).format(value);
}

export function formatGlucose(mgDl: number | null | undefined, unit: GlucoseUnit, locale: string): string {
  if (mgDl == null || !Number.isFinite(mgDl)) return NO_VALUE;
  return formatNumber(glucoseInUnit(mgDl, unit), locale, glucoseDecimals(unit));
}

export function formatMmHg(value: number | null | undefined, locale: string): string {
  return formatNumber(value, locale, 0);
}

export function formatBp(
  systolic: number | null | undefined,
  diastolic: number | null | undefined,
  locale: string,
): string {
  if (systolic == null || diastolic == null) return NO_VALUE;
  return `${formatMmHg(systolic, locale)}/${formatMmHg(diastolic, locale)}`;
}

export function formatPercent(value: number | null | undefined, locale: string, decimals = 0): string {
  if (value == null || !Number.isFinite(value)) return NO_VALUE;
  return new Intl.NumberFormat(locale, {
    style: "percent",
    minimumFractionDigits: decimals,
    maximumFractionDigits: decimals,
  }).format(value / 100);
}

const HAS_OFFSET = /(?:[zZ]|[+-]\d\d:?\d\d)$/;

export function parseApiTime(iso: string): Date {
  return new Date(HAS_OFFSET.test(iso) ? iso : `${iso}Z`);
}

function validZone(timeZone: string | null | undefined): string | undefined {
  if (!timeZone) return undefined;
  try {
    new Intl.DateTimeFormat("en", { timeZone });
    return timeZone;
  } catch {
    return undefined;
  }
}

export function formatDateTime(
  iso: string | null | undefined,
  locale: string,
  timeZone?: string | null,
): string {
  if (!iso) return NO_VALUE;
  const date = parseApiTime(iso);
  if (Number.isNaN(date.getTime())) return NO_VALUE;
  return new Intl.DateTimeFormat(locale, {
    dateStyle: "medium",
    timeStyle: "short",
    timeZone: validZone(timeZone),
  }).format(date);
}

export function formatDate(iso: string | null | undefined, locale: string, timeZone?: string | null): string {
  if (!iso) return NO_VALUE;
  const date = parseApiTime(iso);
  if (Number.isNaN(date.getTime())) return NO_VALUE;
  return new Intl.DateTimeFormat(locale, { dateStyle: "medium", timeZone: validZone(timeZone) }).format(date);
}

export function formatTime(iso: string | null | undefined, locale: string, timeZone?: string | null): string {
  if (!iso) return NO_VALUE;
  const date = parseApiTime(iso);
  if (Number.isNaN(date.getTime())) return NO_VALUE;
  return new Intl.DateTimeFormat(locale, { timeStyle: "short", timeZone: validZone(timeZone) }).format(date);
}

const RELATIVE_STEPS: ReadonlyArray<[Intl.RelativeTimeFormatUnit, number]> = [
  ["second", 60],
  ["minute", 60],
  ["hour", 24],
  ["day", 30],
  ["month", 12],
  ["year", Number.POSITIVE_INFINITY],
];

export function formatRelative(iso: string | null | undefined, locale: string, now: Date = new Date()): string {
  if (!iso) return NO_VALUE;
  const date = parseApiTime(iso);
  if (Number.isNaN(date.getTime())) return NO_VALUE;
  let amount = (date.getTime() - now.getTime()) / 1000;
  const format = new Intl.RelativeTimeFormat(locale, { numeric: "auto" });
  for (const [unit, size] of RELATIVE_STEPS) {
    if (Math.abs(amount) < size) return format.format(Math.round(amount), unit);
    amount /= size;
  }
  return format.format(Math.round(amount), "year");
}

const CJK = /[\u3400-\u9fff\uf900-\ufaff]/;

export function personName(person: { given_name: string; family_name: string }): string {
  const { given_name: given, family_name: family } = person;
  if (CJK.test(given) && CJK.test(family)) return `${family}${given}`;
  return `${family} ${given}`.trim();
}
