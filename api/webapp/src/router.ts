/**
 * Routes (under /app/). Every view is loaded on demand, so the first load carries only the shell.
 * Signed-out users are sent to /signin with `next`, and come back there after signing in.
 * /admin is for clinic administrators; its child routes are in views/admin/routes.ts.
 * Notification links (/app/?alert=ID) open that alert.
 */
import { createRouter, createWebHistory, type RouteLocationNormalized, type RouteRecordRaw } from "vue-router";
import { loadMe, session } from "./session";
import adminRoutes, { setPasswordRoute } from "./views/admin/routes";

declare module "vue-router" {
  interface RouteMeta {
    public?: boolean;
    roles?: readonly ("family_doctor" | "clinic_staff" | "clinic_admin")[];
    /** i18n key of the page's name, for the document title. */
    titleKey?: string;
  }
}

const routes: RouteRecordRaw[] = [
  { path: "/signin", name: "signin", component: () => import("./views/SignInView.vue"), meta: { public: true, titleKey: "signIn.title" } },
  setPasswordRoute,
  { path: "/", name: "panel", component: () => import("./views/PanelView.vue"), meta: { titleKey: "panel.title" } },
  { path: "/alerts", name: "alerts", component: () => import("./views/AlertsView.vue"), meta: { titleKey: "alerts.title" } },
  {
    path: "/alerts/:alertId",
    name: "alert",
    component: () => import("./views/AlertDetailView.vue"),
    props: true,
    meta: { titleKey: "alerts.detail.title" },
  },
  {
    path: "/patients/:patientId",
    name: "patient",
    component: () => import("./views/PatientView.vue"),
    props: true,
    meta: { titleKey: "patientPlaceholder.title" },
  },
  {
    path: "/admin",
    component: () => import("./views/admin/AdminHome.vue"),
    meta: { roles: ["clinic_admin"], titleKey: "admin.title" },
    children: adminRoutes,
  },
  {
    path: "/:pathMatch(.*)*",
    name: "not-found",
    component: () => import("./views/NotFoundView.vue"),
    meta: { titleKey: "app.notFoundTitle" },
  },
];

export const router = createRouter({
  history: createWebHistory("/app/"),
  routes,
  scrollBehavior: (_to, _from, saved) => saved ?? { top: 0 },
});

/** Where to go after signing in: the `next` the sign-in page was given, if it is one of ours. */
export function returnPath(to: RouteLocationNormalized): string {
  const next = to.query.next;
  return typeof next === "string" && next.startsWith("/") && !next.startsWith("//") ? next : "/";
}

router.beforeEach(async (to) => {
  const alertLink = to.query.alert;
  if (to.name === "panel" && typeof alertLink === "string" && alertLink) {
    return { name: "alert", params: { alertId: alertLink } };
  }
  if (to.meta.public) {
    if (to.name === "signin" && session.token) return returnPath(to);
    return true;
  }
  if (!session.token) return { name: "signin", query: { next: to.fullPath } };
  const roles = to.matched.flatMap((record) => record.meta.roles ?? []);
  if (roles.length) {
    try {
      const me = await loadMe();
      if (!roles.some((role) => me.roles.includes(role))) return { name: "panel" };
    } catch {
      // The shell shows why /me failed; the view stays closed until it loads.
      return true;
    }
  }
  return true;
});
