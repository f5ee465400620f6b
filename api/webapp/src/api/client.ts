/**
 * The web app's typed API client. Exports:
 *
 * - api: an openapi-fetch client typed by the API's OpenAPI schema (src/api/schema.d.ts, generated on
 *   every build) with the contract's not-yet-served endpoints (pending.ts). Every request carries the
 *   signed-in user's bearer token; a 401 on any request but sign-in renews the session once and sends
 *   the request again, and ends the session when that fails (session.ts).
 *   Use it as `await call(api.GET("/api/v1/patients/{patient_id}", { params: { path: { patient_id } }, signal }))`.
 * - call(request): the response's data, or throws ApiError (HTTP error, with the API's `code`) or
 *   ApiError with code "network" (no answer). An aborted request throws the AbortError as is.
 * - ApiError: status, code (the API's dotted code: see errors.ts for its wording), field, errors
 *   (validation issues: field, code, limit), retryAfterS.
 * - LatestRequest, STALE (latest.ts): drop responses that arrive after the user moved on.
 * - openEventStream(path, onEvent, signal, onOpen?): server-sent events with the bearer token (fetch, since
 *   EventSource cannot send headers); resolves when the stream ends.
 * - configureAuth({ token, renew, unauthorized }): set by session.ts.
 * - Types: Paths, Me, GlucoseUnit, Role, PanelPage, PanelRow, PanelQuery, PanelSort, AlertOut, AlertDetail,
 *   AlertEventOut, AlertView, RuleId, Severity, AlertState, SnoozeMinutes, ValidationIssue.
 */
import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema";

export { LatestRequest, STALE, type RequestTicket, type Stale } from "./latest";

export type Paths = paths;

type JsonOk<Op> = Op extends { responses: { 200: { content: { "application/json": infer R } } } } ? R : never;
type Method = "get" | "put" | "post" | "delete" | "patch";
export type ResponseOf<P extends keyof Paths, M extends Method> = M extends keyof Paths[P] ? JsonOk<Paths[P][M]> : never;
type QueryOf<P extends keyof Paths> = Paths[P] extends { get: { parameters: { query?: infer Q } } } ? NonNullable<Q> : never;

export type Me = ResponseOf<"/api/v1/me", "get">;
export type GlucoseUnit = Me["glucose_unit"];
export type Role = Me["roles"][number];
export type PanelPage = ResponseOf<"/api/v1/patients", "get">;
export type PanelRow = PanelPage["patients"][number];
export type PanelQuery = QueryOf<"/api/v1/patients">;
export type PanelSort = NonNullable<PanelQuery["sort"]>;
export type AlertOut = ResponseOf<"/api/v1/alerts/{alert_id}/ack", "post">;
export type AlertDetail = ResponseOf<"/api/v1/alerts/{alert_id}", "get">;
export type AlertEventOut = AlertDetail["events"][number];
export type AlertView = NonNullable<QueryOf<"/api/v1/alerts">["view"]>;
export type RuleId = AlertOut["rule_id"];
type BodyOf<P extends keyof Paths> = Paths[P] extends { post: { requestBody?: { content: { "application/json": infer B } } } } ? B : never;
export type SnoozeMinutes = BodyOf<"/api/v1/alerts/{alert_id}/snooze">["minutes"];
export type Severity = components["schemas"]["AlertSeverity"];
export type AlertState = components["schemas"]["AlertState"];

export const SEVERITIES: readonly Severity[] = ["urgent", "warning", "info"];

export interface ValidationIssue {
  field: string | null;
  code: string;
  limit?: number | string | null;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly field: string | null = null,
    readonly errors: readonly ValidationIssue[] = [],
    readonly retryAfterS: number | null = null,
  ) {
    super(`${status} ${code}`);
    this.name = "ApiError";
  }
}

