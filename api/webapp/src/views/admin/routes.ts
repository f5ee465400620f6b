// Child routes of /admin (rendered inside AdminHome.vue's <router-view>). Only clinic
// administrators reach them (router.ts, meta.roles on /admin). A route with meta.navLabel (an i18n
// key) is a tab of the administration area's navigation, in this order.
// `setPasswordRoute` is public (no sign-in): where an account's holder uses a one-time code.
import type { RouteRecordRaw } from "vue-router";

declare module "vue-router" {
  interface RouteMeta {
    navLabel?: string;
  }
}

const adminRoutes: RouteRecordRaw[] = [
  { path: "", name: "admin", redirect: { name: "admin-patients" } },
  {
    path: "patients",
    name: "admin-patients",
    component: () => import("./PatientsView.vue"),
    meta: { navLabel: "admin.nav.patients" },
  },
  {
    path: "patients/:patientId",
    name: "admin-patient",
    component: () => import("./PatientAdminView.vue"),
    props: true,
  },
  {
    path: "meters",
    name: "admin-meters",
    component: () => import("./MetersView.vue"),
    meta: { navLabel: "admin.nav.meters" },
  },
  {
    path: "gateways",
    name: "admin-gateways",
    component: () => import("./GatewaysView.vue"),
    meta: { navLabel: "admin.nav.gateways" },
  },
  { path: "fleet", name: "admin-fleet", component: () => import("./FleetView.vue"), meta: { navLabel: "fleet.title" } },
  { path: "reports", name: "admin-reports", component: () => import("./MonthlyReportView.vue"), meta: { navLabel: "reports.monthly.title" } },
  {
    path: "accounts",
    name: "admin-accounts",
    component: () => import("./AccountsView.vue"),
    meta: { navLabel: "admin.nav.accounts" },
  },
  {
    path: "settings",
    name: "admin-settings",
    component: () => import("./SettingsView.vue"),
    meta: { navLabel: "admin.nav.settings" },
  },
];

export const setPasswordRoute: RouteRecordRaw = {
  path: "/set-password",
  name: "set-password",
  component: () => import("./SetPasswordView.vue"),
  meta: { public: true },
};

export default adminRoutes;
