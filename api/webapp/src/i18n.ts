/**
 * Languages: en and zh-CN, every string of the app. The first visit takes the browser's language
 * (zh* -> zh-CN, else en); a choice in the header is remembered in localStorage. The patient page's
 * strings (locales/patient.*.ts) are merged under "patient", the administration pages' (locales/admin.*.ts)
 * under "admin".
 */
import { createI18n } from "vue-i18n";
import adminEn from "./locales/admin.en";
import adminZhCN from "./locales/admin.zh-CN";
import en from "./locales/en";
import fleetEn from "./locales/fleet.en";
import fleetZhCN from "./locales/fleet.zh-CN";
import patientEn from "./locales/patient.en";
import patientZhCN from "./locales/patient.zh-CN";
import reportsEn from "./locales/reports.en";
import reportsZhCN from "./locales/reports.zh-CN";
import zhCN from "./locales/zh-CN";

export const LOCALES = ["en", "zh-CN"] as const;
export type AppLocale = (typeof LOCALES)[number];
export const LOCALE_KEY = "vitalgate.locale";

export const messages = {
  en: { ...en, patient: patientEn, fleet: fleetEn, admin: adminEn, reports: reportsEn },
  "zh-CN": { ...zhCN, patient: patientZhCN, fleet: fleetZhCN, admin: adminZhCN, reports: reportsZhCN },
};

export function isLocale(value: unknown): value is AppLocale {
  return typeof value === "string" && (LOCALES as readonly string[]).includes(value);
}

/** The remembered choice, else the first browser language we have, else English. */
export function detectLocale(stored: string | null, browserLanguages: readonly string[]): AppLocale {
  if (isLocale(stored)) return stored;
  for (const language of browserLanguages) {
    const lower = language.toLowerCase();
    if (lower.startsWith("zh")) return "zh-CN";
    if (lower.startsWith("en")) return "en";
  }
  return "en";
}

function storedLocale(): string | null {
  try {
    return globalThis.localStorage?.getItem(LOCALE_KEY) ?? null;
  } catch {
    return null;
  }
}

export function makeI18n(locale: AppLocale) {
  return createI18n({
    legacy: false,
    locale,
    fallbackLocale: "en",
    messages,
    missingWarn: import.meta.env.DEV,
    fallbackWarn: false,
  });
}

export const i18n = makeI18n(detectLocale(storedLocale(), globalThis.navigator?.languages ?? []));

export function currentLocale(): AppLocale {
  const value = i18n.global.locale.value;
  return isLocale(value) ? value : "en";
}

export function setLocale(locale: AppLocale): void {
  i18n.global.locale.value = locale;
  try {
    globalThis.localStorage?.setItem(LOCALE_KEY, locale);
  } catch {
    // Private browsing without storage: the choice holds for this page only.
  }
  if (globalThis.document) document.documentElement.lang = locale;
}
