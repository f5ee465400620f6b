// Child routes of /admin (rendered inside AdminHome.vue's <router-view>). Only clinic
// administrators reach them (router.ts, meta.roles on /admin).
import type { RouteRecordRaw } from "vue-router";

const adminRoutes: RouteRecordRaw[] = [];

export default adminRoutes;
