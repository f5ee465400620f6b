// vitalgate doctors' web app: patient panel, trend charts, live alert inbox. No build step.
"use strict";

const MG_DL_PER_MMOL_L = 18.01559; // vitals/units.py (Tidepool factor)
const T = {
  en: { unit: "Glucose unit", language: "Language", logout: "Sign out", signin: "Sign in", email: "E-mail",
        password: "Password", patients: "Patients", patient: "Patient", bp: "Blood pressure", glucose: "Glucose",
        alerts: "Alerts", inbox: "Alert inbox", bp_trend: "Blood pressure, last 30 days (mmHg)",
        glucose_trend: "Glucose, last 30 days", none: "no readings", login_failed: "Wrong e-mail or password",
        login_throttled: "Too many failed sign-ins. Try again in {n} min.",
        login_locked: "This account is locked after repeated failed sign-ins. Ask your clinic administrator to unlock it.",
        acknowledge: "Acknowledge", no_alerts: "No open alerts",
        targets: "Targets", targets_hint: "Leave a field empty to use the guideline's value (shown in grey).",
        goal_systolic: "BP goal, systolic", goal_diastolic: "BP goal, diastolic",
        fasting_high: "Fasting glucose upper limit", postprandial_high: "Post-meal glucose limit",
        hypo: "Hypoglycaemia threshold",
        bp_titration: "BP medication being titrated", on_insulin: "On insulin", older_adult: "Older or high-risk adult",
        guideline: "Guideline", clinic_default: "Clinic default", profile_cn: "China (CN)", profile_us: "United States (US)",
        profile_eu: "Europe (EU)", timezone: "Time zone", clinic_zone: "clinic's", profile_value: "guideline value",
        save: "Save", targets_saved: "Saved.", changed_by: "Last changed by {who} at {when}",
        stale_after: "Stale-data alert after {n} days without a reading",
        targets_forbidden: "Only the family doctor can change targets.", not_a_number: "Not a number",
        save_failed: "Could not save" },
  zh: { unit: "血糖单位", language: "语言", logout: "退出", signin: "登录", email: "电子邮箱", password: "密码",
        patients: "患者", patient: "患者", bp: "血压", glucose: "血糖", alerts: "警报", inbox: "警报收件箱",
        bp_trend: "近30天血压 (mmHg)", glucose_trend: "近30天血糖", none: "暂无数据", login_failed: "邮箱或密码错误",
        login_throttled: "登录失败次数过多，请 {n} 分钟后再试。",
        login_locked: "多次登录失败，此账户已锁定。请联系诊所管理员解锁。",
        acknowledge: "确认", no_alerts: "没有未处理的警报",
        targets: "目标值", targets_hint: "留空则采用指南默认值（灰色显示）。",
        goal_systolic: "收缩压目标", goal_diastolic: "舒张压目标",
        fasting_high: "空腹血糖上限", postprandial_high: "餐后血糖上限",
        hypo: "低血糖阈值",
        bp_titration: "正在调整降压药", on_insulin: "使用胰岛素", older_adult: "老年或高风险患者",
        guideline: "指南", clinic_default: "诊所默认", profile_cn: "中国 (CN)", profile_us: "美国 (US)",
        profile_eu: "欧洲 (EU)", timezone: "时区", clinic_zone: "诊所时区", profile_value: "指南默认值",
        save: "保存", targets_saved: "已保存。", changed_by: "最后修改：{who}，{when}",
        stale_after: "连续 {n} 天无测量数据时发出提醒",
        targets_forbidden: "只有家庭医生可以修改目标值。", not_a_number: "不是有效数字",
        save_failed: "保存失败" },
};
const state = { token: sessionStorage.getItem("vitalgate.token"), lang: localStorage.getItem("vitalgate.lang") || "en",
                unit: localStorage.getItem("vitalgate.unit") || "mmol/L", patient: null, events: null,
                // Notification links open /app/?alert=ID: that alert is highlighted in the inbox.
                focusAlert: new URLSearchParams(location.search).get("alert") };
const $ = (sel) => document.querySelector(sel);
const t = (key) => (T[state.lang] || T.en)[key] || key;

function applyLanguage() {
  document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
}

// Glucose in the user's unit, as a number string: 1 decimal in mmol/L, whole mg/dL.
function glucoseInUnit(mgDl) {
  return state.unit === "mg/dL" ? String(Math.round(mgDl)) : (mgDl / MG_DL_PER_MMOL_L).toFixed(1);
}

