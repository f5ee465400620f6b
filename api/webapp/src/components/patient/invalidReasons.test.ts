import { describe, expect, it } from "vitest";
import { reasonMessage } from "./invalidReasons";

// The reason strings as vitals/readings.py and vitals/plausibility.py write them.
describe("reasonMessage", () => {
  it("words a value the cuff did not measure", () => {
    expect(reasonMessage("systolic_mmhg: not measured")).toEqual({
      key: "notMeasured",
      params: { field: "systolic_mmhg" },
    });
  });

  it("words an implausible value by its limit, leaving the implausible value out", () => {
    const message = reasonMessage("systolic_mmhg: 0 mmHg below plausible minimum 40");
    expect(message).toEqual({
      key: "belowPlausible",
      params: { field: "systolic_mmhg", limit: "40", unit: "mmHg" },
    });
    expect(JSON.stringify(message)).not.toContain('"0"');
    expect(reasonMessage("glucose_mg_dl: 1200 mg/dL above plausible maximum 1000")).toEqual({
      key: "abovePlausible",
      params: { field: "glucose_mg_dl", limit: "1000", unit: "mg/dL" },
    });
  });

  it("words diastolic not below systolic, control solution and sensor annunciations", () => {
    expect(reasonMessage("diastolic_mmhg: not below systolic_mmhg").key).toBe("diastolicNotBelowSystolic");
    expect(reasonMessage("sample_type: control solution, not a patient sample").key).toBe("controlSolution");
    expect(reasonMessage("sample_location: control solution, not a patient sample").key).toBe("controlSolution");
    expect(reasonMessage("sensor_status: strip_insertion_error")).toEqual({
      key: "sensorStatus",
      params: { status: "strip_insertion_error" },
    });
  });

  it("gives an unknown reason a generic message rather than the server's text", () => {
    expect(reasonMessage("something new: happened")).toEqual({ key: "other", params: {} });
  });
});
