// The glucose charts' ECharts options: readings over time by meal context with the patient's target
// range as a band, the time-in-ranges bar, and the AGP profile (percentiles by hour of day).
// Error readings (valid = false: control solution, strip errors, out-of-range results) are marks in
// a strip of their own, never values. All numbers are the server's; values are converted to the
// user's unit for display only, by the function the caller passes.

import type { EChartsOption } from "echarts";
import {
  COLOURS,
  ERROR_ROW,
  ERROR_SYMBOL,
  type IndexedItem,
  niceExtent,
  readingIndexOf,
  tooltipHtml,
  zoomFor,
} from "./common";
import { wallClockMs } from "./time";

export interface GlucosePoint {
  reading_id: string;
  measured_at: string;
  valid: boolean;
  invalid_reasons: readonly string[];
  glucose_mg_dl?: number | null;
  context?: { meal?: string | null } | null;
}

/** Meal contexts as the meter reports them (Glucose Measurement Context), and "unknown" for none. */
export const MEALS = ["fasting", "preprandial", "postprandial", "bedtime", "casual", "unknown"] as const;
export type MealContext = (typeof MEALS)[number];

export function mealOf(reading: GlucosePoint): MealContext {
  const meal = reading.context?.meal;
  return (MEALS as readonly string[]).includes(meal ?? "") ? (meal as MealContext) : "unknown";
}

export const MEAL_STYLE: Readonly<Record<MealContext, { colour: string; symbol: string }>> = {
  fasting: { colour: "#1d4ed8", symbol: "circle" },
  preprandial: { colour: "#047857", symbol: "rect" },
  postprandial: { colour: "#b45309", symbol: "triangle" },
  bedtime: { colour: "#6b21a8", symbol: "diamond" },
  casual: { colour: "#0e7490", symbol: "roundRect" },
  unknown: { colour: "#4b5563", symbol: "emptyCircle" },
};

export interface GlucoseTarget {
  low_mg_dl: number;
  high_mg_dl: number;
}

export interface GlucoseChartInput<R extends GlucosePoint = GlucosePoint> {
  readings: readonly R[];
  timeZone: string;
  start: string;
  end: string;
  target: GlucoseTarget | null;
  /** mg/dL to the unit shown (display only). */
  toDisplay: (mgDl: number) => number;
  text: {
    meals: Readonly<Record<MealContext, string>>;
    /** A value in the unit shown, as the page writes it (for the band's labels). */
    value: (displayValue: number) => string;
    errors: string;
    targetRange: string;
    unit: string;
    description: string;
    describe: (reading: R) => string[];
  };
}

export const GLUCOSE_SERIES = {
  target: "target-range",
  errors: "errors",
  meal: (meal: MealContext): string => `meal-${meal}`,
} as const;

const LEFT = 48;
const RIGHT = 20;
const MAIN = { top: 44, height: 220 };
const ERRORS = { top: 320, height: 22 };
export const GLUCOSE_CHART_HEIGHT = 400;

function isNumber(value: number | null | undefined): value is number {
  return typeof value === "number" && Number.isFinite(value);
}

