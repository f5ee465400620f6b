/**
 * The JSON API contract (helpers' WORKSPACE_API) for endpoints whose server side is not in the
 * generated schema yet, in openapi-typescript's shape. `Paths` in client.ts lets each entry here
 * replace the generated one of the same path; an entry is deleted as soon as the server serves it,
 * so from then on the generated types alone decide.
 */
import type { components } from "./schema";

type Json<T> = { headers: { [name: string]: unknown }; content: { "application/json": T } };
type NoParameters = { query?: never; header?: never; path?: never; cookie?: never };
type Responses<T> = { 200: Json<T>; 422: Json<unknown> };
type Item = {
  parameters: NoParameters;
  get?: never;
  put?: never;
  post?: never;
  delete?: never;
  options?: never;
  head?: never;
  patch?: never;
  trace?: never;
};

type Severity = components["schemas"]["AlertSeverity"];
type AlertState = components["schemas"]["AlertState"];
type GlucoseUnit = "mmol/L" | "mg/dL";
type Role = "family_doctor" | "clinic_staff" | "clinic_admin";

export interface PendingMe {
  user_id: string;
  display_name: string;
  roles: Role[];
  clinic: {
    clinic_id: string;
    name: string;
    timezone: string;
    guideline_profile: string;
    glucose_unit: GlucoseUnit;
  };
  glucose_unit_override: GlucoseUnit | null;
  glucose_unit: GlucoseUnit;
}

export interface PendingGateway {
  gateway_id: string;
  state: "online" | "offline" | "unknown";
  last_seen_at: string | null;
}

export interface PendingPanelRow {
  patient_id: string;
  given_name: string;
  family_name: string;
  timezone: string;
  alerts: {
    highest_severity: Severity | null;
    counts: { [severity: string]: number };
    active: number;
    oldest_unhandled_at: string | null;
    needs_signoff: number;
  };
  last_reading_at: string | null;
  blood_pressure: {
    mean_systolic_mmhg: number;
    mean_diastolic_mmhg: number;
    readings: number;
    days: number;
    category: "below_target" | "at_target" | "above_target" | "insufficient";
    target_systolic_mmhg: number;
    target_diastolic_mmhg: number;
  } | null;
  glucose: {
    latest_mg_dl: number;
    latest_at: string;
    time_in_range_percent: number | null;
    readings_14d: number;
  } | null;
  days_with_data_30: number;
  gateway: PendingGateway | null;
}

export interface PendingPanelPage {
  total: number;
  offset: number;
  limit: number;
  patients: PendingPanelRow[];
}

export type PanelSort =
  | "urgency"
  | "name"
  | "last_seen"
  | "bp_mean"
  | "glucose_latest"
  | "time_in_range"
  | "days_with_data"
  | "gateway";
export type AlertStateFilter = "any" | "active" | "none" | "needs_signoff";

export interface PendingAlertOut {
  alert_id: string;
  patient_id: string;
  patient_given_name: string;
  patient_family_name: string;
  rule_id: string;
  title: string;
  citation: string;
  severity: Severity;
  state: AlertState;
  opened_at: string;
  updated_at: string;
  resolved_at: string | null;
  acknowledged_at: string | null;
  acknowledged_by: string | null;
  snoozed_until: string | null;
  escalation_level: number;
  window_start: string | null;
  window_end: string | null;
  values: { [key: string]: unknown };
  reading_ids: string[];
  needs_signoff: boolean;
  signed_off_at: string | null;
  signed_off_by: string | null;
  resolved_by: string | null;
  resolution_note: string | null;
}

export interface PendingAlertEvent {
  at: string;
  actor: string;
  actor_name: string | null;
  event: string;
  from_state: AlertState | null;
  to_state: AlertState | null;
  severity: Severity | null;
  details: { [key: string]: unknown };
}

export interface PendingAlertDetail extends PendingAlertOut {
  events: PendingAlertEvent[];
}

type AlertPath = { path: { alert_id: string }; query?: never; header?: never; cookie?: never };
type AlertAction<Body> = Omit<Item, "parameters" | "post"> & {
  parameters: AlertPath;
  post: { parameters: AlertPath; responses: Responses<PendingAlertOut> } & ([Body] extends [never]
    ? { requestBody?: never }
    : { requestBody: { content: { "application/json": Body } } });
};

export type PendingPaths = {
  "/api/v1/me": Omit<Item, "get"> & {
    get: { parameters: NoParameters; requestBody?: never; responses: Responses<PendingMe> };
  };
  "/api/v1/me/preferences": Omit<Item, "put"> & {
    put: {
      parameters: NoParameters;
      requestBody: { content: { "application/json": { glucose_unit_override: GlucoseUnit | null } } };
      responses: Responses<PendingMe>;
    };
  };
  "/api/v1/patients": Omit<Item, "get"> & {
    get: {
      parameters: {
        query?: {
          sort?: PanelSort;
          order?: "asc" | "desc";
          q?: string;
          alert_state?: AlertStateFilter;
          no_data_days?: number;
          offset?: number;
          limit?: number;
        };
        header?: never;
        path?: never;
        cookie?: never;
      };
      requestBody?: never;
      responses: Responses<PendingPanelPage>;
    };
  };
  "/api/v1/alerts": Omit<Item, "get"> & {
    get: {
      parameters: {
        query?: { view?: "active" | "needs_signoff" | "recent"; patient_id?: string; limit?: number };
        header?: never;
        path?: never;
        cookie?: never;
      };
      requestBody?: never;
      responses: Responses<PendingAlertOut[]>;
    };
  };
  "/api/v1/alerts/{alert_id}": Omit<Item, "get" | "parameters"> & {
    parameters: AlertPath;
    get: { parameters: AlertPath; requestBody?: never; responses: Responses<PendingAlertDetail> };
  };
  "/api/v1/alerts/{alert_id}/ack": AlertAction<never>;
  "/api/v1/alerts/{alert_id}/snooze": AlertAction<{ minutes: number }>;
  "/api/v1/alerts/{alert_id}/resolve": AlertAction<{ note: string }>;
  "/api/v1/alerts/{alert_id}/signoff": AlertAction<{ note?: string | null }>;
};
