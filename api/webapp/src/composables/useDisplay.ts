/**
 * What every view needs to show values: the translator, the user's locale and glucose unit, and the
 * wording of an error. Reactive: a language or unit switch redraws.
 */
import { computed } from "vue";
import { useI18n } from "vue-i18n";
import { errorText } from "../errors";
import type { GlucoseUnit } from "../format";
import { glucoseUnit, session } from "../session";

export function useDisplay() {
  const { t, locale } = useI18n();
  const unit = computed<GlucoseUnit>(() => glucoseUnit());
  // `count` picks the singular or plural of a "one | many" message (English; Chinese has one form).
  const translate = (key: string, named?: Record<string, unknown>, count?: number): string =>
    count !== undefined ? t(key, named ?? {}, count) : named ? t(key, named) : t(key);
  const errorMessage = (error: unknown): string =>
    errorText(error, { t: translate, locale: locale.value }, unit.value);
  const clinicTimeZone = computed(() => session.me?.clinic.timezone ?? null);
  return { t: translate, locale, unit, errorMessage, clinicTimeZone };
}
