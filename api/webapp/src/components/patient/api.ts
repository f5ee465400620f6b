/**
 * The patient page's requests: the patient, the server's summary, the readings of each kind, the
 * targets and the patient's alerts. Each takes the AbortSignal of the page's stale-response guard.
 * Types come from the generated OpenAPI schema, so a changed API breaks the build.
 */
import { type AlertDetail, type AlertOut, api, call } from "../../api/client";
import { wallClockMs } from "../charts/time";
import type { components } from "../../api/schema";

type Schemas = components["schemas"];
export type BloodPressureReading = Schemas["BloodPressureReadingOut"];
export type GlucoseReading = Schemas["GlucoseReadingOut"];
export type TargetsIn = Schemas["TargetsIn"];
export type RulesUse = Schemas["RulesUse"];
export type TargetsOut = Schemas["TargetsOut"];
export type Patient = Schemas["PatientOut"];
export type PatientSummary = Schemas["PatientSummary"];
export type BloodPressureSummary = PatientSummary["blood_pressure"];
export type GlucoseSummary = PatientSummary["glucose"];
export type ExclusionReason = BloodPressureReading["exclusion_reasons"][number];

const client = api;

/** The ranges the page offers, in days (the summary accepts exactly these). */
export const RANGE_DAYS = [7, 14, 30, 90, 365] as const;
export type RangeDays = (typeof RANGE_DAYS)[number];
export const DEFAULT_RANGE: RangeDays = 30;
export const MAX_READINGS = 10_000;

export function isRangeDays(value: unknown): value is RangeDays {
  return (RANGE_DAYS as readonly unknown[]).includes(value);
}

export function fetchPatient(patientId: string, signal: AbortSignal): Promise<Patient> {
  return call(client.GET("/api/v1/patients/{patient_id}", { params: { path: { patient_id: patientId } }, signal }));
}

export function fetchSummary(patientId: string, days: RangeDays, signal: AbortSignal): Promise<PatientSummary> {
  return call(
    client.GET("/api/v1/patients/{patient_id}/summary", {
      params: { path: { patient_id: patientId }, query: { days } },
      signal,
    }),
  );
}

export interface ReadingWindow {
  start: string;
  end: string;
}

/**
 * The instants a range of `days` covers, as the server's summary counts them: from midnight of the
 * first of `days` local calendar days in the patient's time zone (today included) until now.
 */
export function readingWindow(days: RangeDays, timeZone: string, now: Date = new Date()): ReadingWindow {
  const today = new Date(wallClockMs(now, timeZone));
  const firstDay = Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate() - (days - 1));
  // The instant whose wall clock reads that midnight: the zone's offset then (twice, for a change
  // of offset between now and then).
  let start = firstDay;
  for (let i = 0; i < 2; i += 1) start = firstDay - (wallClockMs(start, timeZone) - start);
  return { start: new Date(start).toISOString(), end: now.toISOString() };
}

export async function fetchBloodPressure(
  patientId: string,
  window: ReadingWindow,
  signal: AbortSignal,
): Promise<BloodPressureReading[]> {
  const list = await call(
    client.GET("/api/v1/patients/{patient_id}/readings", {
      params: {
        path: { patient_id: patientId },
        query: { kind: "blood_pressure", start: window.start, end: window.end, limit: MAX_READINGS },
      },
      signal,
    }),
  );
  return list.readings.filter((r): r is BloodPressureReading => r.kind === "blood_pressure");
}

export async function fetchGlucose(
  patientId: string,
  window: ReadingWindow,
  signal: AbortSignal,
): Promise<GlucoseReading[]> {
  const list = await call(
    client.GET("/api/v1/patients/{patient_id}/readings", {
      params: {
        path: { patient_id: patientId },
        query: { kind: "glucose", start: window.start, end: window.end, limit: MAX_READINGS },
      },
      signal,
    }),
  );
  return list.readings.filter((r): r is GlucoseReading => r.kind === "glucose");
}

export function fetchTargets(patientId: string, signal: AbortSignal): Promise<TargetsOut> {
  return call(
    client.GET("/api/v1/patients/{patient_id}/targets", { params: { path: { patient_id: patientId } }, signal }),
  );
}

export function saveTargets(patientId: string, body: TargetsIn): Promise<TargetsOut> {
  return call(
    client.PUT("/api/v1/patients/{patient_id}/targets", { params: { path: { patient_id: patientId } }, body }),
  );
}

export interface PatientAlerts {
  active: AlertOut[];
  recent: AlertOut[];
}

/** The patient's active alerts and those resolved in the last 7 days. */
export async function fetchPatientAlerts(patientId: string, signal: AbortSignal): Promise<PatientAlerts> {
  const list = (view: "active" | "recent") =>
    call(api.GET("/api/v1/alerts", { params: { query: { view, patient_id: patientId, limit: 200 } }, signal }));
  const [active, recent] = await Promise.all([list("active"), list("recent")]);
  return { active, recent };
}

export function fetchAlertDetail(alertId: string, signal: AbortSignal): Promise<AlertDetail> {
  return call(api.GET("/api/v1/alerts/{alert_id}", { params: { path: { alert_id: alertId } }, signal }));
}
