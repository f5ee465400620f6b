import { describe, expect, it } from "vitest";
import {
  MG_DL_PER_MMOL_L,
  formatBp,
  formatDateTime,
  formatGlucose,
  glucoseFromUnit,
  glucoseInUnit,
  parseApiTime,
  personName,
} from "./format";

describe("glucose is shown in the user's unit, converted for display only", () => {
  it("uses the factor of vitals/units.py", () => {
    expect(MG_DL_PER_MMOL_L).toBe(18.01559);
  });

  it("shows mg/dL values as mmol/L with one decimal", () => {
    expect(formatGlucose(180.2, "mmol/L", "en")).toBe("10.0");
    expect(formatGlucose(126.1, "mmol/L", "en")).toBe("7.0");
    // 2.66 mmol/L, the level-2 hypo of the issue, stored as mg/dL.
    expect(formatGlucose(2.66 * MG_DL_PER_MMOL_L, "mmol/L", "en")).toBe("2.7");
  });

  it("shows mg/dL values whole in mg/dL", () => {
    expect(formatGlucose(180.2, "mg/dL", "en")).toBe("180");
    expect(formatGlucose(54, "mg/dL", "zh-CN")).toBe("54");
  });

  it("converts a typed value back to mg/dL without drift", () => {
    expect(glucoseFromUnit(glucoseInUnit(70, "mmol/L"), "mmol/L")).toBeCloseTo(70, 10);
    expect(glucoseFromUnit(4.4, "mmol/L")).toBeCloseTo(79.27, 2);
    expect(glucoseFromUnit(99, "mg/dL")).toBe(99);
  });

  it("shows a dash, never 0, where there is no value", () => {
    expect(formatGlucose(null, "mmol/L", "en")).toBe("–");
    expect(formatGlucose(Number.NaN, "mg/dL", "en")).toBe("–");
    expect(formatBp(null, 85, "en")).toBe("–");
  });

  it("rounds blood pressure to whole mmHg", () => {
    expect(formatBp(135.4, 84.6, "en")).toBe("135/85");
  });
});

describe("times are read as UTC and shown in the given zone and locale", () => {
  it("reads a time without an offset as UTC", () => {
    expect(parseApiTime("2026-03-01T08:00:00").toISOString()).toBe("2026-03-01T08:00:00.000Z");
    expect(parseApiTime("2026-03-01T08:00:00+08:00").toISOString()).toBe("2026-03-01T00:00:00.000Z");
  });

  it("shows a patient's reading time in the patient's zone", () => {
    const shanghai = formatDateTime("2026-03-01T23:30:00Z", "en", "Asia/Shanghai");
    const london = formatDateTime("2026-03-01T23:30:00Z", "en", "Europe/London");
    expect(shanghai).toContain("Mar 2, 2026");
    expect(shanghai).toContain("7:30");
    expect(london).toContain("Mar 1, 2026");
    expect(london).toContain("11:30");
    expect(formatDateTime("2026-03-01T23:30:00Z", "zh-CN", "Asia/Shanghai")).toContain("2026年3月2日");
  });
});

describe("patient names", () => {
  it("puts the family name first, without a space between Chinese names", () => {
    expect(personName({ given_name: "Wei", family_name: "Wang" })).toBe("Wang Wei");
    expect(personName({ given_name: "伟", family_name: "王" })).toBe("王伟");
  });
});
