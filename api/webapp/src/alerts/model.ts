/**
 * The inbox's lists: which alerts belong to which view, their order (severity, then age; recent:
 * newest resolution first), and upserting by alert_id so a live update never lists an alert twice.
 * The actions (acknowledge, snooze, resolve, sign off) answer the changed alert.
 */
import { type AlertOut, type AlertView, type Severity, type SnoozeMinutes, api, call } from "../api/client";
import { parseApiTime } from "../format";

export const ALERT_VIEWS: readonly AlertView[] = ["active", "needs_signoff", "recent"];
export const SNOOZE_PRESETS: readonly { minutes: SnoozeMinutes; key: "m15" | "h1" | "h4" | "h24" }[] = [
  { minutes: 15, key: "m15" },
  { minutes: 60, key: "h1" },
  { minutes: 240, key: "h4" },
  { minutes: 1440, key: "h24" },
];
const RECENT_DAYS = 7;

const RANK: Record<Severity, number> = { urgent: 2, warning: 1, info: 0 };

export function isAlertView(value: unknown): value is AlertView {
  return typeof value === "string" && (ALERT_VIEWS as readonly string[]).includes(value);
}

function time(iso: string | null | undefined): number {
  return iso ? parseApiTime(iso).getTime() : 0;
}

/** Whether an alert (as the server last answered) is listed in a view. */
export function belongsTo(view: AlertView, alert: AlertOut, now: Date = new Date()): boolean {
  if (view === "active") return alert.state !== "resolved";
  if (view === "needs_signoff") return alert.needs_signoff && !alert.signed_off_at;
  return alert.state === "resolved" && now.getTime() - time(alert.resolved_at) <= RECENT_DAYS * 86_400_000;
}

export function compareAlerts(view: AlertView): (a: AlertOut, b: AlertOut) => number {
  if (view === "recent") return (a, b) => time(b.resolved_at) - time(a.resolved_at);
  return (a, b) => RANK[b.severity] - RANK[a.severity] || time(a.opened_at) - time(b.opened_at);
}

/** The list with `alert` put in (replacing the same alert_id, unless older) or taken out. */
export function upsertAlert(list: readonly AlertOut[], alert: AlertOut, view: AlertView): AlertOut[] {
  const existing = list.find((a) => a.alert_id === alert.alert_id);
  if (existing && time(existing.updated_at) > time(alert.updated_at)) return [...list];
  const rest = list.filter((a) => a.alert_id !== alert.alert_id);
  if (!belongsTo(view, alert)) return rest;
  return [...rest, alert].sort(compareAlerts(view));
}

export function canAcknowledge(alert: AlertOut): boolean {
  return alert.state === "open" || alert.state === "escalated";
}

export function canSnooze(alert: AlertOut): boolean {
  return alert.state !== "resolved";
}

export function canResolve(alert: AlertOut): boolean {
  return alert.state !== "resolved";
}

export function canSignOff(alert: AlertOut): boolean {
  return alert.needs_signoff && !alert.signed_off_at;
}

const path = (alert_id: string) => ({ params: { path: { alert_id } } });

export function acknowledge(alertId: string): Promise<AlertOut> {
  return call(api.POST("/api/v1/alerts/{alert_id}/ack", path(alertId)));
}

export function snooze(alertId: string, minutes: SnoozeMinutes): Promise<AlertOut> {
  return call(api.POST("/api/v1/alerts/{alert_id}/snooze", { ...path(alertId), body: { minutes } }));
}

export function resolve(alertId: string, note: string): Promise<AlertOut> {
  return call(api.POST("/api/v1/alerts/{alert_id}/resolve", { ...path(alertId), body: { note } }));
}

export function signOff(alertId: string, note: string | null): Promise<AlertOut> {
  return call(api.POST("/api/v1/alerts/{alert_id}/signoff", { ...path(alertId), body: { note } }));
}
