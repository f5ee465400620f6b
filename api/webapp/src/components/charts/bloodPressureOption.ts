// The blood-pressure chart's ECharts option: systolic and diastolic over time with the patient's
// target lines and the 7-day home mean, pulse in a small chart under it, and the error readings in a
// strip of their own at the bottom. An error reading (valid = false) is drawn only as a mark at its
// time, with its reason in the tooltip; its values, whatever the meter sent, are never plotted.
//
// Every number drawn comes from the server (readings, targets, the summary's mean); this module
// only places them.

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

export interface BloodPressurePoint {
  reading_id: string;
  measured_at: string;
  valid: boolean;
  invalid_reasons: readonly string[];
  systolic_mmhg?: number | null;
  diastolic_mmhg?: number | null;
  pulse_bpm?: number | null;
  measurement_status?: readonly string[];
}

/** When in the day a reading was taken, as the home-BP protocol counts it (from the server's hours). */
export type MeasurementSession = "morning" | "evening" | "other";

export interface BloodPressureTarget {
  systolic_mmhg: number;
  diastolic_mmhg: number;
}

export interface HomeMean {
  systolic: number;
  diastolic: number;
  /** The patient's local calendar days the mean covers (YYYY-MM-DD), drawn as its line's length. */
  first_day: string;
  last_day: string;
}

const DAY_MS = 86_400_000;

/** Midnight at the start of a local calendar day, on the wall-clock axis. */
function dayStart(day: string): number {
  return Date.parse(`${day}T00:00:00Z`);
}

export interface BloodPressureText {
  systolic: string;
  diastolic: string;
  pulse: string;
  errors: string;
  homeMean: string;
  targetSystolic: string;
  targetDiastolic: string;
  unitPressure: string;
  unitPulse: string;
  /** The chart's accessible name and summary (ECharts aria sets it as the canvas's aria-label). */
  description: string;
  /** Tooltip lines for one reading: value, time in the patient's zone, session, device, reasons. */
  describe: (reading: BloodPressurePoint) => string[];
  describeMean: () => string[];
}

export interface BloodPressureChartInput<R extends BloodPressurePoint = BloodPressurePoint> {
  readings: readonly R[];
  timeZone: string;
  /** The range shown: the x axis runs from start to end. */
  start: string;
  end: string;
  target: BloodPressureTarget | null;
  homeMean: HomeMean | null;
  sessionOf: (reading: R) => MeasurementSession;
  text: Omit<BloodPressureText, "describe"> & { describe: (reading: R) => string[] };
}

export const SESSION_SYMBOLS: Readonly<Record<MeasurementSession, string>> = {
  morning: "circle",
  evening: "triangle",
  other: "diamond",
};

/** Series ids, for tests and for anyone reading the option back from the chart. */
export const BP_SERIES = {
  systolic: "systolic",
  diastolic: "diastolic",
  homeMeanSystolic: "home-mean-systolic",
  homeMeanDiastolic: "home-mean-diastolic",
  pulse: "pulse",
  errors: "errors",
} as const;

// Layout in pixels from the top: the main chart, the pulse chart, the error strip, the zoom slider.
const LEFT = 48;
const RIGHT = 20;
const MAIN = { top: 44, height: 210 };
const PULSE = { top: 292, height: 64 };
const ERRORS = { top: 392, height: 22 };
export const BLOOD_PRESSURE_CHART_HEIGHT = 470;

function isNumber(value: number | null | undefined): value is number {
  return typeof value === "number" && Number.isFinite(value);
}

/** A reading whose values may be drawn: valid, with both pressures measured. */
export function isPlottable(reading: BloodPressurePoint): boolean {
  return reading.valid && isNumber(reading.systolic_mmhg) && isNumber(reading.diastolic_mmhg);
}

