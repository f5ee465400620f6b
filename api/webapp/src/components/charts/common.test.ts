import { describe, expect, it } from "vitest";
import { escapeHtml, niceExtent, tooltipHtml } from "./common";
import { wallClockHour, wallClockMs } from "./time";

describe("niceExtent", () => {
  it("covers every value given, with round ends", () => {
    const [low, high] = niceExtent([84, 137, 135, 85, 190], [60, 180]);
    expect(low).toBeLessThanOrEqual(84);
    expect(high).toBeGreaterThanOrEqual(190);
    expect(low % 10).toBe(0);
    expect(high % 10).toBe(0);
  });

  it("gives the fallback range when there is nothing to show", () => {
    const [low, high] = niceExtent([], [3, 13.9]);
    expect(low).toBeLessThanOrEqual(3);
    expect(high).toBeGreaterThanOrEqual(13.9);
  });
});

describe("tooltips", () => {
  it("escape what a meter or a note could put in them", () => {
    expect(escapeHtml(`<img src=x onerror="alert(1)">`)).toBe("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;");
    expect(tooltipHtml(["<b>", "Omron & Co"])).toBe("<b>&lt;b&gt;</b><br>Omron &amp; Co");
  });
});

describe("wall clock", () => {
  it("places an instant at the patient's local time, across a daylight-saving change", () => {
    // 01:30 UTC on 30 March 2025 is 03:30 in Berlin (summer time since 01:00 UTC).
    expect(wallClockMs("2025-03-30T01:30:00Z", "Europe/Berlin")).toBe(Date.UTC(2025, 2, 30, 3, 30));
    expect(wallClockMs("2025-03-30T00:30:00Z", "Europe/Berlin")).toBe(Date.UTC(2025, 2, 30, 1, 30));
    expect(wallClockHour("2025-03-30T23:30:00Z", "Asia/Shanghai")).toBe(7);
  });
});
