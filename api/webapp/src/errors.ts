/**
 * Wording of the API's error codes in the user's language. The API returns a dotted `code` (and for
 * validation, issues with pydantic's error types and limits); the app shows only these words, never
 * the API's English `detail`. A code without wording falls back to a general message with the status.
 */
import { ApiError, type ValidationIssue } from "./api/client";
import { formatGlucose, formatNumber, type GlucoseUnit } from "./format";
import en from "./locales/en";

export interface Translator {
  t: (key: string, named?: Record<string, unknown>) => string;
  locale: string;
}

function hasLeaf(root: unknown, path: string): boolean {
  let node: unknown = root;
  for (const part of path.split(".")) {
    if (typeof node !== "object" || node === null || !(part in node)) return false;
    node = (node as Record<string, unknown>)[part];
  }
  return typeof node === "string";
}

/** True when the app has words for this error code (locales/en.ts, "errors"). */
export function isWordedCode(code: string): boolean {
  return hasLeaf(en.errors, code);
}

function limitText(issue: ValidationIssue, unit: GlucoseUnit, locale: string): string {
  const { limit, field } = issue;
  if (typeof limit !== "number") return limit == null ? "" : String(limit);
  if (field?.endsWith("_mg_dl")) return `${formatGlucose(limit, unit, locale)} ${unit}`;
  if (field?.endsWith("_mmhg")) return `${formatNumber(limit, locale)} mmHg`;
  return formatNumber(limit, locale, Number.isInteger(limit) ? 0 : 1);
}

export function validationText(issue: ValidationIssue, tr: Translator, unit: GlucoseUnit): string {
  const field =
    issue.field && hasLeaf(en.fields, issue.field) ? tr.t(`fields.${issue.field}`) : tr.t("validation.someValue");
  const key = hasLeaf(en.validation, issue.code) ? issue.code : "invalid";
  return tr.t(`validation.${key}`, { field, limit: limitText(issue, unit, tr.locale) });
}

export function errorText(error: unknown, tr: Translator, unit: GlucoseUnit = "mmol/L"): string {
  if (!(error instanceof ApiError)) return tr.t("errors.unknown", { status: "–" });
  if (error.code === "auth.throttled") {
    const minutes = Math.max(1, Math.ceil((error.retryAfterS ?? 60) / 60));
    return tr.t("errors.auth.throttled", { minutes });
  }
  if (error.code === "validation" && error.errors.length) {
    return error.errors.map((issue) => validationText(issue, tr, unit)).join(" ");
  }
  if (isWordedCode(error.code)) return tr.t(`errors.${error.code}`, { status: error.status });
  return tr.t(error.status >= 500 ? "errors.server" : "errors.unknown", { status: error.status || "–" });
}
