// Why a reading is invalid, in the user's language.
//
// The server marks a reading invalid with reasons of the form "<field>: <what>" (vitals/readings.py,
// vitals/plausibility.py): a value the meter did not measure, a value outside the plausible limits,
// diastolic not below systolic, control solution, a sensor annunciation. This module turns each into
// a message key with parameters for vue-i18n (keys under patient.reasons); it never shows the raw
// text. The implausible value itself is left out on purpose: a cuff's 0 is not a blood pressure.

export interface ReasonMessage {
  /** Key under `patient.reasons`. */
  key: string;
  params: Record<string, string>;
}

/** Fields named in reasons, by their key under `patient.reasonFields`. */
export const REASON_FIELDS = [
  "systolic_mmhg",
  "diastolic_mmhg",
  "mean_arterial_mmhg",
  "pulse_bpm",
  "glucose_mg_dl",
] as const;

/** Sensor annunciations that invalidate a glucose result (vitals SENSOR_STATUS_INVALIDATING). */
export const SENSOR_STATUSES = [
  "device_battery_low",
  "sensor_malfunction",
  "sample_size_insufficient",
  "strip_insertion_error",
  "strip_type_incorrect",
  "result_too_high",
  "result_too_low",
  "sensor_temperature_too_high",
  "sensor_temperature_too_low",
  "sensor_read_interrupted",
  "general_device_fault",
  "time_fault",
] as const;

/** Cuff measurement-status flags (Blood Pressure Measurement status bits). */
export const CUFF_FLAGS = [
  "body_movement",
  "cuff_too_loose",
  "irregular_pulse",
  "pulse_rate_above_range",
  "pulse_rate_below_range",
  "improper_position",
] as const;

const PLAUSIBLE = /^(\w+): (?:-?[\d.eE+-]+|inf|-inf) (\S+) (below|above) plausible (?:minimum|maximum) (-?[\d.eE+]+)$/;

function known<T extends string>(list: readonly T[], value: string): value is T {
  return (list as readonly string[]).includes(value);
}

/** The message for one reason string of the API. */
export function reasonMessage(reason: string): ReasonMessage {
  const text = reason.trim();
  const plausible = PLAUSIBLE.exec(text);
  if (plausible) {
    const [, field = "", unit = "", side = "", limit = ""] = plausible;
    if (known(REASON_FIELDS, field)) {
      return { key: side === "below" ? "belowPlausible" : "abovePlausible", params: { field, limit, unit } };
    }
  }
  const colon = text.indexOf(": ");
  const field = colon < 0 ? "" : text.slice(0, colon);
  const what = colon < 0 ? text : text.slice(colon + 2);
  if (known(REASON_FIELDS, field)) {
    if (what === "not measured") return { key: "notMeasured", params: { field } };
    if (what === "not a number") return { key: "notANumber", params: { field } };
    if (what === "not below systolic_mmhg") return { key: "diastolicNotBelowSystolic", params: {} };
  }
  if ((field === "sample_type" || field === "sample_location") && what.startsWith("control solution")) {
    return { key: "controlSolution", params: {} };
  }
  if (field === "sensor_status" && known(SENSOR_STATUSES, what)) {
    return { key: "sensorStatus", params: { status: what } };
  }
  if (known(SENSOR_STATUSES, text)) return { key: "sensorStatus", params: { status: text } };
  return { key: "other", params: {} };
}