export function glucoseOption<R extends GlucosePoint>(input: GlucoseChartInput<R>): EChartsOption {
  const { readings, timeZone, target, toDisplay, text } = input;
  const at = (instant: string): number => wallClockMs(instant, timeZone);

  const byMeal = new Map<MealContext, IndexedItem[]>(MEALS.map((meal) => [meal, []]));
  const errors: IndexedItem[] = [];
  const shown: number[] = [];
  readings.forEach((reading, readingIndex) => {
    const x = at(reading.measured_at);
    if (!reading.valid) {
      errors.push({ value: [x, ERROR_ROW], readingIndex });
      return;
    }
    if (!isNumber(reading.glucose_mg_dl)) return;
    const value = toDisplay(reading.glucose_mg_dl);
    shown.push(value);
    byMeal.get(mealOf(reading))?.push({ value: [x, value], readingIndex });
  });

  const band = target ? [toDisplay(target.low_mg_dl), toDisplay(target.high_mg_dl)] : [];
  const [yMin, yMax] = niceExtent([...shown, ...band], [toDisplay(54), toDisplay(250)]);

  const series: Record<string, unknown>[] = [
    {
      id: GLUCOSE_SERIES.target,
      name: text.targetRange,
      type: "line",
      xAxisIndex: 0,
      yAxisIndex: 0,
      data: [],
      silent: false,
      itemStyle: { color: COLOURS.target },
      color: COLOURS.target,
      markArea: target
        ? {
            silent: true,
            itemStyle: { color: COLOURS.targetArea },
            label: { show: false },
            data: [[{ yAxis: band[0], name: text.targetRange }, { yAxis: band[1] }]],
          }
        : undefined,
      markLine: target
        ? {
            silent: true,
            symbol: "none",
            lineStyle: { color: COLOURS.target, type: "dashed", width: 1 },
            label: {
              show: true,
              position: "insideStartTop",
              color: COLOURS.target,
              fontSize: 11,
              formatter: (params: unknown): string => {
                const value = (params as { value?: unknown }).value;
                return typeof value === "number" ? text.value(value) : "";
              },
            },
            data: [{ yAxis: band[0] }, { yAxis: band[1] }],
          }
        : undefined,
    },
  ];
  for (const meal of MEALS) {
    const style = MEAL_STYLE[meal];
    series.push({
      id: GLUCOSE_SERIES.meal(meal),
      name: text.meals[meal],
      type: "scatter",
      xAxisIndex: 0,
      yAxisIndex: 0,
      symbol: style.symbol,
      symbolSize: 9,
      itemStyle: { color: style.colour, borderColor: style.colour },
      color: style.colour,
      data: byMeal.get(meal) ?? [],
    });
  }
  series.push({
    id: GLUCOSE_SERIES.errors,
    name: text.errors,
    type: "scatter",
    xAxisIndex: 1,
    yAxisIndex: 1,
    data: errors,
    symbol: ERROR_SYMBOL,
    symbolSize: 12,
    itemStyle: { color: COLOURS.error },
    color: COLOURS.error,
  });

  const xAxis = (gridIndex: number): Record<string, unknown> => ({
    type: "time",
    gridIndex,
    min: at(input.start),
    max: at(input.end),
    axisLabel: { hideOverlap: true, color: COLOURS.axis },
    axisLine: { lineStyle: { color: COLOURS.axis } },
    splitLine: { show: gridIndex === 0, lineStyle: { color: COLOURS.grid } },
  });

  // Meals with readings in the legend, so a short range is not explained by empty entries.
  const legendNames = [
    text.targetRange,
    ...MEALS.filter((meal) => (byMeal.get(meal) ?? []).length > 0).map((meal) => text.meals[meal]),
    text.errors,
  ];

  const option: Record<string, unknown> = {
    useUTC: true,
    animation: false,
    aria: { enabled: true, label: { enabled: true, description: text.description } },
    title: [
      {
        text: text.errors,
        top: ERRORS.top - 20,
        left: LEFT,
        textStyle: { fontSize: 12, fontWeight: "normal", color: COLOURS.axis },
      },
    ],
    legend: { type: "scroll", top: 0, left: LEFT, right: RIGHT, data: legendNames },
    grid: [
      { left: LEFT, right: RIGHT, ...MAIN },
      { left: LEFT, right: RIGHT, ...ERRORS },
    ],
    xAxis: [xAxis(0), xAxis(1)],
    yAxis: [
      {
        type: "value",
        gridIndex: 0,
        min: yMin,
        max: yMax,
        name: text.unit,
        nameGap: 8,
        nameTextStyle: { color: COLOURS.axis, align: "right" },
        axisLabel: { color: COLOURS.axis },
        splitLine: { lineStyle: { color: COLOURS.grid } },
      },
      {
        type: "category",
        gridIndex: 1,
        data: [ERROR_ROW],
        axisLabel: { show: false },
        axisTick: { show: false },
      },
    ],
    dataZoom: zoomFor([0, 1]),
    tooltip: {
      trigger: "item",
      confine: true,
      formatter: (params: unknown): string => {
        const index = readingIndexOf(params);
        const reading = index === null ? undefined : readings[index];
        return reading ? tooltipHtml(text.describe(reading)) : "";
      },
    },
    series,
  };
  return option as EChartsOption;
}

