/**
 * The parts of Apache ECharts the patient page's charts use, registered once (tree-shaken build:
 * only these are bundled). `getInstanceByDom` is also reachable as `window.vitalgateCharts`, so a
 * chart's option (its series, marks and targets as drawn) can be read from the browser console or a
 * browser test; it exposes nothing the page does not show.
 */
import { BarChart, LineChart, ScatterChart } from "echarts/charts";
import {
  AriaComponent,
  DataZoomInsideComponent,
  DataZoomSliderComponent,
  GridComponent,
  LegendScrollComponent,
  MarkAreaComponent,
  MarkLineComponent,
  TitleComponent,
  TooltipComponent,
} from "echarts/components";
import { getInstanceByDom, use } from "echarts/core";
import { CanvasRenderer } from "echarts/renderers";

use([
  BarChart,
  LineChart,
  ScatterChart,
  AriaComponent,
  DataZoomInsideComponent,
  DataZoomSliderComponent,
  GridComponent,
  LegendScrollComponent,
  MarkAreaComponent,
  MarkLineComponent,
  TitleComponent,
  TooltipComponent,
  CanvasRenderer,
]);

declare global {
  interface Window {
    vitalgateCharts?: { getInstanceByDom: typeof getInstanceByDom };
  }
}

if (typeof window !== "undefined") window.vitalgateCharts = { getInstanceByDom };

/** ECharts' own language for its built-in texts and time-axis labels. */
export function echartsLocale(locale: string): "ZH" | "EN" {
  return locale.toLowerCase().startsWith("zh") ? "ZH" : "EN";
}
