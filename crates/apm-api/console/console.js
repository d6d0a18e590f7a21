// The APM console: reads the API's own routes with the user's token and draws them (uPlot).
// Every value from the API reaches the page as text (textContent), never as markup.
"use strict";

const TOKEN_KEY = "apm-console-token";
const $ = (id) => document.getElementById(id);

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  charts: {},
  // Bumped by every load: an answer to an older one is dropped.
  generation: 0,
  // Aborts the requests of the load before (a slow 7-day answer must not land on a 1-hour page).
  inflight: new AbortController(),
};

class HttpError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

/// GET an API route as JSON with the token; a 401 signs the user out.
async function api(path, params = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params)) {
    if (v !== "" && v !== null && v !== undefined) url.searchParams.set(k, v);
  }
  const resp = await fetch(url, {
    headers: { Authorization: `Bearer ${state.token}`, Accept: "application/json" },
    cache: "no-store",
    signal: state.inflight.signal,
  });
  let body = null;
  try {
    body = await resp.json();
  } catch (e) {
    if (e.name === "AbortError") throw e;
    body = null;
  }
  if (!resp.ok) {
    const detail = body && typeof body.detail === "string" ? body.detail : JSON.stringify(body);
    throw new HttpError(resp.status, `${path}: ${resp.status} ${detail}`);
  }
  return body;
}

// ---- formatting

const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const decimal = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });

function fmtInt(v) {
  return v === null || v === undefined ? "–" : integer.format(v);
}
function fmtMs(v) {
  return v === null || v === undefined ? "–" : `${decimal.format(v)} ms`;
}
function fmtPct(v) {
  return v === null || v === undefined ? "–" : `${decimal.format(v * 100)} %`;
}
function fmtBytes(v) {
  if (v === null || v === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${decimal.format(v)} ${units[i]}`;
}
function fmtAge(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 120) return `${Math.round(seconds)} s ago`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 172800) return `${decimal.format(seconds / 3600)} h ago`;
  return `${decimal.format(seconds / 86400)} days ago`;
}
function fmtTime(iso) {
  return iso ? iso.replace("T", " ").replace(/\.\d+Z$|Z$/, "") : "–";
}
function isoSeconds(date) {
  return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

/// Fills a table's body: one row per item, one cell per column (a function of the item that
/// gives text, or [text, className]).
function fill(table, items, columns, empty) {
  const body = $(table).tBodies[0];
  body.replaceChildren();
  if (items.length === 0) {
    const tr = body.insertRow();
    const td = tr.insertCell();
    td.colSpan = columns.length;
    td.className = "empty";
    td.textContent = empty;
    return;
  }
  for (const item of items) {
    const tr = body.insertRow();
    for (const col of columns) {
      const td = tr.insertCell();
      const out = col(item);
      const [text, cls] = Array.isArray(out) ? out : [out, ""];
      td.textContent = text;
      if (cls) td.className = cls;
    }
  }
}

function status(text, kind = "") {
  const s = $("status");
  s.textContent = text;
  s.className = kind;
}

// ---- charts

const PALETTE = ["#2f6fdf", "#d9412b", "#2a9d5b", "#8e5bd6", "#c98a12", "#148f99", "#6b7280"];

/// Draws (or redraws) a uPlot chart in `id`: x in epoch seconds, one series per `series` entry.
function chart(id, x, series, opts = {}) {
  const el = $(id);
  if (state.charts[id]) {
    state.charts[id].destroy();
    delete state.charts[id];
  }
  el.replaceChildren();
  if (x.length === 0) {
    const p = document.createElement("p");
    p.className = "empty";
    p.textContent = "No data in this window.";
    el.append(p);
    return;
  }
  const width = Math.max(300, el.clientWidth || 600);
  const axes = [{}, { values: opts.yValues, size: 60 }];
  if (opts.right) {
    axes.push({ side: 1, scale: "right", grid: { show: false }, values: opts.right, size: 60 });
  }
  state.charts[id] = new uPlot(
    {
      width,
      height: 240,
      series: [
        {},
        ...series.map((s, i) => ({
          label: s.label,
          stroke: PALETTE[i % PALETTE.length],
          width: 2,
          scale: s.scale || "y",
          // Sparse series (a platform younger than its window): joined across gaps, each point shown.
          spanGaps: !!opts.sparse,
          ...(opts.sparse ? { points: { show: true, size: 4 } } : {}),
          value: (u, v) => (v === null ? "–" : s.format ? s.format(v) : fmtInt(v)),
        })),
      ],
      scales: { x: { time: true } },
      axes,
    },
    [x, ...series.map((s) => s.values)],
    el,
  );
}

// ---- the APM page

function apmWindow() {
  const seconds = Number($("window").value);
  // Whole minutes: the same window gives the same numbers on every reload within the minute.
  const end = new Date(Math.floor(Date.now() / 60000) * 60000);
  const start = new Date(end.getTime() - seconds * 1000);
  return { seconds, start: isoSeconds(start), end: isoSeconds(end), service: $("service").value };
}

/// Sums an aggregate's rows (one per bucket, service and endpoint) per bucket.
function perBucket(rows) {
  const buckets = new Map();
  for (const r of rows) {
    const t = Date.parse(r.bucket) / 1000;
    const b = buckets.get(t) || { hits: 0, errors: 0, latencySum: 0, latencyHits: 0 };
    b.hits += r.hits;
    b.errors += r.errors;
    if (r.avg_latency_ms !== null) {
      b.latencySum += r.avg_latency_ms * r.hits;
      b.latencyHits += r.hits;
    }
    buckets.set(t, b);
  }
  const x = [...buckets.keys()].sort((a, b) => a - b);
  return {
    x,
    hits: x.map((t) => buckets.get(t).hits),
    errors: x.map((t) => buckets.get(t).errors),
    latency: x.map((t) => {
      const b = buckets.get(t);
      return b.latencyHits ? b.latencySum / b.latencyHits : null;
    }),
  };
}

async function loadKpis(w) {
  const k = await api("/api/requests/kpis/", { start: w.start, end: w.end, service: w.service });
  const show = {
    hits: fmtInt,
    errors: fmtInt,
    error_rate: fmtPct,
    avg_latency_ms: fmtMs,
    p95_latency_ms: fmtMs,
    max_latency_ms: fmtMs,
  };
  for (const [key, f] of Object.entries(show)) {
    const el = $(`kpi-${key}`);
    el.textContent = f(k[key]);
    el.dataset.value = k[key] === null ? "" : String(k[key]);
  }
  $("kpi-hits").dataset.source = k.source;
}

/// Draws an aggregate's rows (hourly or daily) per bucket: requests, errors and average latency,
/// the chart's container carrying how many points and requests it holds.
function drawBuckets(id, rows) {
  const b = perBucket(rows);
  const el = $(id);
  el.dataset.points = String(b.x.length);
  el.dataset.totalHits = String(b.hits.reduce((a, v) => a + v, 0));
  chart(id, b.x, [
    { label: "requests", values: b.hits },
    { label: "errors (5xx)", values: b.errors },
    { label: "avg latency", values: b.latency, scale: "right", format: fmtMs },
  ], { right: (u, vals) => vals.map((v) => `${integer.format(v)} ms`) });
}

async function loadHourly(w) {
  const rows = await api("/api/requests/hourly/", {
    start: w.start,
    end: w.end,
    service: w.service,
    limit: 5000,
  });
  drawBuckets("chart-hourly", rows);
}

async function loadDaily(w) {
  // A day is the aggregate's unit: at least the last 7 days, whatever the window.
  const days = Math.max(7, Math.ceil(w.seconds / 86400));
  const end = new Date(w.end);
  const start = new Date(end.getTime() - days * 86400000);
  $("daily-title").textContent = `Requests per day (last ${days} days)`;
  const rows = await api("/api/requests/daily/", {
    start: isoSeconds(start),
    end: w.end,
    service: w.service,
    limit: 5000,
  });
  drawBuckets("chart-daily", rows);
}

async function loadTop(w) {
  const top = await api("/api/requests/top-endpoints/", {
    start: w.start,
    end: w.end,
    service: w.service,
    sort_by: $("top-sort").value,
    with_p95: "true",
    limit: 10,
  });
  $("top").dataset.source = top.source;
  fill("top", top.results, [
    (r) => r.service,
    (r) => r.endpoint,
    (r) => [fmtInt(r.hits), "num"],
    (r) => [fmtInt(r.errors), "num"],
    (r) => [fmtPct(r.error_rate), "num"],
    (r) => [r.avg_latency_ms === null ? "–" : decimal.format(r.avg_latency_ms), "num"],
    (r) => [r.p95_latency_ms === null ? "–" : decimal.format(r.p95_latency_ms), "num"],
    (r) => [fmtInt(r.max_latency_ms), "num"],
  ], "No requests in this window.");
}

async function loadErrors(w) {
  const page = await api("/api/requests/", {
    time_after: w.start,
    time_before: w.end,
    service: w.service,
    status_code__in: $("errors-class").value,
    search: $("errors-search").value.trim(),
    ordering: "-time",
  });
  const shown = page.results.length;
  $("errors-count").textContent =
    `${fmtInt(page.count)} matching request(s)` + (shown < page.count ? `, the latest ${shown} shown` : "");
  $("errors").dataset.count = String(page.count);
  fill("errors", page.results, [
    (r) => fmtTime(r.time),
    (r) => r.service,
    (r) => r.method,
    (r) => r.endpoint,
    (r) => [String(r.status_code), r.status_code >= 500 ? "num bad" : "num warn"],
    (r) => [fmtInt(r.latency_ms), "num"],
    (r) => r.trace_id || "–",
  ], "No such errors in this window.");
}

async function loadSearch() {
  const q = $("search-q").value.trim();
  if (!q) return;
  const found = await api("/api/requests/semantic-search/", {
    q,
    service: $("service").value,
    limit: 20,
  });
  $("search-count").textContent = `${fmtInt(found.count)} result(s) for “${found.query}”`;
  fill("search-results", found.results, [
    (r) => fmtTime(r.time),
    (r) => r.service,
    (r) => r.method,
    (r) => r.endpoint,
    (r) => [String(r.status_code), "num"],
    (r) => [fmtInt(r.latency_ms), "num"],
    (r) => [decimal.format(r.score * 100) + " %", "num"],
  ], "Nothing similar: events are searchable once their embeddings exist.");
}

/// The service picker: the services that have requests over the last 30 days.
async function loadServices() {
  const end = new Date();
  const start = new Date(end.getTime() - 30 * 86400000);
  const top = await api("/api/requests/top-endpoints/", {
    start: isoSeconds(start),
    end: isoSeconds(end),
    limit: 200,
  });
  const select = $("service");
  const chosen = select.value;
  const services = [...new Set(top.results.map((r) => r.service))].sort();
  select.replaceChildren(new Option("all", ""), ...services.map((s) => new Option(s, s)));
  select.value = services.includes(chosen) ? chosen : "";
}

async function loadApm() {
  const w = apmWindow();
  $("apm-window").textContent = `${fmtTime(w.start)} to ${fmtTime(w.end)} UTC` +
    (w.service ? `, service ${w.service}` : ", every service");
  const main = $("main");
  main.dataset.start = w.start;
  main.dataset.end = w.end;
  main.dataset.service = w.service;
  await Promise.all([loadKpis(w), loadHourly(w), loadDaily(w), loadTop(w), loadErrors(w)]);
}

// ---- the platform page

async function loadPlatform() {
  const seconds = Number($("window").value);
  const p = await api("/api/platform/", { window: seconds });
  const up = p.targets.filter((t) => t.health === "up").length;
  const firing = p.alerts.filter((a) => a.state === "firing");
  $("platform-summary").textContent =
    `${up} of ${p.targets.length} scrape targets up; ` +
    (firing.length ? `firing: ${firing.map((a) => a.name).join(", ")}` : "no alert firing") +
    ` (Prometheus at ${p.prometheus})`;
  $("page-platform").dataset.targetsUp = String(up);
  $("page-platform").dataset.targets = String(p.targets.length);
  const problems = $("platform-errors");
  problems.replaceChildren(...p.errors.map((e) => {
    const li = document.createElement("li");
    li.textContent = `${e.query}: ${e.error}`;
    return li;
  }));

  const hosts = new Map();
  // A series without a host label is still shown, as "?".
  const host = (r) => String(r.host ?? "?");
  for (const r of p.memory) hosts.set(host(r), { host: host(r), memory: r.value, disk: null });
  for (const r of p.disk) {
    const h = hosts.get(host(r)) || { host: host(r), memory: null, disk: null };
    h.disk = r.value;
    hosts.set(host(r), h);
  }
  fill("hosts", [...hosts.values()].sort((a, b) => a.host.localeCompare(b.host)), [
    (h) => h.host,
    (h) => [fmtPct(h.memory), "num"],
    (h) => [fmtPct(h.disk), "num"],
  ], "No node-exporter answers.");
  chart("chart-memory", p.memory_series.timestamps, p.memory_series.series.map((s) => ({
    label: s.host,
    values: s.values,
    format: fmtPct,
  })), { sparse: true, yValues: (u, vals) => vals.map((v) => `${decimal.format(v * 100)} %`) });

  fill("targets", p.targets, [
    (t) => t.job,
    (t) => t.host,
    (t) => t.instance,
    (t) => [t.health, t.health === "up" ? "good" : "bad"],
    (t) => t.last_error || "",
  ], "No targets.");
  fill("alerts", p.alerts, [
    (a) => a.name,
    (a) => a.severity || "",
    (a) => [a.state, a.state === "firing" ? "bad" : a.state === "pending" ? "warn" : "good"],
    (a) => [String(a.active), "num"],
    (a) => readable(a.summary),
  ], "No alert rules loaded.");
  fill("replication", p.replication, [
    (r) => r.host,
    (r) => r.application_name,
    (r) => [r.state, r.state === "streaming" ? "good" : "bad"],
    (r) => [fmtBytes(r.value), "num"],
  ], "No standby connected to the primary.");
  fill("backups", p.backups, [
    (b) => `repo${b.repo}`,
    (b) => [fmtAge(b.value), "num"],
  ], "No backup has completed yet.");
  fill("backup-jobs", p.backup_jobs, [
    (j) => j.task || "–",
    (j) => [j.value === null ? "–" : String(j.value), j.value ? "num bad" : "num good"],
  ], "No scheduled job has run yet.");
  const wal = new Map();
  for (const [key, rows] of [["archived", p.wal_archived], ["failed", p.wal_failed], ["age", p.wal_last_archive_age]]) {
    for (const r of rows) {
      const w = wal.get(host(r)) || { host: host(r) };
      w[key] = r.value;
      wal.set(host(r), w);
    }
  }
  fill("wal", [...wal.values()], [
    (w) => w.host,
    (w) => [fmtInt(w.archived), "num"],
    (w) => [fmtInt(w.failed), w.failed ? "num bad" : "num"],
    (w) => [fmtAge(w.age), "num"],
  ], "No WAL archiving metrics.");
}

/// An alert's summary as its rule writes it, its template fields shown by name: Prometheus fills
/// them in only for the alerts that fire.
function readable(summary) {
  return (summary || "")
    .replace(/\{\{\s*\$labels\.(\w+)\s*\}\}/g, "<$1>")
    .replace(/\{\{\s*\$value[^}]*\}\}/g, "<value>");
}

// ---- navigation

function page() {
  return location.hash === "#platform" ? "platform" : "apm";
}

function show(which) {
  for (const id of ["login", "page-apm", "page-platform"]) $(id).hidden = id !== which;
  $("controls").hidden = which === "login";
  $("service-picker").hidden = which !== "page-apm";
  for (const p of ["apm", "platform"]) {
    $(`nav-${p}`).classList.toggle("current", which === `page-${p}`);
  }
}

async function load() {
  if (!state.token) {
    show("login");
    return;
  }
  const generation = ++state.generation;
  state.inflight.abort();
  state.inflight = new AbortController();
  const which = page();
  show(`page-${which}`);
  const main = $("main");
  main.dataset.loaded = "";
  status("Loading…");
  try {
    if (which === "apm") {
      await loadServices();
      await loadApm();
    } else {
      await loadPlatform();
    }
    if (generation !== state.generation) return;
    status(`Updated ${new Date().toLocaleTimeString()}`);
    main.dataset.loaded = which;
  } catch (e) {
    if (generation !== state.generation) return;
    failed(e);
    main.dataset.loaded = "error";
  }
}

/// What a failed request says: signed out on a refused token, else the API's words.
function failed(e) {
  if (e.name === "AbortError") return;
  if (e instanceof HttpError && e.status === 401) {
    signOut("The API refused the token: sign in again.");
    return;
  }
  const why = e instanceof HttpError && e.status === 403
    ? "This token has no read scope: sign in with a read token."
    : e.message;
  status(why, "bad");
}

function signOut(message = "") {
  state.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  $("login-error").textContent = message;
  show("login");
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.token = $("token").value.trim();
    $("token").value = "";
    sessionStorage.setItem(TOKEN_KEY, state.token);
    $("login-error").textContent = "";
    load();
  });
  $("logout").addEventListener("click", () => signOut());
  $("refresh").addEventListener("click", load);
  $("window").addEventListener("change", load);
  $("service").addEventListener("change", load);
  $("top-sort").addEventListener("change", () => loadTop(apmWindow()).catch(failed));
  const errors = () => loadErrors(apmWindow()).catch(failed);
  $("errors-class").addEventListener("change", errors);
  $("errors-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    errors();
  });
  $("search-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    loadSearch().catch(failed);
  });
  window.addEventListener("hashchange", load);
  load();
});