// --- Time in ranges --------------------------------------------------------------------------------

/** The five ranges of the consensus on time in ranges (Battelino 2019), as the summary names them. */
export const GLUCOSE_RANGES = ["very_low", "low", "in_range", "high", "very_high"] as const;
export type GlucoseRange = (typeof GLUCOSE_RANGES)[number];

export const RANGE_COLOURS: Readonly<Record<GlucoseRange, string>> = {
  very_low: "#7f1d1d",
  low: "#dc2626",
  in_range: "#15803d",
  high: "#b45309",
  very_high: "#78350f",
};

export interface TimeInRangeInput {
  ranges: Readonly<Record<GlucoseRange, number>>;
  text: {
    ranges: Readonly<Record<GlucoseRange, string>>;
    description: string;
    percent: (value: number) => string;
  };
}

export const TIME_IN_RANGE_HEIGHT = 48;

/** One horizontal bar of the five ranges stacked to 100 %, very low on the left. */
export function timeInRangeOption(input: TimeInRangeInput): EChartsOption {
  const { ranges, text } = input;
  const option: Record<string, unknown> = {
    animation: false,
    aria: { enabled: true, label: { enabled: true, description: text.description } },
    grid: { left: 8, right: 8, top: 8, height: 32 },
    legend: { show: false },
    xAxis: { type: "value", min: 0, max: 100, show: false },
    yAxis: { type: "category", data: [""], show: false },
    tooltip: {
      trigger: "item",
      confine: true,
      formatter: (params: unknown): string => {
        const { seriesId, value } = params as { seriesId?: string; value?: number };
        const range = GLUCOSE_RANGES.find((name) => name === seriesId);
        return range && typeof value === "number"
          ? tooltipHtml([text.ranges[range], text.percent(value)])
          : "";
      },
    },
    series: GLUCOSE_RANGES.map((range) => ({
      id: range,
      name: text.ranges[range],
      type: "bar",
      stack: "time-in-ranges",
      barWidth: 28,
      itemStyle: { color: RANGE_COLOURS[range], borderColor: "#ffffff", borderWidth: 1 },
      data: [ranges[range]],
    })),
  };
  return option as EChartsOption;
}

// --- AGP -------------------------------------------------------------------------------------------

export interface AgpHour {
  hour: number;
  p5: number | null;
  p25: number | null;
  p50: number | null;
  p75: number | null;
  p95: number | null;
}

export interface AgpInput {
  agp: readonly AgpHour[];
  target: GlucoseTarget | null;
  toDisplay: (mgDl: number) => number;
  text: {
    outer: string;
    inner: string;
    median: string;
    targetRange: string;
    unit: string;
    description: string;
    hour: (hour: number) => string;
    value: (displayValue: number) => string;
  };
}

export const AGP_SERIES = {
  outerBase: "agp-p5-base",
  outer: "agp-p5-p95",
  innerBase: "agp-p25-base",
  inner: "agp-p25-p75",
  median: "agp-median",
} as const;

export const AGP_CHART_HEIGHT = 300;

/**
 * The ambulatory glucose profile by hour of day (IDC AGP, clinical-rules.md §2.7): the 5-95th
 * percentile band, the 25-75th band and the median, over the target range. Bands are two stacked
 * lines each: an invisible one at the lower percentile and a filled one of the band's width.
 */
