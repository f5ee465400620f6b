import { describe, expect, it } from "vitest";
import {
  BP_SERIES,
  type BloodPressureChartInput,
  type BloodPressurePoint,
  bloodPressureOption,
} from "./bloodPressureOption";
import { ERROR_ROW } from "./common";
import { wallClockMs } from "./time";

type Series = { id: string; data: Array<{ value: [number, number | string]; readingIndex: number; symbol?: string }>; markLine?: { data: Array<{ yAxis: number }> } };

function reading(overrides: Partial<BloodPressurePoint> & { measured_at: string }): BloodPressurePoint {
  return {
    reading_id: overrides.measured_at.replace(/\D/g, "").padEnd(32, "0").slice(0, 32),
    valid: true,
    invalid_reasons: [],
    systolic_mmhg: 142,
    diastolic_mmhg: 88,
    pulse_bpm: 71,
    ...overrides,
  };
}

const TEXT: BloodPressureChartInput["text"] = {
  systolic: "Systolic",
  diastolic: "Diastolic",
  pulse: "Pulse",
  errors: "Error readings",
  homeMean: "7-day mean",
  targetSystolic: "Target 130",
  targetDiastolic: "Target 80",
  unitPressure: "mmHg",
  unitPulse: "bpm",
  description: "Blood pressure",
  describe: (r) => [r.reading_id, ...r.invalid_reasons],
  describeMean: () => ["mean"],
};

function build(readings: BloodPressurePoint[], extra: Partial<BloodPressureChartInput> = {}) {
  const option = bloodPressureOption({
    readings,
    timeZone: "Asia/Shanghai",
    start: "2026-03-01T00:00:00Z",
    end: "2026-03-08T00:00:00Z",
    target: { systolic_mmhg: 130, diastolic_mmhg: 80 },
    homeMean: null,
    sessionOf: (r) => (new Date(r.measured_at).getUTCHours() < 4 ? "morning" : "evening"),
    text: TEXT,
    ...extra,
  });
  const series = option.series as unknown as Series[];
  const byId = (id: string): Series => {
    const found = series.find((s) => s.id === id);
    if (!found) throw new Error(`no series ${id}`);
    return found;
  };
  return { option, byId };
}

describe("bloodPressureOption", () => {
  const cuffError = reading({
    measured_at: "2026-03-03T00:30:00Z",
    valid: false,
    invalid_reasons: ["systolic_mmhg: not measured", "diastolic_mmhg: not measured"],
    systolic_mmhg: null,
    diastolic_mmhg: null,
    pulse_bpm: null,
  });
  const zeroError = reading({
    measured_at: "2026-03-04T11:00:00Z",
    valid: false,
    invalid_reasons: ["systolic_mmhg: 0 mmHg below plausible minimum 40"],
    systolic_mmhg: 0,
    diastolic_mmhg: 0,
    pulse_bpm: 0,
  });
  const good = [
    reading({ measured_at: "2026-03-02T00:10:00Z", systolic_mmhg: 150, diastolic_mmhg: 95 }),
    reading({ measured_at: "2026-03-02T12:10:00Z", systolic_mmhg: 138, diastolic_mmhg: 84 }),
  ];

  it("draws an invalid reading only as an error mark, never as a systolic, diastolic or pulse value", () => {
    const { byId } = build([good[0]!, cuffError, zeroError, good[1]!]);
    for (const id of [BP_SERIES.systolic, BP_SERIES.diastolic, BP_SERIES.pulse]) {
      const indexes = byId(id).data.map((item) => item.readingIndex);
      expect(indexes).toEqual([0, 3]);
      expect(byId(id).data.every((item) => item.value[1] !== 0)).toBe(true);
    }
    const errors = byId(BP_SERIES.errors).data;
    expect(errors.map((item) => item.readingIndex)).toEqual([1, 2]);
    expect(errors.every((item) => item.value[1] === ERROR_ROW)).toBe(true);
  });

  it("places error marks at the reading's time on the patient's wall clock", () => {
    const { byId } = build([cuffError]);
    const [mark] = byId(BP_SERIES.errors).data;
    expect(mark?.value[0]).toBe(Date.UTC(2026, 2, 3, 8, 30)); // 00:30 UTC is 08:30 in Shanghai
  });

  it("shows the reason of an error reading in its tooltip", () => {
    const { option } = build([cuffError]);
    const formatter = (option.tooltip as { formatter: (p: unknown) => string }).formatter;
    const html = formatter({ seriesId: BP_SERIES.errors, data: { readingIndex: 0 } });
    expect(html).toContain("systolic_mmhg: not measured");
  });

  it("puts the target lines at the targets given, and moves them with new targets", () => {
    const first = build(good);
    expect(first.byId(BP_SERIES.systolic).markLine?.data.map((d) => d.yAxis)).toEqual([130]);
    expect(first.byId(BP_SERIES.diastolic).markLine?.data.map((d) => d.yAxis)).toEqual([80]);
    const second = build(good, { target: { systolic_mmhg: 135, diastolic_mmhg: 85 } });
    expect(second.byId(BP_SERIES.systolic).markLine?.data.map((d) => d.yAxis)).toEqual([135]);
    expect(second.byId(BP_SERIES.diastolic).markLine?.data.map((d) => d.yAxis)).toEqual([85]);
  });

  it("keeps the target lines inside the y axis even when every reading is far from them", () => {
    const { option } = build([reading({ measured_at: "2026-03-02T00:10:00Z", systolic_mmhg: 190, diastolic_mmhg: 120 })]);
    const [pressure] = option.yAxis as Array<{ min: number; max: number }>;
    expect(pressure!.min).toBeLessThanOrEqual(80);
    expect(pressure!.max).toBeGreaterThanOrEqual(190);
  });

  it("draws no target line when the targets are not known", () => {
    const { byId } = build(good, { target: null });
    expect(byId(BP_SERIES.systolic).markLine).toBeUndefined();
  });

  it("draws the 7-day mean over the days it covers, at the server's values", () => {
    const homeMean = { systolic: 141.5, diastolic: 87.2, first_day: "2026-03-01", last_day: "2026-03-07" };
    const { byId } = build(good, { homeMean });
    const line = byId(BP_SERIES.homeMeanSystolic).data as unknown as Array<[number, number]>;
    // From the patient's midnight starting 1 March to the one ending 7 March (Shanghai: 16:00 UTC).
    expect(line).toEqual([
      [wallClockMs("2026-02-28T16:00:00Z", "Asia/Shanghai"), 141.5],
      [wallClockMs("2026-03-07T16:00:00Z", "Asia/Shanghai"), 141.5],
    ]);
    expect((byId(BP_SERIES.homeMeanDiastolic).data as unknown as Array<[number, number]>)[0]?.[1]).toBe(87.2);
  });

  it("marks morning and evening readings with different symbols", () => {
    const { byId } = build(good);
    const symbols = byId(BP_SERIES.systolic).data.map((item) => item.symbol);
    expect(symbols[0]).not.toBe(symbols[1]);
  });

  it("names the chart for assistive technology", () => {
    const { option } = build(good);
    expect(option.aria).toMatchObject({ enabled: true, label: { description: "Blood pressure" } });
  });
});
