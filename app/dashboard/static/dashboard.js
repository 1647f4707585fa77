// The dashboard: log in (session cookie), list experiments, watch one live, read trial logs.
// Everything it shows comes from the API; plot data is aggregated on the server (plots.js draws it).
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const REFRESH_MS = Math.max(250, Number(params.get("refresh") || 2000));
const PAGE = 50;
const state = { timer: null, view: null, exp: null, sort: "number", desc: true, offset: 0, log: null };

const XHR = { "X-Requested-With": "XMLHttpRequest" }; // no Basic challenge: the page has its own login form

class Unauthorized extends Error {}

async function api(path) {
  const res = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json", ...XHR } });
  if (res.status === 401) throw new Unauthorized();
  if (!res.ok) {
    let detail = res.statusText;
    try { detail = (await res.json()).detail || detail; } catch (_) { /* not JSON */ }
    throw new Error(`${res.status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
  }
  const type = res.headers.get("content-type") || "";
  return type.includes("json") ? res.json() : res.text();
}

function show(view) {
  for (const id of ["login-view", "list-view", "experiment-view"]) $(id).hidden = id !== view;
  state.view = view;
}

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (cls) td.className = cls;
  return td;
}

function fmt(x) {
  if (x === null || x === undefined) return "";
  if (typeof x === "number") return Number.isInteger(x) ? String(x) : x.toPrecision(5);
  return String(x);
}

function age(iso) {
  if (!iso) return "";
  const s = (Date.now() - new Date(iso).getTime()) / 1000;
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 129600) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}

function duration(t) {
  if (!t.started_at) return "";
  const end = t.ended_at ? new Date(t.ended_at) : new Date();
  return `${((end - new Date(t.started_at)) / 1000).toFixed(1)} s`;
}

function done(counts) {
  return ["finished", "failed", "early_stopped"].reduce((n, k) => n + (counts[k] || 0), 0);
}

function progress(e) {
  const n = done(e.counts);
  return e.max_trials ? `${n}/${e.max_trials}` : `${n}/-`;
}

// --- login ------------------------------------------------------------------------------
async function login(event) {
  event.preventDefault();
  $("login-error").textContent = "";
  const auth = "Basic " + btoa(unescape(encodeURIComponent(`${$("login-user").value}:${$("login-password").value}`)));
  const res = await fetch("/platform/rest/conductor/v1/auth/logon", { headers: { Authorization: auth, ...XHR }, credentials: "same-origin" });
  if (!res.ok) {
    $("login-error").textContent = res.status === 401 ? "wrong user name or password" : `log in failed (${res.status})`;
    return;
  }
  $("login-password").value = "";
  route();
}

async function logout() {
  await fetch("/api/v1/tokens/current", { method: "DELETE", credentials: "same-origin", headers: XHR });
  route();
}

// --- experiment list ------------------------------------------------------------------------
async function renderList() {
  const items = await api("/api/v1/dashboard/experiments?limit=200");
  const body = $("experiments").tBodies[0];
  body.replaceChildren();
  for (const e of items) {
    const row = body.insertRow();
    row.dataset.name = e.name;
    const link = document.createElement("a");
    link.href = `#/e/${encodeURIComponent(e.name)}`;
    link.textContent = e.name;
    row.insertCell().appendChild(link);
    cell(row, e.state, "state");
    cell(row, progress(e));
    cell(row, fmt(e.best_value));
    cell(row, e.algorithm);
    cell(row, e.owner);
    cell(row, age(e.created_at));
    row.addEventListener("click", () => { location.hash = link.getAttribute("href"); });
  }
  $("list-empty").hidden = items.length > 0;
}

// --- one experiment ---------------------------------------------------------------------------
async function renderExperiment(name) {
  const data = await api(`/api/v1/dashboard/experiments/${encodeURIComponent(name)}`);
  const e = data.experiment;
  $("exp-name").textContent = e.name;
  $("exp-state").textContent = e.state;
  $("exp-progress").textContent = `${progress(e)} trials`;
  $("exp-progress-bar").style.width = e.max_trials ? `${Math.min(100, (100 * done(e.counts)) / e.max_trials)}%` : "0";
  $("exp-best").textContent = e.best_value === null ? "no best yet" : `best ${e.metric} ${fmt(e.best_value)} (trial ${e.best_trial})`;
  const c = e.counts;
  $("exp-counts").textContent = `running ${c.running} · queued ${c.queued} · failed ${c.failed} · stopped early ${c.early_stopped}`;
  $("exp-message").textContent = e.message || "";
  HPOPlots.render({ history: "history", curves: "curves", parallel: "parallel", importance: "importance" }, data.plots, e);
  await renderTrials(name);
  if (state.log) await renderLog(false);
}

async function renderTrials(name) {
  const q = new URLSearchParams({ sort: state.sort, desc: state.desc, offset: state.offset, limit: PAGE });
  if ($("trial-state").value) q.set("state", $("trial-state").value);
  const page = await api(`/api/v1/dashboard/experiments/${encodeURIComponent(name)}/trials?${q}`);
  const body = $("trial-table").tBodies[0];
  body.replaceChildren();
  for (const t of page.items) {
    const row = body.insertRow();
    row.dataset.number = t.number;
    cell(row, t.number);
    cell(row, t.state, "state");
    cell(row, Object.entries(t.params).map(([k, v]) => `${k}=${fmt(v)}`).join(" "), "params");
    cell(row, fmt(t.objective));
    cell(row, duration(t));
    cell(row, t.worker);
    cell(row, t.gpus);
    cell(row, t.attempt);
    row.title = t.reason || "";
    row.addEventListener("click", () => openLog(t.number, t.state));
  }
  $("trial-total").textContent = `(${page.total})`;
  const last = Math.min(state.offset + PAGE, page.total);
  $("trial-page").textContent = page.total ? `${state.offset + 1}-${last} of ${page.total}` : "none";
  $("trial-prev").disabled = state.offset === 0;
  $("trial-next").disabled = last >= page.total;
  for (const th of $("trial-table").tHead.rows[0].cells) {
    th.classList.toggle("sorted", th.dataset.sort === state.sort);
    th.classList.toggle("desc", th.dataset.sort === state.sort && state.desc);
  }
}

function openLog(number, trialState) {
  state.log = { number, state: trialState };
  $("log-panel").hidden = false;
  $("log-trial").textContent = `#${number}`;
  renderLog(true);
}

async function renderLog(scroll) {
  if (!state.log || !state.exp) return;
  if (!scroll && !$("log-follow").checked) return;
  const stream = document.querySelector('input[name="log-stream"]:checked').value;
  const text = await api(`/api/v1/experiments/${encodeURIComponent(state.exp)}/trials/${state.log.number}/log?stream=${stream}`);
  const pre = $("log-text");
  const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  pre.textContent = text || "(empty)";
  if (scroll || atBottom) pre.scrollTop = pre.scrollHeight;
}

// --- routing and polling ----------------------------------------------------------------------
async function refresh() {
  clearTimeout(state.timer);
  try {
    if (state.view === "list-view") await renderList();
    else if (state.view === "experiment-view") await renderExperiment(state.exp);
  } catch (err) {
    if (err instanceof Unauthorized) return route();
    const msg = $("exp-message");
    if (state.view === "experiment-view" && msg) msg.textContent = `could not refresh: ${err.message}`;
  }
  state.timer = setTimeout(refresh, state.view === "list-view" ? Math.max(REFRESH_MS, 5000) : REFRESH_MS);
}

async function route() {
  clearTimeout(state.timer);
  try {
    const me = await api("/api/v1/me");
    $("whoami").textContent = me.name;
    $("logout").hidden = false;
  } catch (err) {
    if (!(err instanceof Unauthorized)) throw err;
    $("whoami").textContent = "";
    $("logout").hidden = true;
    show("login-view");
    return;
  }
  const m = location.hash.match(/^#\/e\/(.+)$/);
  if (m) {
    const name = decodeURIComponent(m[1]);
    if (state.exp !== name) Object.assign(state, { exp: name, offset: 0, log: null, sort: "number", desc: true });
    $("log-panel").hidden = !state.log;
    show("experiment-view");
  } else {
    state.exp = null;
    show("list-view");
  }
  await refresh();
}

$("login-form").addEventListener("submit", login);
$("logout").addEventListener("click", logout);
$("trial-prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); refresh(); });
$("trial-next").addEventListener("click", () => { state.offset += PAGE; refresh(); });
$("trial-state").addEventListener("change", () => { state.offset = 0; refresh(); });
$("log-close").addEventListener("click", () => { state.log = null; $("log-panel").hidden = true; });
for (const input of document.querySelectorAll('input[name="log-stream"]')) input.addEventListener("change", () => renderLog(true));
for (const th of document.querySelectorAll("#trial-table th[data-sort]")) {
  th.addEventListener("click", () => {
    state.desc = state.sort === th.dataset.sort ? !state.desc : th.dataset.sort !== "objective";
    state.sort = th.dataset.sort;
    state.offset = 0;
    refresh();
  });
}
window.addEventListener("hashchange", route);
route();