export function bloodPressureOption<R extends BloodPressurePoint>(
  input: BloodPressureChartInput<R>,
): EChartsOption {
  const { readings, timeZone, target, homeMean, text } = input;
  const at = (instant: string): number => wallClockMs(instant, timeZone);

  const systolic: IndexedItem[] = [];
  const diastolic: IndexedItem[] = [];
  const pulse: IndexedItem[] = [];
  const errors: IndexedItem[] = [];
  readings.forEach((reading, readingIndex) => {
    const x = at(reading.measured_at);
    if (!reading.valid) {
      errors.push({ value: [x, ERROR_ROW], readingIndex });
      return;
    }
    if (!isPlottable(reading)) return;
    const symbol = SESSION_SYMBOLS[input.sessionOf(reading)];
    // A reading the cuff flagged (movement, loose cuff, position) is drawn hollow.
    const flagged = (reading.measurement_status ?? []).length > 0;
    const style = (colour: string): Record<string, unknown> | undefined =>
      flagged ? { color: "#ffffff", borderColor: colour, borderWidth: 2 } : undefined;
    systolic.push({
      value: [x, reading.systolic_mmhg as number],
      readingIndex,
      symbol,
      ...(flagged ? { itemStyle: style(COLOURS.systolic) } : {}),
    });
    diastolic.push({
      value: [x, reading.diastolic_mmhg as number],
      readingIndex,
      symbol,
      ...(flagged ? { itemStyle: style(COLOURS.diastolic) } : {}),
    });
    if (isNumber(reading.pulse_bpm)) {
      pulse.push({ value: [x, reading.pulse_bpm], readingIndex, symbol });
    }
  });

  const pressures = [
    ...systolic.map((item) => item.value[1] as number),
    ...diastolic.map((item) => item.value[1] as number),
  ];
  if (target) pressures.push(target.systolic_mmhg, target.diastolic_mmhg);
  if (homeMean) pressures.push(homeMean.systolic, homeMean.diastolic);
  const [pressureMin, pressureMax] = niceExtent(pressures, [60, 180]);
  const [pulseMin, pulseMax] = niceExtent(
    pulse.map((item) => item.value[1] as number),
    [40, 120],
  );

  const targetLine = (value: number, label: string, colour: string): Record<string, unknown> => ({
    silent: false,
    symbol: "none",
    lineStyle: { color: colour, type: "dashed", width: 1.5 },
    label: { formatter: label, position: "insideStartTop", color: colour, fontSize: 11 },
    tooltip: { show: true, formatter: label },
    data: [{ yAxis: value, name: label }],
  });

  const meanSeries = (id: string, value: number, colour: string): Record<string, unknown> => ({
    id,
    name: text.homeMean,
    type: "line",
    xAxisIndex: 0,
    yAxisIndex: 0,
    symbol: "none",
    lineStyle: { color: colour, type: "dotted", width: 3 },
    itemStyle: { color: COLOURS.homeMean },
    data: homeMean
      ? [
          [dayStart(homeMean.first_day), value],
          [dayStart(homeMean.last_day) + DAY_MS, value],
        ]
      : [],
    z: 1,
  });

  const xAxis = (gridIndex: number, showLabels: boolean): Record<string, unknown> => ({
    type: "time",
    gridIndex,
    min: at(input.start),
    max: at(input.end),
    axisLabel: { show: showLabels, hideOverlap: true, color: COLOURS.axis },
    axisLine: { lineStyle: { color: COLOURS.axis } },
    splitLine: { show: gridIndex !== 2, lineStyle: { color: COLOURS.grid } },
  });

  const series: Record<string, unknown>[] = [
    {
      id: BP_SERIES.systolic,
      name: text.systolic,
      type: "line",
      xAxisIndex: 0,
      yAxisIndex: 0,
      data: systolic,
      symbolSize: 8,
      lineStyle: { width: 1.5 },
      itemStyle: { color: COLOURS.systolic },
      color: COLOURS.systolic,
      ...(target
        ? { markLine: targetLine(target.systolic_mmhg, text.targetSystolic, COLOURS.target) }
        : {}),
      z: 3,
    },
    {
      id: BP_SERIES.diastolic,
      name: text.diastolic,
      type: "line",
      xAxisIndex: 0,
      yAxisIndex: 0,
      data: diastolic,
      symbolSize: 8,
      lineStyle: { width: 1.5 },
      itemStyle: { color: COLOURS.diastolic },
      color: COLOURS.diastolic,
      ...(target
        ? { markLine: targetLine(target.diastolic_mmhg, text.targetDiastolic, COLOURS.target) }
        : {}),
      z: 3,
    },
  ];
  if (homeMean) {
    series.push(
      meanSeries(BP_SERIES.homeMeanSystolic, homeMean.systolic, COLOURS.systolic),
      meanSeries(BP_SERIES.homeMeanDiastolic, homeMean.diastolic, COLOURS.diastolic),
    );
  }
  series.push(
    {
      id: BP_SERIES.pulse,
      name: text.pulse,
      type: "line",
      xAxisIndex: 1,
      yAxisIndex: 1,
      data: pulse,
      symbolSize: 6,
      lineStyle: { width: 1 },
      itemStyle: { color: COLOURS.pulse },
      color: COLOURS.pulse,
    },
    {
      id: BP_SERIES.errors,
      name: text.errors,
      type: "scatter",
      xAxisIndex: 2,
      yAxisIndex: 2,
      data: errors,
      symbol: ERROR_SYMBOL,
      symbolSize: 12,
      itemStyle: { color: COLOURS.error },
      color: COLOURS.error,
    },
  );

  const legendNames = [text.systolic, text.diastolic];
  if (homeMean) legendNames.push(text.homeMean);
  legendNames.push(text.pulse, text.errors);

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
      { left: LEFT, right: RIGHT, ...PULSE },
      { left: LEFT, right: RIGHT, ...ERRORS },
    ],
    xAxis: [xAxis(0, true), xAxis(1, false), xAxis(2, true)],
    yAxis: [
      {
        type: "value",
        gridIndex: 0,
        min: pressureMin,
        max: pressureMax,
        name: text.unitPressure,
        nameGap: 8,
        nameTextStyle: { color: COLOURS.axis, align: "right" },
        axisLabel: { color: COLOURS.axis },
        splitLine: { lineStyle: { color: COLOURS.grid } },
      },
      {
        type: "value",
        gridIndex: 1,
        min: pulseMin,
        max: pulseMax,
        splitNumber: 2,
        name: `${text.pulse} (${text.unitPulse})`,
        nameGap: 6,
        nameTextStyle: { color: COLOURS.axis, align: "left" },
        axisLabel: { color: COLOURS.axis },
        splitLine: { lineStyle: { color: COLOURS.grid } },
      },
      {
        type: "category",
        gridIndex: 2,
        data: [ERROR_ROW],
        axisLabel: { show: false },
        axisTick: { show: false },
      },
    ],
    dataZoom: zoomFor([0, 1, 2]),
    tooltip: {
      trigger: "item",
      confine: true,
      formatter: (params: unknown): string => {
        const seriesId = (params as { seriesId?: string }).seriesId;
        if (seriesId === BP_SERIES.homeMeanSystolic || seriesId === BP_SERIES.homeMeanDiastolic) {
          return tooltipHtml(text.describeMean());
        }
        const index = readingIndexOf(params);
        const reading = index === null ? undefined : readings[index];
        return reading ? tooltipHtml(text.describe(reading)) : "";
      },
    },
    series,
  };
  return option as EChartsOption;
}