function glucoseText(mgDl) {
  if (mgDl == null) return "–";
  return `${glucoseInUnit(mgDl)} ${state.unit}`;
}

// A refused request: the HTTP status and the API's `detail` (a string, or FastAPI's list of field errors).
class ApiError extends Error {
  constructor(status, detail) { super(`${status}`); this.status = status; this.detail = detail; }
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {}, state.token ? { Authorization: `Bearer ${state.token}` } : {});
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401) { logout(); throw new Error("unauthorised"); }
  if (!response.ok) {
    let detail = null;
    try { detail = (await response.json()).detail; } catch (e) { /* not JSON */ }
    throw new ApiError(response.status, detail);
  }
  return response.json();
}

function logout() {
  state.token = null; sessionStorage.removeItem("vitalgate.token");
  if (state.events) { state.events.abort(); state.events = null; }
  $("#login-view").hidden = false; $("#panel-view").hidden = true; $("#logout").hidden = true;
}

async function login(event) {
  event.preventDefault();
  const body = new URLSearchParams(new FormData(event.target));
  const response = await fetch("/api/v1/auth/token", { method: "POST", body });
  if (response.status === 429) {
    // Too many failed sign-ins (api/login_throttle.py): say so, and for how long, instead of "wrong password".
    const minutes = Math.max(1, Math.ceil(Number(response.headers.get("Retry-After") || 60) / 60));
    $("#login-error").textContent = t("login_throttled").replace("{n}", minutes);
    return;
  }
  if (response.status === 403) { $("#login-error").textContent = t("login_locked"); return; } // api/routes/auth.py
  if (!response.ok) { $("#login-error").textContent = t("login_failed"); return; }
  state.token = (await response.json()).access_token;
  sessionStorage.setItem("vitalgate.token", state.token);
  $("#login-error").textContent = "";
  await showPanel();
}

async function showPanel() {
  $("#login-view").hidden = true; $("#panel-view").hidden = false; $("#logout").hidden = false;
  const rows = await api("/api/v1/patients");
  const tbody = $("#panel tbody");
  tbody.replaceChildren();
  for (const p of rows) {
    const tr = document.createElement("tr");
    tr.className = "patient"; tr.dataset.patientId = p.patient_id;
    const bp = p.latest_blood_pressure;
    const cells = [
      `${p.family_name} ${p.given_name}`,
      bp ? `${Math.round(bp.systolic_mmhg)}/${Math.round(bp.diastolic_mmhg)}` : t("none"),
      p.latest_glucose ? glucoseText(p.latest_glucose.glucose_mg_dl) : t("none"),
    ];
    for (const text of cells) { const td = document.createElement("td"); td.textContent = text; tr.append(td); }
    const td = document.createElement("td");
    if (p.open_alerts) { const b = document.createElement("span"); b.className = "badge"; b.textContent = p.open_alerts; td.append(b); }
    tr.append(td);
    tr.addEventListener("click", () => showPatient(p));
    tbody.append(tr);
  }
  await loadInbox();
  listenForAlerts();
}

async function showPatient(p) {
  const samePatient = state.patient && state.patient.patient_id === p.patient_id;
  state.patient = p;
  $("#patient-view").hidden = false;
  $("#patient-title").textContent = `${p.family_name} ${p.given_name} (${p.patient_id})`;
  if (!samePatient) clearTargets();
  loadTargets(p);
  await drawCharts(p);
}

async function drawCharts(p) {
  const [bp, glucose] = await Promise.all([
    api(`/api/v1/patients/${encodeURIComponent(p.patient_id)}/readings?kind=blood_pressure`),
    api(`/api/v1/patients/${encodeURIComponent(p.patient_id)}/readings?kind=glucose`),
  ]);
  drawChart($("#bp-chart"), bp.readings, [
    { key: "systolic_mmhg", cls: "systolic" }, { key: "diastolic_mmhg", cls: "diastolic" }], [135, 85], (v) => v);
  const convert = state.unit === "mg/dL" ? (v) => v : (v) => v / MG_DL_PER_MMOL_L;
  drawChart($("#glucose-chart"), glucose.readings, [{ key: "glucose_mg_dl", cls: "glucose" }],
    [70, 180].map(convert), convert);
}

