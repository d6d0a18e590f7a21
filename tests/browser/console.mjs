// The console in a real browser: Debian's headless chromium, driven by playwright-core, against a
// running platform (the e2e suite's sandbox). Every page loads without a console error, the numbers
// a page shows are the API's own (its JSON, fetched in the same page with the same window), a
// filter changes what is shown, and a screenshot of each page is kept.
//
//   CONSOLE_URL   https://<app host>/console/
//   APM_TOKEN     a token with the read scope
//   SERVER_CERT   the proxy's certificate (PEM): the browser trusts that key alone
//   SCREENSHOTS   where the screenshots go
//   CHROMIUM      the browser (default /usr/bin/chromium)
//
// Prints what it checked as one JSON line on stdout; exits 1 naming the first check that failed.

import { createHash, X509Certificate } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) throw new Error(`${name} is not set`);
  return v;
};
const consoleUrl = env("CONSOLE_URL");
const token = env("APM_TOKEN");
const shots = env("SCREENSHOTS");
mkdirSync(shots, { recursive: true });

// The certificate's public key, pinned: any other certificate fails as it would for a user.
const cert = new X509Certificate(readFileSync(env("SERVER_CERT")));
const spki = createHash("sha256")
  .update(cert.publicKey.export({ type: "spki", format: "der" }))
  .digest("base64");

const problems = [];
const checked = [];
function check(ok, what, detail = "") {
  if (!ok) throw new Error(`${what}${detail ? `: ${detail}` : ""}`);
  checked.push(what);
}

