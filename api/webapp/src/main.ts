import { createApp } from "vue";
import App from "./App.vue";
import { startLiveAlerts, stopLiveAlerts } from "./alerts/live";
import { currentLocale, i18n, setLocale } from "./i18n";
import { router } from "./router";
import { onSignOut, session, startIdleWatch } from "./session";
import "./styles.css";

setLocale(currentLocale());

onSignOut((reason) => {
  stopLiveAlerts();
  const here = router.currentRoute.value;
  const next = here.meta.public ? undefined : here.fullPath;
  void router.push({ name: "signin", query: { ...(next && reason !== "signed_out" ? { next } : {}), reason } });
});

if (session.token) {
  startIdleWatch();
  startLiveAlerts();
}

createApp(App).use(i18n).use(router).mount("#app");