// ---- Per-patient targets (api/routes/targets.py). Glucose is mg/dL in the API, the user's unit on screen.
const BP_FIELDS = ["bp_goal_systolic_mmhg", "bp_goal_diastolic_mmhg"];
const GLUCOSE_FIELDS = ["glucose_fasting_high_mg_dl", "glucose_postprandial_high_mg_dl", "glucose_hypo_mg_dl"];
const FLAG_FIELDS = ["bp_titration", "on_insulin", "older_adult"];
// Every field of the PUT body: PUT replaces the whole set, so what the form does not show is sent back as read.
const TARGET_FIELDS = ["guideline_profile", ...BP_FIELDS, ...GLUCOSE_FIELDS,
                       ...FLAG_FIELDS, "timezone"];
const FIELD_LABELS = { bp_goal_systolic_mmhg: "goal_systolic", bp_goal_diastolic_mmhg: "goal_diastolic",
                       glucose_fasting_high_mg_dl: "fasting_high", glucose_postprandial_high_mg_dl: "postprandial_high",
                       glucose_hypo_mg_dl: "hypo",
                       guideline_profile: "guideline", timezone: "timezone" };
const targetsUrl = (patientId) => `/api/v1/patients/${encodeURIComponent(patientId)}/targets`;
const mmHgText = (v) => String(Math.round(v * 10) / 10);
const isShown = (p) => state.patient != null && state.patient.patient_id === p.patient_id;

function clearTargets() {
  state.targets = null;
  $("#targets-form").hidden = true;
  for (const id of ["#targets-meta", "#targets-stale", "#targets-saved", "#targets-error"]) $(id).textContent = "";
}

async function loadTargets(p) {
  try {
    const targets = await api(targetsUrl(p.patient_id));
    if (isShown(p)) renderTargets(targets);
  } catch (e) {
    if (isShown(p)) $("#targets-error").textContent = `${t("targets")}: ${e.status || e.message}`;
  }
}

function formatTime(iso) {
  // The API's times are UTC; a time without an offset is read as UTC, not local time.
  const ms = Date.parse(/[zZ]|[+-]\d\d:?\d\d$/.test(iso) ? iso : `${iso}Z`);
  return Number.isNaN(ms) ? iso : new Date(ms).toLocaleString(state.lang === "zh" ? "zh-CN" : "en");
}

// Fill the form from targets as the API returns them (or a draft of the same shape). A field left empty
// shows what the rules use instead as its placeholder: the guideline profile's value.
function renderTargets(targets) {
  state.targets = targets;
  const form = $("#targets-form"), use = targets.rules_use;
  form.hidden = false;
  for (const name of BP_FIELDS) {
    const input = form.elements[name];
    input.value = targets[name] == null ? "" : mmHgText(targets[name]);
    input.placeholder = targets[name] == null ? mmHgText(use[name]) : t("profile_value");
  }
  for (const name of GLUCOSE_FIELDS) {
    const input = form.elements[name];
    input.value = targets[name] == null ? "" : glucoseInUnit(targets[name]);
    input.placeholder = targets[name] == null ? glucoseInUnit(use[name]) : t("profile_value");
    input.step = state.unit === "mg/dL" ? "1" : "0.1";
    // Saving a value the doctor did not touch keeps it exactly, not its rounded display converted back.
    input.dataset.mgDl = targets[name] == null ? "" : String(targets[name]);
    input.dataset.shown = input.value;
  }
  form.querySelectorAll(".glucose-unit").forEach((el) => { el.textContent = state.unit; });
  for (const name of FLAG_FIELDS) form.elements[name].checked = Boolean(targets[name]);
  const profileSelect = form.elements.guideline_profile;
  profileSelect.value = targets.guideline_profile || "";
  // Only when the patient has no profile of their own is the one the rules use the clinic's.
  profileSelect.options[0].textContent = targets.guideline_profile == null
    ? `${t("clinic_default")} (${use.guideline_profile.toUpperCase()})` : t("clinic_default");
  form.elements.timezone.value = targets.timezone || "";
  form.elements.timezone.placeholder = targets.timezone == null ? `${t("clinic_zone")} (${use.timezone})` : t("clinic_zone");
  $("#targets-meta").textContent = targets.updated_by
    ? t("changed_by").replace("{who}", targets.updated_by).replace("{when}", formatTime(targets.updated_at)) : "";
  $("#targets-stale").textContent = t("stale_after").replace("{n}", use.stale_after_days);
}