const browser = await chromium.launch({
  executablePath: env("CHROMIUM", "/usr/bin/chromium"),
  headless: true,
  args: [`--ignore-certificate-errors-spki-list=${spki}`, "--no-sandbox"],
});
let exitCode = 0;
try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1100 } });
  const page = await context.newPage();
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on("response", (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`);
  });

  // The API's JSON, from inside the page (same origin, same TLS, the same token).
  const api = (path, params) =>
    page.evaluate(
      async ([path, params, token]) => {
        const url = new URL(path, location.origin);
        for (const [k, v] of Object.entries(params)) if (v !== "") url.searchParams.set(k, v);
        const r = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
        if (!r.ok) throw new Error(`${url}: ${r.status}`);
        return r.json();
      },
      [path, params, token],
    );
  const loaded = (which, extra = "") =>
    page.waitForSelector(`main[data-loaded="${which}"]${extra}`, { timeout: 30000 });
  const text = (sel) => page.locator(sel).innerText();
  const data = (sel, key) => page.locator(sel).getAttribute(`data-${key}`);

  // Sign in.
  await page.goto(consoleUrl);
  await page.waitForSelector("#login:not([hidden])");
  await page.screenshot({ path: join(shots, "login.png"), fullPage: true });
  await page.fill("#token", token);
  await page.click("#login-form button[type=submit]");
  await loaded("apm");
  await page.waitForTimeout(300);
  await page.screenshot({ path: join(shots, "apm.png"), fullPage: true });

  // The KPIs are the API's for the window the page shows.
  const start = await data("main", "start");
  const end = await data("main", "end");
  const kpis = await api("/api/requests/kpis/", { start, end });
  check(kpis.hits > 0, "the seeded events are in the window", JSON.stringify(kpis));
  for (const key of ["hits", "errors", "error_rate", "avg_latency_ms", "p95_latency_ms", "max_latency_ms"]) {
    const shown = await data(`#kpi-${key}`, "value");
    const want = kpis[key] === null ? "" : String(kpis[key]);
    check(shown === want, `KPI ${key} is the API's`, `page ${shown}, API ${want}`);
  }
  const hitsText = await text("#kpi-hits");
  check(hitsText.replace(/,/g, "") === String(kpis.hits), "the KPI shown is the number", hitsText);

  // The hourly chart holds every request of the window, in a canvas drawn by uPlot.
  const hourly = await api("/api/requests/hourly/", { start, end, limit: "5000" });
  const hourlyHits = hourly.reduce((a, r) => a + r.hits, 0);
  check(
    (await data("#chart-hourly", "total-hits")) === String(hourlyHits),
    "the hourly chart holds the API's hours",
    `${await data("#chart-hourly", "total-hits")} vs ${hourlyHits}`,
  );
  check(hourlyHits > 0, "the hourly chart has data");
  check(await page.locator("#chart-hourly canvas").count() === 1, "the hourly chart is drawn");
  check(await page.locator("#chart-daily canvas").count() === 1, "the daily chart is drawn");
  check(Number(await data("#chart-daily", "points")) >= 7, "a point per day of the week");

  // Top endpoints: the API's ranking, row for row.
  const top = await api("/api/requests/top-endpoints/", {
    start, end, sort_by: "hits", with_p95: "true", limit: "10",
  });
  const rows = await page.locator("#top tbody tr").allInnerTexts();
  check(rows.length === top.results.length, "a row per top endpoint", `${rows.length} vs ${top.results.length}`);
  const first = top.results[0];
  check(
    rows[0].includes(first.endpoint) && rows[0].replace(/,/g, "").includes(String(first.hits)),
    "the first endpoint and its hits",
    `${rows[0]} vs ${JSON.stringify(first)}`,
  );

  // Recent errors: the API's count for the window and status class.
  const fiveXX = await api("/api/requests/", {
    time_after: start, time_before: end, status_code__in: "500,501,502,503,504", ordering: "-time",
  });
  check((await data("#errors", "count")) === String(fiveXX.count), "the 5xx errors are the API's");
  check(fiveXX.count > 0, "there are 5xx errors to show");

  // A filter: one service. The KPIs become that service's, fewer than all.
  const services = await page.locator("#service option").allTextContents();
  check(services.includes("api"), "the service picker lists the seeded services", services.join(","));
  await page.selectOption("#service", "api");
  await loaded("apm", '[data-service="api"]');
  const apiKpis = await api("/api/requests/kpis/", {
    start: await data("main", "start"), end: await data("main", "end"), service: "api",
  });
  check(
    (await data("#kpi-hits", "value")) === String(apiKpis.hits),
    "the service filter shows that service's requests",
    `${await data("#kpi-hits", "value")} vs ${apiKpis.hits}`,
  );
  check(apiKpis.hits < kpis.hits, "one service has fewer requests than all");
  const topServices = (await page.locator("#top tbody tr td:first-child").allInnerTexts());
  check(topServices.every((s) => s === "api"), "top endpoints of that service only", topServices.join(","));
  // And the error class: 4xx instead of 5xx.
  await page.selectOption("#errors-class", "400,401,403,404,409,422,429");
  const fourXX = await api("/api/requests/", {
    time_after: await data("main", "start"), time_before: await data("main", "end"),
    service: "api", status_code__in: "400,401,403,404,409,422,429", ordering: "-time",
  });
  await page.waitForSelector(`#errors[data-count="${fourXX.count}"]`, { timeout: 15000 });
  const codes = await page.locator("#errors tbody tr td:nth-child(5)").allInnerTexts();
  check(codes.length > 0 && codes.every((c) => c.startsWith("4")), "the error filter shows 4xx only", codes.join(","));
  await page.screenshot({ path: join(shots, "apm-filtered.png"), fullPage: true });

  // The platform page: every target, as Prometheus has them, all up.
  await page.click("#nav-platform");
  await loaded("platform");
  await page.waitForTimeout(300);
  await page.screenshot({ path: join(shots, "platform.png"), fullPage: true });
  const platform = await api("/api/platform/", { window: await page.locator("#window").inputValue() });
  check(platform.errors.length === 0, "every Prometheus query answered", JSON.stringify(platform.errors));
  const targetRows = await page.locator("#targets tbody tr").count();
  check(targetRows === platform.targets.length && targetRows > 0, "a row per scrape target", `${targetRows}`);
  const up = platform.targets.filter((t) => t.health === "up").length;
  check((await data("#page-platform", "targets-up")) === String(up), "the targets up are Prometheus'");
  check(up === platform.targets.length, "every target up", JSON.stringify(platform.targets.filter((t) => t.health !== "up")));
  const hosts = await page.locator("#hosts tbody tr td:first-child").allInnerTexts();
  check(hosts.length >= 1 && hosts.length === platform.memory.length, "memory per host", hosts.join(","));
  check(await page.locator("#chart-memory canvas").count() === 1, "the memory chart is drawn");
  const drawn = platform.memory_series.series.filter((s) => s.values.some((v) => v !== null));
  check(
    drawn.length === platform.memory.length,
    "the memory chart has a line per host, with data",
    JSON.stringify(platform.memory_series.series.map((s) => [s.host, s.values.filter((v) => v !== null).length])),
  );
  check(await page.locator("#alerts tbody tr").count() === platform.alerts.length, "a row per alert rule");
  check(await page.locator("#replication tbody tr").count() === platform.replication.length, "a row per standby");

  check(problems.length === 0, "no console error, failed request or error status", problems.join("; "));
  console.log(JSON.stringify({ ok: true, checked, kpis, service_api_hits: apiKpis.hits, targets: platform.targets.length, up, screenshots: shots }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, failed: e.message, checked, problems, screenshots: shots }));
  exitCode = 1;
} finally {
  await browser.close();
}
process.exit(exitCode);