/** The code of an answer without one (a proxy's page, an older server): from its status. */
export function codeForStatus(status: number): string {
  if (status === 401) return "auth.required";
  if (status === 403) return "forbidden";
  if (status === 404) return "not_found";
  if (status === 409) return "conflict";
  if (status === 422) return "validation";
  if (status === 429) return "auth.throttled";
  if (status === 503) return "store.unavailable";
  if (status >= 500) return "server";
  return "unknown";
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function validationIssues(body: Record<string, unknown>): ValidationIssue[] {
  if (Array.isArray(body.errors)) {
    return body.errors.filter(isRecord).map((e) => ({
      field: typeof e.field === "string" ? e.field : null,
      code: typeof e.code === "string" ? e.code : "invalid",
      limit: typeof e.limit === "number" || typeof e.limit === "string" ? e.limit : null,
    }));
  }
  // FastAPI's own 422 list: [{type, loc, ctx}].
  if (Array.isArray(body.detail)) {
    return body.detail.filter(isRecord).map((d) => {
      const loc = Array.isArray(d.loc) ? d.loc : [];
      const last = loc[loc.length - 1];
      const ctx = isRecord(d.ctx) ? d.ctx : {};
      const limit = ctx.ge ?? ctx.gt ?? ctx.le ?? ctx.lt ?? ctx.max_length ?? ctx.min_length ?? null;
      return {
        field: typeof last === "string" ? last : null,
        code: typeof d.type === "string" ? d.type : "invalid",
        limit: typeof limit === "number" || typeof limit === "string" ? limit : null,
      };
    });
  }
  return [];
}

export function apiErrorOf(response: Response, body: unknown): ApiError {
  const retry = Number(response.headers.get("Retry-After"));
  const retryAfterS = Number.isFinite(retry) && retry > 0 ? retry : null;
  if (!isRecord(body)) return new ApiError(response.status, codeForStatus(response.status), null, [], retryAfterS);
  const code = typeof body.code === "string" && body.code ? body.code : codeForStatus(response.status);
  const field = typeof body.field === "string" ? body.field : null;
  return new ApiError(response.status, code, field, validationIssues(body), retryAfterS);
}

export function isAbort(error: unknown): boolean {
  return error instanceof DOMException && error.name === "AbortError";
}

export async function call<T>(request: Promise<{ data?: T; error?: unknown; response: Response }>): Promise<T> {
  let result: { data?: T; error?: unknown; response: Response };
  try {
    result = await request;
  } catch (error) {
    if (isAbort(error)) throw error;
    throw new ApiError(0, "network");
  }
  if (!result.response.ok) throw apiErrorOf(result.response, result.error);
  return result.data as T;
}

let tokenOf: () => string | null = () => null;
let renewSession: () => Promise<boolean> = () => Promise.resolve(false);
let whenUnauthorized: () => void = () => {};

export function configureAuth(options: {
  token: () => string | null;
  renew: () => Promise<boolean>;
  unauthorized: () => void;
}): void {
  tokenOf = options.token;
  renewSession = options.renew;
  whenUnauthorized = options.unauthorized;
}

export const SIGN_IN_PATH = "/api/v1/auth/token";
const AUTH_PATHS = /\/api\/v1\/auth\/(token|refresh|logout)$/;

// Each request as it was before it was sent, to send it once more after a renewal.
const unsent = new WeakMap<Request, Request>();

const bearer: Middleware = {
  onRequest({ request }) {
    const token = tokenOf();
    if (token) request.headers.set("Authorization", `Bearer ${token}`);
    unsent.set(request, request.clone());
    return request;
  },
  async onResponse({ request, response }) {
    if (response.status !== 401 || AUTH_PATHS.test(new URL(request.url).pathname)) return response;
    const again = unsent.get(request);
    if (again && (await renewSession())) {
      again.headers.set("Authorization", `Bearer ${tokenOf() ?? ""}`);
      const retried = await fetch(again);
      if (retried.status !== 401) return retried;
    }
    whenUnauthorized();
    return response;
  },
};

export const api = createClient<Paths>({ baseUrl: globalThis.location?.origin ?? "" });
api.use(bearer);

export interface ServerEvent {
  event: string;
  id: string | null;
  data: string;
}

/** Parse one server-sent-events block ("field: value" lines); null for a comment-only block. */
export function parseEventBlock(block: string): ServerEvent | null {
  let event = "message";
  let id: string | null = null;
  const data: string[] = [];
  for (const line of block.split(/\r?\n/)) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event = value;
    else if (field === "id") id = value;
    else if (field === "data") data.push(value);
  }
  return data.length ? { event, id, data: data.join("\n") } : null;
}

export async function openEventStream(
  path: string,
  onEvent: (event: ServerEvent) => void,
  signal: AbortSignal,
  onOpen: () => void = () => {},
): Promise<void> {
  const open = (): Promise<Response> => {
    const token = tokenOf();
    return fetch(path, {
      headers: { Accept: "text/event-stream", ...(token ? { Authorization: `Bearer ${token}` } : {}) },
      signal,
      cache: "no-store",
    });
  };
  let response = await open();
  if (response.status === 401 && (await renewSession())) response = await open();
  if (response.status === 401) whenUnauthorized();
  if (!response.ok || !response.body) throw apiErrorOf(response, await response.json().catch(() => null));
  onOpen();
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end: number;
    while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
      const event = parseEventBlock(block);
      if (event) onEvent(event);
    }
  }
}
