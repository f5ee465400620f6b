import { describe, expect, it } from "vitest";
import { isRangeDays, readingWindow } from "./api";

describe("readingWindow", () => {
  it("starts at the patient's local midnight of the first day of the period, today included", () => {
    const now = new Date("2026-03-10T09:30:00Z"); // 17:30 in Shanghai
    expect(readingWindow(7, "Asia/Shanghai", now)).toEqual({
      start: "2026-03-03T16:00:00.000Z", // 4 March 00:00 in Shanghai
      end: "2026-03-10T09:30:00.000Z",
    });
    expect(readingWindow(7, "UTC", now).start).toBe("2026-03-04T00:00:00.000Z");
  });

  it("takes the offset in force at that midnight, across a daylight-saving change", () => {
    const now = new Date("2025-04-02T10:00:00Z"); // Berlin is on summer time (UTC+2)
    expect(readingWindow(7, "Europe/Berlin", now).start).toBe("2025-03-26T23:00:00.000Z"); // 27 March, UTC+1
  });
});

describe("isRangeDays", () => {
  it("accepts only the periods the summary serves", () => {
    expect([7, 14, 30, 90, 365].every(isRangeDays)).toBe(true);
    expect([0, 10, 31, "30", null].some(isRangeDays)).toBe(false);
  });
});
