/**
 * The administration API (/api/v1/admin/..., clinic administrators only), typed by the OpenAPI
 * schema. Each function answers the data or throws ApiError (client.ts); the views word the error
 * with adminErrorText (text.ts).
 */
import { api, call } from "../../api/client";
import type { components } from "../../api/schema";

type Schemas = components["schemas"];
export type ClinicSettings = Schemas["ClinicSettingsOut"];
export type ClinicSettingsIn = Schemas["ClinicSettingsIn"];
export type Account = Schemas["AccountOut"];
export type AccountIn = Schemas["AccountIn"];
export type AccountCreated = Schemas["AccountCreated"];
export type ResetCode = Schemas["ResetCodeOut"];
export type Role = Account["roles"][number];
export type Patient = Schemas["EnrolledPatientOut"];
export type PatientIn = Schemas["PatientIn"];
export type PatientUpdateIn = Schemas["PatientUpdateIn"];
export type TeamRole = Schemas["CareTeamMemberIn"]["team_role"];
export type Gateway = Schemas["GatewayOut"];
export type InstallerFile = Schemas["InstallerFile"];
export type Meter = Schemas["RegisteredMeterOut"];
export type MeterIn = Schemas["MeterIn"];
export type MeterKind = Meter["kind"];
export type Binding = Schemas["BindingOut"];
export type BindIn = Schemas["BindIn"];
export type BindingChange = Schemas["BindingChange"];
export type ConfigDelivery = BindingChange["gateway_config"];
export type GuidelineProfile = ClinicSettings["guideline_profile"];
export type GlucoseUnit = ClinicSettings["glucose_unit"];

export const ROLES: readonly Role[] = ["family_doctor", "clinic_staff", "clinic_admin"];
export const TEAM_ROLES: readonly TeamRole[] = ["family_doctor", "clinic_staff"];
export const PROFILES: readonly GuidelineProfile[] = ["cn", "eu", "us"];
export const GLUCOSE_UNITS: readonly GlucoseUnit[] = ["mmol/L", "mg/dL"];
export const METER_KINDS: readonly MeterKind[] = ["blood_pressure", "glucose"];

const user = (user_id: string) => ({ params: { path: { user_id } } });
const patient = (patient_id: string) => ({ params: { path: { patient_id } } });
const gateway = (gateway_id: string) => ({ params: { path: { gateway_id } } });
const binding = (binding_id: number) => ({ params: { path: { binding_id } } });

export const adminApi = {
  clinic: () => call(api.GET("/api/v1/admin/clinic")),
  updateClinic: (body: ClinicSettingsIn) => call(api.PATCH("/api/v1/admin/clinic", { body })),

  accounts: () => call(api.GET("/api/v1/admin/accounts")),
  createAccount: (body: AccountIn) => call(api.POST("/api/v1/admin/accounts", { body })),
  setRoles: (id: string, roles: Role[]) =>
    call(api.PUT("/api/v1/admin/accounts/{user_id}/roles", { ...user(id), body: { roles } })),
  deactivate: (id: string) => call(api.POST("/api/v1/admin/accounts/{user_id}/deactivate", user(id))),
  reactivate: (id: string) => call(api.POST("/api/v1/admin/accounts/{user_id}/reactivate", user(id))),
  unlock: (id: string) => call(api.POST("/api/v1/admin/accounts/{user_id}/unlock", user(id))),
  resetCode: (id: string) => call(api.POST("/api/v1/admin/accounts/{user_id}/password-reset", user(id))),
  setPassword: (code: string, new_password: string) =>
    call(api.POST("/api/v1/auth/password-reset", { body: { code, new_password } })),

  patients: () => call(api.GET("/api/v1/admin/patients")),
  patient: (id: string) => call(api.GET("/api/v1/admin/patients/{patient_id}", patient(id))),
  enrol: (body: PatientIn) => call(api.POST("/api/v1/admin/patients", { body })),
  updatePatient: (id: string, body: PatientUpdateIn) =>
    call(api.PATCH("/api/v1/admin/patients/{patient_id}", { ...patient(id), body })),
  addMember: (id: string, user_id: string, team_role: TeamRole) =>
    call(api.POST("/api/v1/admin/patients/{patient_id}/care-team", { ...patient(id), body: { user_id, team_role } })),
  removeMember: (id: string, user_id: string) =>
    call(
      api.DELETE("/api/v1/admin/patients/{patient_id}/care-team/{user_id}", {
        params: { path: { patient_id: id, user_id } },
      }),
    ),
  discharge: (id: string) => call(api.POST("/api/v1/admin/patients/{patient_id}/discharge", patient(id))),
  readmit: (id: string) => call(api.POST("/api/v1/admin/patients/{patient_id}/readmit", patient(id))),

  gateways: () => call(api.GET("/api/v1/admin/gateways")),
  provision: (gateway_id: string) => call(api.POST("/api/v1/admin/gateways", { body: { gateway_id } })),
  deactivateGateway: (id: string) => call(api.POST("/api/v1/admin/gateways/{gateway_id}/deactivate", gateway(id))),
  reactivateGateway: (id: string) => call(api.POST("/api/v1/admin/gateways/{gateway_id}/reactivate", gateway(id))),
  rotate: (id: string) => call(api.POST("/api/v1/admin/gateways/{gateway_id}/rotate-credentials", gateway(id))),
  publishConfig: (id: string) => call(api.POST("/api/v1/admin/gateways/{gateway_id}/publish-config", gateway(id))),

  meters: () => call(api.GET("/api/v1/admin/meters")),
  registerMeter: (body: MeterIn) => call(api.POST("/api/v1/admin/meters", { body })),
  bindings: (patient_id?: string) =>
    call(api.GET("/api/v1/admin/bindings", { params: { query: patient_id ? { patient_id } : {} } })),
  bind: (body: BindIn) => call(api.POST("/api/v1/admin/bindings", { body })),
  unbind: (id: number, unbound_at: string | null) =>
    call(api.POST("/api/v1/admin/bindings/{binding_id}/unbind", { ...binding(id), body: { unbound_at } })),
  move: (id: number, patient_id: string, device_user_id: number | null, prior_memory_belongs: boolean) =>
    call(
      api.POST("/api/v1/admin/bindings/{binding_id}/move", {
        ...binding(id),
        body: { patient_id, device_user_id, prior_memory_belongs },
      }),
    ),
};
