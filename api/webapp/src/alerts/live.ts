/**
 * Live alert updates: one server-sent-events stream per signed-in tab (GET /api/v1/alerts/events,
 * bearer token in the header). Each event names an alert_id; the alert is read once
 * (GET /api/v1/alerts/{id}) and handed to every listener, which upserts it by alert_id, so an alert
 * is never listed twice. A dropped stream reconnects after RECONNECT_MS.
 */
import { ref } from "vue";
import { type AlertDetail, api, call, isAbort, openEventStream } from "../api/client";

export const RECONNECT_MS = 5000;

export interface LiveAlert {
  /** The lifecycle event: opened, acknowledged, snoozed, resolved, escalated, signed_off, ... */
  event: string;
  alert: AlertDetail;
}

type Listener = (update: LiveAlert) => void;
const listeners = new Set<Listener>();
export const liveConnected = ref(false);

let controller: AbortController | null = null;
let retry: ReturnType<typeof setTimeout> | null = null;

export function onLiveAlert(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

interface EventBody {
  alert_id?: unknown;
  event?: unknown;
}

async function deliver(data: string, signal: AbortSignal): Promise<void> {
  let body: EventBody;
  try {
    body = JSON.parse(data) as EventBody;
  } catch {
    return;
  }
  if (typeof body.alert_id !== "string") return;
  try {
    const alert = await call(
      api.GET("/api/v1/alerts/{alert_id}", { params: { path: { alert_id: body.alert_id } }, signal }),
    );
    if (signal.aborted) return;
    const update = { event: typeof body.event === "string" ? body.event : "changed", alert };
    for (const listener of listeners) listener(update);
  } catch (error) {
    if (!isAbort(error)) console.warn("alert update not read", error);
  }
}

async function connect(signal: AbortSignal): Promise<void> {
  try {
    await openEventStream(
      "/api/v1/alerts/events",
      (event) => {
        if (event.event === "alert") void deliver(event.data, signal);
      },
      signal,
      () => {
        liveConnected.value = true;
      },
    );
  } catch (error) {
    if (isAbort(error) || signal.aborted) return;
  } finally {
    liveConnected.value = false;
  }
  if (!signal.aborted) retry = setTimeout(() => void connect(signal), RECONNECT_MS);
}

export function startLiveAlerts(): void {
  if (controller) return;
  controller = new AbortController();
  liveConnected.value = false;
  void connect(controller.signal);
}

export function stopLiveAlerts(): void {
  controller?.abort();
  controller = null;
  if (retry !== null) clearTimeout(retry);
  retry = null;
  liveConnected.value = false;
}
