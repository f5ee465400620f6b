import { describe, expect, it } from "vitest";
import { ApiError, apiErrorOf } from "./api/client";
import { errorText } from "./errors";
import { makeI18n } from "./i18n";

function translator(locale: "en" | "zh-CN") {
  const i18n = makeI18n(locale);
  const t = (key: string, named?: Record<string, unknown>) => (named ? i18n.global.t(key, named) : i18n.global.t(key));
  return { t, locale };
}

function response(status: number, headers: Record<string, string> = {}): Response {
  return new Response(null, { status, headers });
}

describe("API error codes are worded in the user's language; `detail` is never shown", () => {
  it("words the sign-in refusals", () => {
    const en = translator("en");
    expect(errorText(new ApiError(401, "auth.invalid_credentials"), en)).toBe("Wrong e-mail or password");
    expect(errorText(new ApiError(403, "auth.locked"), en)).toBe(
      "This account is locked after repeated failed sign-ins. Ask your clinic administrator to unlock it.",
    );
    const throttled = apiErrorOf(response(429, { "Retry-After": "900" }), {
      detail: "too many failed logins; try again later",
      code: "auth.throttled",
    });
    expect(errorText(throttled, en)).toBe("Too many failed sign-ins. Try again in 15 min.");
    expect(errorText(throttled, translator("zh-CN"))).toBe("登录失败次数过多，请 15 分钟后再试。");
  });

  it("words every code of the contract in Chinese without the English detail", () => {
    const zh = translator("zh-CN");
    const codes = [
      "auth.invalid_credentials",
      "auth.locked",
      "auth.expired",
      "auth.required",
      "forbidden",
      "patient.not_found",
      "alert.not_found",
      "alert.invalid_transition",
      "targets.not_family_doctor",
      "validation",
      "store.unavailable",
    ];
    for (const code of codes) {
      const text = errorText(apiErrorOf(response(400), { detail: "English detail text", code, field: null }), zh);
      expect(text, code).not.toMatch(/[A-Za-z]{3,}/);
      expect(text, code).not.toContain("detail");
    }
  });

  it("words validation issues with their field and limit, glucose limits in the user's unit", () => {
    const body = {
      detail: [],
      code: "validation",
      errors: [
        { field: "glucose_hypo_mg_dl", code: "greater_than_equal", limit: 54 },
        { field: "note", code: "string_too_long", limit: 1000 },
      ],
    };
    const error = apiErrorOf(response(422), body);
    expect(errorText(error, translator("en"), "mmol/L")).toBe(
      "The hypoglycaemia threshold must be at least 3.0 mmol/L. The note is too long (at most 1000 characters).",
    );
    expect(errorText(error, translator("zh-CN"), "mg/dL")).toBe(
      "低血糖阈值不能小于 54 mg/dL。 备注过长（最多 1000 个字符）。",
    );
  });

  it("reads FastAPI's own validation list when the body has no issues list", () => {
    const error = apiErrorOf(response(422), {
      detail: [{ type: "less_than_equal", loc: ["body", "minutes"], msg: "Input should be ...", ctx: { le: 1440 } }],
    });
    expect(errorText(error, translator("en"))).toBe("The snooze time must be at most 1440.");
  });

  it("falls back to a general message with the status for an unknown code, never to the detail", () => {
    const error = apiErrorOf(response(500), { detail: "Traceback (most recent call last)", code: "boom.unknown" });
    expect(errorText(error, translator("en"))).toBe("The server could not answer (error 500). Try again shortly.");
  });

  it("says the server could not be reached when there was no answer", () => {
    expect(errorText(new ApiError(0, "network"), translator("en"))).toBe(
      "The server could not be reached. Check the connection and try again.",
    );
  });
});
