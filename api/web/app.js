// vitalgate doctors' web app: patient panel, trend charts, live alert inbox. No build step.
"use strict";

const MG_DL_PER_MMOL_L = 18.01559; // vitals/units.py (Tidepool factor)
const T = {
  en: { unit: "Glucose unit", language: "Language", logout: "Sign out", signin: "Sign in", email: "E-mail",
        password: "Password", patients: "Patients", patient: "Patient", bp: "Blood pressure", glucose: "Glucose",
        alerts: "Alerts", inbox: "Alert inbox", bp_trend: "Blood pressure, last 30 days (mmHg)",
        glucose_trend: "Glucose, last 30 days", none: "no readings", login_failed: "Wrong e-mail or password",
        acknowledge: "Acknowledge", no_alerts: "No open alerts" },
  zh: { unit: "血糖单位", language: "语言", logout: "退出", signin: "登录", email: "电子邮箱", password: "密码",
        patients: "患者", patient: "患者", bp: "血压", glucose: "血糖", alerts: "警报", inbox: "警报收件箱",
        bp_trend: "近30天血压 (mmHg)", glucose_trend: "近30天血糖", none: "暂无数据", login_failed: "邮箱或密码错误",
        acknowledge: "确认", no_alerts: "没有未处理的警报" },
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

function glucoseText(mgDl) {
  if (mgDl == null) return "–";
  return state.unit === "mg/dL" ? `${Math.round(mgDl)} mg/dL` : `${(mgDl / MG_DL_PER_MMOL_L).toFixed(1)} mmol/L`;
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {}, state.token ? { Authorization: `Bearer ${state.token}` } : {});
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401) { logout(); throw new Error("unauthorised"); }
  if (!response.ok) throw new Error(`${response.status}`);
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
  state.patient = p;
  $("#patient-view").hidden = false;
  $("#patient-title").textContent = `${p.family_name} ${p.given_name} (${p.patient_id})`;
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
  $("#lang").addEventListener("change", (e) => { state.lang = e.target.value; localStorage.setItem("vitalgate.lang", state.lang); applyLanguage(); if (state.token) showPanel(); });
  $("#unit").addEventListener("change", (e) => { state.unit = e.target.value; localStorage.setItem("vitalgate.unit", state.unit); if (state.token) { showPanel(); if (state.patient) showPatient(state.patient); } });
  $("#login-form").addEventListener("submit", login);
  $("#logout").addEventListener("click", logout);
  applyLanguage();
  if (state.token) showPanel().catch(logout);
});
