import { describe, expect, it } from "vitest";
import type { AlertOut } from "../api/client";
import { makeI18n } from "../i18n";
import { belongsTo, upsertAlert } from "./model";
import { valueLines } from "./values";

const NOW = new Date();
const iso = (minutesAgo: number) => new Date(NOW.getTime() - minutesAgo * 60_000).toISOString();

function alert(id: string, changes: Partial<AlertOut> = {}): AlertOut {
  return {
    alert_id: id,
    patient_id: "p-1",
    patient_given_name: "Wei",
    patient_family_name: "Wang",
    rule_id: "GLU-HYPO-2",
    title: "Level 2 hypoglycaemia",
    citation: "[30][32]",
    severity: "urgent",
    state: "open",
    opened_at: iso(30),
    updated_at: iso(30),
    resolved_at: null,
    acknowledged_at: null,
    acknowledged_by: null,
    snoozed_until: null,
    escalation_level: 0,
    window_start: null,
    window_end: null,
    values: {},
    reading_ids: [],
    needs_signoff: false,
    signed_off_at: null,
    signed_off_by: null,
    resolved_by: null,
    resolution_note: null,
    ...changes,
  } as AlertOut;
}

describe("live updates are upserted by alert id: nothing is listed twice", () => {
  it("replaces an acknowledged alert in place instead of adding it again", () => {
    const list = [alert("a"), alert("b", { severity: "warning" })];
    const acked = alert("a", { state: "acknowledged", updated_at: iso(1), acknowledged_by: "nurse-1" });
    const next = upsertAlert(upsertAlert(list, acked, "active"), acked, "active");
    expect(next.map((a) => [a.alert_id, a.state])).toEqual([
      ["a", "acknowledged"],
      ["b", "open"],
    ]);
  });

  it("orders by severity, then by age (oldest first)", () => {
    let list: AlertOut[] = [];
    list = upsertAlert(list, alert("new-urgent", { opened_at: iso(5) }), "active");
    list = upsertAlert(list, alert("info", { severity: "info", opened_at: iso(500) }), "active");
    list = upsertAlert(list, alert("old-urgent", { opened_at: iso(50) }), "active");
    expect(list.map((a) => a.alert_id)).toEqual(["old-urgent", "new-urgent", "info"]);
  });

  it("takes a resolved alert out of the active list and keeps an older copy from overwriting a newer one", () => {
    const resolved = alert("a", { state: "resolved", resolved_at: iso(1), updated_at: iso(1) });
    expect(upsertAlert([alert("a")], resolved, "active")).toEqual([]);
    const stale = alert("a", { state: "open", updated_at: iso(20) });
    expect(upsertAlert([resolved], stale, "recent")).toEqual([resolved]);
  });

  it("keeps an urgent alert closed unseen in needs sign-off until it is signed off", () => {
    const unseen = alert("u", { state: "resolved", resolved_at: iso(1), needs_signoff: true });
    expect(belongsTo("needs_signoff", unseen)).toBe(true);
    expect(belongsTo("needs_signoff", { ...unseen, signed_off_at: iso(0) })).toBe(false);
  });
});

describe("trigger values are shown in the user's unit and language", () => {
  const i18n = makeI18n("zh-CN");
  const t = (key: string, named?: Record<string, unknown>) => (named ? i18n.global.t(key, named) : i18n.global.t(key));

  it("shows a level-2 hypo in mmol/L and leaves out what it has no words for", () => {
    const lines = valueLines(
      { glucose_mg_dl: 47.9, meal: "fasting", criterion: "HHS range >= 600 mg/dL", report_id: "x" },
      { t, locale: "zh-CN", unit: "mmol/L" },
    );
    expect(lines.map((l) => [l.label, l.text])).toEqual([
      ["血糖", "2.7 mmol/L"],
      ["进餐情况", "空腹"],
    ]);
  });

  it("words the engine's advice and the time thresholds in the user's unit", () => {
    const lines = valueLines(
      { tbr_lt54_percent: 4.2, advice: "check ketones" },
      { t, locale: "zh-CN", unit: "mmol/L" },
    );
    expect(lines.map((l) => [l.label, l.text])).toEqual([
      ["低于 3.0 mmol/L 的时间", "4.2%"],
      ["建议", "检测酮体"],
    ]);
  });
});
