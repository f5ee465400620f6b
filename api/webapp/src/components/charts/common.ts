// Pieces every chart of the patient page shares: colours, the error strip, zoom, tooltips.
//
// Colours: each one has at least 3:1 contrast against the white chart background (WCAG 2.2 AA,
// 1.4.11 non-text contrast); shapes tell series apart as well, so colour is never the only cue.

export const COLOURS = {
  systolic: "#b42318",
  diastolic: "#1d4ed8",
  pulse: "#6b21a8",
  homeMean: "#374151",
  target: "#15803d",
  targetArea: "rgba(21, 128, 61, 0.10)",
  error: "#111827",
  axis: "#4b5563",
  grid: "#e5e7eb",
} as const;

/** An "X": an error reading is a mark on the time axis, never a point at a value. */
export const ERROR_SYMBOL = "path://M2,0L5,3L8,0L10,2L7,5L10,8L8,10L5,7L2,10L0,8L3,5L0,2Z";

/** The one category of the error strip's y axis: where error readings are drawn. */
export const ERROR_ROW = "errors";

export function escapeHtml(text: string): string {
  return text
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

/** Tooltip HTML from plain lines of text (the first in bold). */
export function tooltipHtml(lines: readonly string[]): string {
  return lines
    .map((line, index) => (index === 0 ? `<b>${escapeHtml(line)}</b>` : escapeHtml(line)))
    .join("<br>");
}

/** Data items carry the index of their reading, so the tooltip can describe that reading. */
export interface IndexedItem {
  value: [number, number | string];
  readingIndex: number;
  symbol?: string;
  itemStyle?: Record<string, unknown>;
}

export function readingIndexOf(params: unknown): number | null {
  if (typeof params !== "object" || params === null) return null;
  const data = (params as { data?: unknown }).data;
  if (typeof data !== "object" || data === null) return null;
  const index = (data as { readingIndex?: unknown }).readingIndex;
  return typeof index === "number" ? index : null;
}

/** Zoom on every x axis of a chart at once: by wheel or pinch, and by the slider under the chart. */
export function zoomFor(xAxisIndex: number[]): Record<string, unknown>[] {
  return [
    { type: "inside", xAxisIndex, filterMode: "none" },
    {
      type: "slider",
      xAxisIndex,
      filterMode: "none",
      height: 20,
      bottom: 8,
      labelFormatter: "",
      showDetail: false,
    },
  ];
}

/** A step of 1, 2 or 5 times a power of ten near `rough`. */
export function niceStep(rough: number): number {
  if (!(rough > 0) || !Number.isFinite(rough)) return 1;
  const power = 10 ** Math.floor(Math.log10(rough));
  const fraction = rough / power;
  return (fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10) * power;
}

/**
 * The y range to show `values` (readings, targets, means) with some room, its ends on a round step so
 * the axis labels are round numbers; `fallback` when there is nothing to show.
 */
export function niceExtent(values: readonly number[], fallback: [number, number]): [number, number] {
  const finite = values.filter((value) => Number.isFinite(value));
  const [low, high] = finite.length ? [Math.min(...finite), Math.max(...finite)] : fallback;
  const span = Math.max(high - low, (Math.abs(high) || 1) * 0.2);
  const step = niceStep(span / 4);
  return [Math.max(0, Math.floor((low - span * 0.1) / step) * step), Math.ceil((high + span * 0.1) / step) * step];
}