export function agpOption(input: AgpInput): EChartsOption {
  const { agp, target, toDisplay, text } = input;
  const byHour = new Map(agp.map((row) => [row.hour, row]));
  const hours = Array.from({ length: 24 }, (_, hour) => hour);
  const shown = (value: number | null | undefined): number | null =>
    typeof value === "number" && Number.isFinite(value) ? toDisplay(value) : null;
  const column = (pick: (row: AgpHour) => number | null): (number | null)[] =>
    hours.map((hour) => {
      const row = byHour.get(hour);
      return row ? shown(pick(row)) : null;
    });
  const p5 = column((row) => row.p5);
  const p25 = column((row) => row.p25);
  const p50 = column((row) => row.p50);
  const p75 = column((row) => row.p75);
  const p95 = column((row) => row.p95);
  const width = (upper: (number | null)[], lower: (number | null)[]): (number | null)[] =>
    upper.map((value, i) => {
      const base = lower[i];
      return value === null || base === null || base === undefined ? null : value - base;
    });

  const values = [...p5, ...p95].filter((value): value is number => value !== null);
  if (target) values.push(toDisplay(target.low_mg_dl), toDisplay(target.high_mg_dl));
  const [yMin, yMax] = niceExtent(values, [toDisplay(54), toDisplay(250)]);

  const base = (id: string, stack: string, data: (number | null)[]): Record<string, unknown> => ({
    id,
    type: "line",
    stack,
    data,
    symbol: "none",
    lineStyle: { opacity: 0 },
    areaStyle: { opacity: 0 },
    silent: true,
    tooltip: { show: false },
    legendHoverLink: false,
  });
  const band = (
    id: string,
    name: string,
    stack: string,
    data: (number | null)[],
    colour: string,
  ): Record<string, unknown> => ({
    id,
    name,
    type: "line",
    stack,
    data,
    symbol: "none",
    lineStyle: { opacity: 0 },
    areaStyle: { color: colour, opacity: 1 },
    itemStyle: { color: colour },
    color: colour,
  });

  const option: Record<string, unknown> = {
    animation: false,
    aria: { enabled: true, label: { enabled: true, description: text.description } },
    legend: { top: 0, left: 48, data: [text.outer, text.inner, text.median] },
    grid: { left: 48, right: 20, top: 40, bottom: 32 },
    xAxis: {
      type: "category",
      boundaryGap: false,
      data: hours.map((hour) => text.hour(hour)),
      axisLabel: { color: COLOURS.axis, interval: 2 },
      axisLine: { lineStyle: { color: COLOURS.axis } },
    },
    yAxis: {
      type: "value",
      min: yMin,
      max: yMax,
      name: text.unit,
      nameGap: 8,
      nameTextStyle: { color: COLOURS.axis, align: "right" },
      axisLabel: { color: COLOURS.axis },
      splitLine: { lineStyle: { color: COLOURS.grid } },
    },
    tooltip: {
      trigger: "axis",
      confine: true,
      formatter: (params: unknown): string => {
        const first = Array.isArray(params) ? (params[0] as { dataIndex?: number }) : undefined;
        const hour = first?.dataIndex;
        if (typeof hour !== "number") return "";
        const line = (label: string, value: number | null | undefined): string =>
          `${label}: ${value === null || value === undefined ? "–" : text.value(value)}`;
        return tooltipHtml([
          text.hour(hour),
          line("95", p95[hour]),
          line("75", p75[hour]),
          line(text.median, p50[hour]),
          line("25", p25[hour]),
          line("5", p5[hour]),
        ]);
      },
    },
    series: [
      base(AGP_SERIES.outerBase, "outer", p5),
      band(AGP_SERIES.outer, text.outer, "outer", width(p95, p5), "#bfdbfe"),
      base(AGP_SERIES.innerBase, "inner", p25),
      band(AGP_SERIES.inner, text.inner, "inner", width(p75, p25), "#60a5fa"),
      {
        id: AGP_SERIES.median,
        name: text.median,
        type: "line",
        data: p50,
        symbol: "none",
        lineStyle: { color: "#1e3a8a", width: 2.5 },
        itemStyle: { color: "#1e3a8a" },
        color: "#1e3a8a",
        z: 5,
        markArea: target
          ? {
              silent: true,
              itemStyle: { color: "rgba(0,0,0,0)", borderColor: COLOURS.target, borderWidth: 1.5, borderType: "dashed" },
              data: [[{ yAxis: toDisplay(target.low_mg_dl), name: text.targetRange }, { yAxis: toDisplay(target.high_mg_dl) }]],
              label: { show: false },
            }
          : undefined,
      },
    ],
  };
  return option as EChartsOption;
}