// The form's values as the API takes them (glucose in mg/dL), over the targets last shown; `bad` lists
// number fields whose text is not a number (the browser reports those as empty: never save them as "empty").
function readTargets() {
  const form = $("#targets-form"), values = Object.assign({}, state.targets), bad = [];
  const number = (input) => {
    if (input.validity.badInput) { bad.push(t(FIELD_LABELS[input.name])); return values[input.name]; }
    return input.value.trim() === "" ? null : Number(input.value);
  };
  for (const name of BP_FIELDS) values[name] = number(form.elements[name]);
  for (const name of GLUCOSE_FIELDS) {
    const input = form.elements[name];
    if (input.value === input.dataset.shown) { values[name] = input.dataset.mgDl === "" ? null : Number(input.dataset.mgDl); continue; }
    const v = number(input);
    values[name] = v == null || input.validity.badInput ? v : state.unit === "mg/dL" ? v : v * MG_DL_PER_MMOL_L;
  }
  for (const name of FLAG_FIELDS) values[name] = form.elements[name].checked;
  values.guideline_profile = form.elements.guideline_profile.value || null;
  values.timezone = form.elements.timezone.value.trim() || null;
  return { values, bad };
}

// FastAPI's 422: a string, or a list of {loc, msg, ctx}. Name the field, and give glucose bounds in both units.
function detailText(detail) {
  if (typeof detail === "string") return detail;
  if (!Array.isArray(detail) || !detail.length) return t("save_failed");
  return detail.map((d) => {
    const field = Array.isArray(d.loc) ? d.loc[d.loc.length - 1] : null;
    const msg = String(d.msg || "").replace(/^Value error, /, "");
    if (!FIELD_LABELS[field]) return msg;
    let text = `${t(FIELD_LABELS[field])}: ${msg}`;
    if (field.endsWith("_mg_dl")) {
      text += " mg/dL";
      const bound = d.ctx && (d.ctx.le != null ? d.ctx.le : d.ctx.ge);
      if (state.unit !== "mg/dL" && typeof bound === "number") text += ` (${(bound / MG_DL_PER_MMOL_L).toFixed(1)} mmol/L)`;
    } else if (field.startsWith("bp_")) {
      text += " mmHg";
    }
    return text;
  }).join("; ");
}

async function saveTargets(event) {
  event.preventDefault();
  const p = state.patient, saved = $("#targets-saved"), error = $("#targets-error"), button = $("#targets-save");
  saved.textContent = ""; error.textContent = "";
  if (!p || !state.targets) return;
  const { values, bad } = readTargets();
  if (bad.length) { error.textContent = `${t("not_a_number")}: ${bad.join(", ")}`; return; }
  const body = Object.fromEntries(TARGET_FIELDS.map((name) => [name, values[name] === undefined ? null : values[name]]));
  button.disabled = true;
  try {
    const targets = await api(targetsUrl(p.patient_id), { method: "PUT", headers: { "Content-Type": "application/json" },
                                                         body: JSON.stringify(body) });
    if (!isShown(p)) return;
    renderTargets(targets);
    saved.textContent = t("targets_saved");
  } catch (e) {
    if (!isShown(p)) return;
    error.textContent = e.status === 403 ? t("targets_forbidden")
      : e.status === 422 ? detailText(e.detail)
      : `${t("save_failed")} (${e.status ? `HTTP ${e.status}${typeof e.detail === "string" ? `: ${e.detail}` : ""}` : e.message})`;
  } finally {
    button.disabled = false;
  }
}

