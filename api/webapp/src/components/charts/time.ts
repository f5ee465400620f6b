// Time on the charts' axes: the patient's wall clock.
//
// ECharts lays out a time axis either in the browser's zone or in UTC (`useUTC`). The patient's
// readings belong to the patient's day (morning, evening, midnight), wherever the doctor's browser
// is. So each instant is placed on the axis at its wall-clock time in the patient's zone, written as
// if it were UTC, and the charts set `useUTC: true`: ticks fall on the patient's midnights and
// labels read in the patient's time. Tooltips and tables format the true instant themselves.

const partsFormatters = new Map<string, Intl.DateTimeFormat>();

function partsFormatter(timeZone: string): Intl.DateTimeFormat {
  let formatter = partsFormatters.get(timeZone);
  if (!formatter) {
    formatter = new Intl.DateTimeFormat("en-US", {
      timeZone,
      hourCycle: "h23",
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
    });
    partsFormatters.set(timeZone, formatter);
  }
  return formatter;
}

/** The wall-clock time of `instant` in `timeZone`, as milliseconds of a UTC date with that clock. */
export function wallClockMs(instant: string | number | Date, timeZone: string): number {
  const date = instant instanceof Date ? instant : new Date(instant);
  const ms = date.getTime();
  if (Number.isNaN(ms)) {
    throw new RangeError(`not a time: ${String(instant)}`);
  }
  const parts: Record<string, number> = {};
  for (const part of partsFormatter(timeZone).formatToParts(date)) {
    if (part.type !== "literal") {
      parts[part.type] = Number(part.value);
    }
  }
  const wall = Date.UTC(
    parts.year ?? 1970,
    (parts.month ?? 1) - 1,
    parts.day ?? 1,
    parts.hour ?? 0,
    parts.minute ?? 0,
    parts.second ?? 0,
  );
  return wall + (ms % 1000);
}

/** The hour of day (0-23) of `instant` on the patient's wall clock. */
export function wallClockHour(instant: string | number | Date, timeZone: string): number {
  return new Date(wallClockMs(instant, timeZone)).getUTCHours();
}
