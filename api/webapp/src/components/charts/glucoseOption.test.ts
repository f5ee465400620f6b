import { describe, expect, it } from "vitest";
import { ERROR_ROW } from "./common";
import {
  AGP_SERIES,
  GLUCOSE_SERIES,
  type GlucoseChartInput,
  type GlucosePoint,
  agpOption,
  glucoseOption,
  timeInRangeOption,
} from "./glucoseOption";

type Item = { value: [number, number | string]; readingIndex: number };
type Series = {
  id: string;
  data: Item[] | Array<number | null>;
  markArea?: { data: Array<[{ yAxis: number }, { yAxis: number }]> };
  stack?: string;
};

const MG_DL_PER_MMOL_L = 18.01559;
const toMmol = (mgDl: number): number => mgDl / MG_DL_PER_MMOL_L;

function reading(overrides: Partial<GlucosePoint> & { measured_at: string }): GlucosePoint {
  return { reading_id: "0".repeat(32), valid: true, invalid_reasons: [], glucose_mg_dl: 126, ...overrides };
}

const TEXT: GlucoseChartInput["text"] = {
  meals: {
    fasting: "Fasting",
    preprandial: "Before a meal",
    postprandial: "After a meal",
    bedtime: "Bedtime",
    casual: "Casual",
    unknown: "Not stated",
  },
  value: (v) => v.toFixed(1),
  errors: "Error readings",
  targetRange: "Target range",
  unit: "mmol/L",
  description: "Glucose",
  describe: (r) => [r.reading_id, ...r.invalid_reasons],
};

function build(readings: GlucosePoint[], extra: Partial<GlucoseChartInput> = {}) {
  const option = glucoseOption({
    readings,
    timeZone: "Europe/Berlin",
    start: "2026-03-01T00:00:00Z",
    end: "2026-03-15T00:00:00Z",
    target: { low_mg_dl: 70, high_mg_dl: 180 },
    toDisplay: toMmol,
    text: TEXT,
    ...extra,
  });
  const series = option.series as unknown as Series[];
  const byId = (id: string): Series => {
    const found = series.find((s) => s.id === id);
    if (!found) throw new Error(`no series ${id}`);
    return found;
  };
  return { option, series, byId };
}

describe("glucoseOption", () => {
  const controlSolution = reading({
    measured_at: "2026-03-02T07:00:00Z",
    valid: false,
    invalid_reasons: ["sample_type: control solution, not a patient sample"],
    glucose_mg_dl: 110,
    context: { meal: "fasting" },
  });
  const fasting = reading({ measured_at: "2026-03-03T06:00:00Z", glucose_mg_dl: 126.1, context: { meal: "fasting" } });
  const after = reading({ measured_at: "2026-03-03T12:00:00Z", glucose_mg_dl: 190, context: { meal: "postprandial" } });
  const noContext = reading({ measured_at: "2026-03-03T20:00:00Z", glucose_mg_dl: 99 });

  it("never plots an invalid reading as a value, even one with a concentration", () => {
    const { series, byId } = build([controlSolution, fasting, after, noContext]);
    const plotted = series
      .filter((s) => s.id.startsWith("meal-"))
      .flatMap((s) => (s.data as Item[]).map((item) => item.readingIndex));
    expect(plotted.sort()).toEqual([1, 2, 3]);
    const errors = byId(GLUCOSE_SERIES.errors).data as Item[];
    expect(errors).toEqual([{ value: [expect.any(Number), ERROR_ROW], readingIndex: 0 }]);
  });

  it("puts each reading in the series of its meal context, in the display unit", () => {
    const { byId } = build([fasting, after, noContext]);
    expect((byId(GLUCOSE_SERIES.meal("fasting")).data as Item[])[0]?.value[1]).toBeCloseTo(7.0, 2);
    expect((byId(GLUCOSE_SERIES.meal("postprandial")).data as Item[]).map((i) => i.readingIndex)).toEqual([1]);
    expect((byId(GLUCOSE_SERIES.meal("unknown")).data as Item[]).map((i) => i.readingIndex)).toEqual([2]);
  });

  it("draws the target band from the targets given, in the display unit", () => {
    const { byId } = build([fasting], { target: { low_mg_dl: 79.27, high_mg_dl: 180.16 } });
    const [[low, high]] = byId(GLUCOSE_SERIES.target).markArea!.data as [[{ yAxis: number }, { yAxis: number }]];
    expect(low.yAxis).toBeCloseTo(4.4, 2);
    expect(high.yAxis).toBeCloseTo(10.0, 2);
    const mgDl = build([fasting], { target: { low_mg_dl: 79.27, high_mg_dl: 180.16 }, toDisplay: (v) => v });
    expect(mgDl.byId(GLUCOSE_SERIES.target).markArea!.data[0]![0].yAxis).toBe(79.27);
  });
});

describe("timeInRangeOption", () => {
  it("stacks the five ranges of the summary in order, very low first", () => {
    const option = timeInRangeOption({
      ranges: { very_low: 1, low: 3, in_range: 70, high: 20, very_high: 6 },
      text: {
        ranges: { very_low: "Very low", low: "Low", in_range: "In range", high: "High", very_high: "Very high" },
        description: "Time in ranges",
        percent: (v) => `${v}%`,
      },
    });
    const series = option.series as unknown as Series[];
    expect(series.map((s) => [s.id, s.data[0], s.stack])).toEqual([
      ["very_low", 1, "time-in-ranges"],
      ["low", 3, "time-in-ranges"],
      ["in_range", 70, "time-in-ranges"],
      ["high", 20, "time-in-ranges"],
      ["very_high", 6, "time-in-ranges"],
    ]);
  });
});

describe("agpOption", () => {
  const agp = Array.from({ length: 24 }, (_, hour) => ({
    hour,
    p5: 70 + hour,
    p25: 90 + hour,
    p50: 110 + hour,
    p75: 140 + hour,
    p95: 200 + hour,
  })).filter((row) => row.hour !== 3);

  const build = () =>
    agpOption({
      agp,
      target: { low_mg_dl: 70, high_mg_dl: 180 },
      toDisplay: (v) => v,
      text: {
        outer: "5–95%",
        inner: "25–75%",
        median: "Median",
        targetRange: "Target range",
        unit: "mg/dL",
        description: "AGP",
        hour: (h) => `${h}:00`,
        value: (v) => `${v}`,
      },
    });

  it("stacks each band on its lower percentile so the band spans exactly the percentiles", () => {
    const series = build().series as unknown as Series[];
    const data = (id: string) => series.find((s) => s.id === id)!.data as Array<number | null>;
    expect(data(AGP_SERIES.outerBase)[0]).toBe(70);
    expect(data(AGP_SERIES.outer)[0]).toBe(130); // 200 - 70: the band ends at p95
    expect(data(AGP_SERIES.innerBase)[5]).toBe(95);
    expect(data(AGP_SERIES.inner)[5]).toBe(50); // 145 - 95
    expect(data(AGP_SERIES.median)[23]).toBe(133);
  });

  it("leaves a gap at an hour the summary has no percentiles for, rather than inventing one", () => {
    const series = build().series as unknown as Series[];
    for (const s of series) expect((s.data as Array<number | null>)[3]).toBeNull();
  });
});