// A plain SVG line chart: valid readings as lines, invalid ones as hollow points (kept, never hidden).
function drawChart(svg, readings, series, targets, convert) {
  const NS = "http://www.w3.org/2000/svg", W = 720, H = 240, PAD = 36;
  svg.replaceChildren();
  const el = (name, attrs, text) => { const e = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); if (text != null) e.textContent = text; svg.append(e); return e; };
  if (!readings.length) { el("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, t("none")); return; }
  const times = readings.map((r) => Date.parse(r.measured_at));
  const values = readings.flatMap((r) => series.map((s) => r[s.key]).filter((v) => v != null).map(convert));
  const lo = Math.min(...values, ...targets) * 0.9, hi = Math.max(...values, ...targets) * 1.05;
  const t0 = Math.min(...times), t1 = Math.max(...times) || t0 + 1;
  const x = (ms) => PAD + ((ms - t0) / Math.max(t1 - t0, 1)) * (W - 2 * PAD);
  const y = (v) => H - PAD - ((v - lo) / Math.max(hi - lo, 1e-9)) * (H - 2 * PAD);
  el("line", { x1: PAD, y1: H - PAD, x2: W - PAD, y2: H - PAD, class: "axis" });
  el("line", { x1: PAD, y1: PAD, x2: PAD, y2: H - PAD, class: "axis" });
  for (const target of targets) {
    el("line", { x1: PAD, x2: W - PAD, y1: y(target), y2: y(target), class: "target" });
    el("text", { x: 2, y: y(target) + 4 }, target.toFixed(target < 30 ? 1 : 0));
  }
  el("text", { x: PAD, y: H - 10 }, new Date(t0).toLocaleDateString(state.lang === "zh" ? "zh-CN" : "en"));
  el("text", { x: W - PAD, y: H - 10, "text-anchor": "end" }, new Date(t1).toLocaleDateString(state.lang === "zh" ? "zh-CN" : "en"));
  for (const s of series) {
    const points = readings.filter((r) => r.valid && r[s.key] != null).map((r) => `${x(Date.parse(r.measured_at))},${y(convert(r[s.key]))}`);
    if (points.length) el("polyline", { points: points.join(" "), class: s.cls, "data-series": s.key, "data-count": points.length });
    for (const r of readings.filter((r) => !r.valid && r[s.key] != null)) {
      el("circle", { cx: x(Date.parse(r.measured_at)), cy: y(convert(r[s.key])), r: 4, class: "invalid" });
    }
  }
}

async function loadInbox() {
  const list = $("#inbox");
  list.replaceChildren();
  let alerts = [];
  try { alerts = await api("/api/v1/alerts"); } catch (e) { /* alerts service not configured */ }
  if (!alerts.length) { const li = document.createElement("li"); li.textContent = t("no_alerts"); list.append(li); return; }
  for (const a of alerts) list.append(alertItem(a));
}

function alertItem(a) {
  const li = document.createElement("li");
  li.className = a.severity; li.dataset.alertId = a.alert_id; li.dataset.state = a.state;
  if (a.alert_id === state.focusAlert) li.classList.add("focus");
  const title = document.createElement("strong"); title.textContent = a.title;
  const meta = document.createElement("div");
  meta.textContent = `${a.rule_id} · ${a.patient_id} · ${a.severity} · ${a.state}`;
  li.append(title, meta);
  if (a.state === "open" || a.state === "escalated") {
    const button = document.createElement("button");
    button.textContent = t("acknowledge");
    button.addEventListener("click", async () => {
      await api(`/api/v1/alerts/${encodeURIComponent(a.alert_id)}/ack`, { method: "POST" });
      await loadInbox();
    });
    li.append(button);
  }
  return li;
}

// Live alert events (server-sent events). fetch() instead of EventSource so the bearer token goes in a header.
async function listenForAlerts() {
  if (state.events) return;
  state.events = new AbortController();
  try {
    const response = await fetch("/api/v1/alerts/events", { headers: { Authorization: `Bearer ${state.token}` },
                                                             signal: state.events.signal });
    if (!response.ok || !response.body) { state.events = null; return; }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const chunk = buffer.slice(0, end); buffer = buffer.slice(end + 2);
        if (chunk.split("\n").some((line) => line.startsWith("data:"))) await loadInbox();
      }
    }
  } catch (e) { /* aborted on sign-out or connection lost */ }
  state.events = null;
}

document.addEventListener("DOMContentLoaded", () => {
  $("#lang").value = state.lang; $("#unit").value = state.unit;
  $("#lang").addEventListener("change", (e) => {
    const draft = state.targets ? readTargets().values : null;
    state.lang = e.target.value; localStorage.setItem("vitalgate.lang", state.lang); applyLanguage();
    if (draft) renderTargets(draft);
    if (state.token) showPanel();
  });
  $("#unit").addEventListener("change", (e) => {
    // Read the form in the old unit before switching, then show it again in the new one.
    const draft = state.targets ? readTargets().values : null;
    state.unit = e.target.value; localStorage.setItem("vitalgate.unit", state.unit);
    if (draft) renderTargets(draft);
    if (state.token) { showPanel(); if (state.patient) drawCharts(state.patient); }
  });
  $("#login-form").addEventListener("submit", login);
  $("#targets-form").addEventListener("submit", saveTargets);
  $("#logout").addEventListener("click", logout);
  applyLanguage();
  if (state.token) showPanel().catch(logout);
});
