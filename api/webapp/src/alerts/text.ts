/** Words for an alert: its rule's title in the user's language, its patient's name. */
import type { AlertOut } from "../api/client";
import { personName } from "../format";
import { messages } from "../i18n";

export function ruleTitle(ruleId: string, locale: string): string {
  const lang = locale === "zh-CN" ? messages["zh-CN"] : messages.en;
  const rules = lang.rules as Record<string, string>;
  return rules[ruleId] ?? lang.app.unknownRule;
}

export function alertPatientName(alert: AlertOut): string {
  return personName({ given_name: alert.patient_given_name, family_name: alert.patient_family_name });
}
