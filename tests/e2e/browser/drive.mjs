// Drive one page in headless Debian Chromium (playwright-core) until the RudderStack JS SDK has
// delivered the expected calls to the collector, then take a screenshot.
//
//   node drive.mjs <page-url> <collector-url> <screenshot.png> <type>[,<type>...]|-
//
// With "-" no event is expected: the script waits for the /sourceConfig answer and then
// E2E_QUIET_MS (3 s) more, recording whatever the page still sends.
//
// Prints one JSON object on stdout: the requests the page made to the collector (method, path,
// status, request body), console messages, page errors and failed requests. Exit 0 when every
// expected event type got a 200 from the collector, 1 otherwise (the JSON says what happened).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [pageUrl, collectorUrl, screenshot, typesArg] = process.argv.slice(2);
if (!pageUrl || !collectorUrl || !screenshot || !typesArg) {
  console.error('usage: node drive.mjs <page-url> <collector-url> <screenshot.png> <type>[,<type>...]|-');
  process.exit(2);
}
const expected = new Set(typesArg === '-' ? [] : typesArg.split(','));
const quietMs = Number(process.env.E2E_QUIET_MS || 3000);
const timeoutMs = Number(process.env.E2E_BROWSER_TIMEOUT_MS || 30000);
const collectorOrigin = new URL(collectorUrl).origin;

const report = { requests: [], console: [], pageErrors: [], failed: [], delivered: [] };
const profile = mkdtempSync(join(tmpdir(), 'tidegate-e2e-chromium-'));
let context;
let exitCode = 1;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    // Without the background-networking flags Chromium keeps calling Google services.
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1000, height: 640 },
    timeout: 60000,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  let done;
  const allDelivered = new Promise((resolve) => { done = resolve; });
  page.on('console', (m) => report.console.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => report.pageErrors.push(String(e)));
  page.on('requestfailed', (r) => report.failed.push(`${r.method()} ${r.url()}: ${r.failure()?.errorText}`));
  page.on('response', async (response) => {
    const request = response.request();
    const url = new URL(request.url());
    if (url.origin !== collectorOrigin) return;
    const entry = { method: request.method(), path: url.pathname, query: url.search, status: response.status(),
      requestHeaders: await request.allHeaders(), body: null, response: null };
    try { entry.body = request.postDataJSON(); } catch { entry.body = request.postData(); }
    try { entry.response = await response.text(); } catch { /* preflight / no body */ }
    report.requests.push(entry);
    const type = url.pathname.split('/').pop();
    if (expected.size === 0 && url.pathname.startsWith('/sourceConfig')) setTimeout(done, quietMs);
    if (request.method() === 'POST' && response.status() === 200 && expected.has(type)) {
      report.delivered.push(type);
      if ([...expected].every((t) => report.delivered.includes(t))) done();
    }
  });
  await page.goto(pageUrl, { waitUntil: 'load' });
  const timer = new Promise((resolve) => setTimeout(resolve, timeoutMs, 'timeout'));
  const outcome = await Promise.race([allDelivered, timer]);
  report.outcome = outcome === 'timeout' ? `timed out after ${timeoutMs} ms` : 'delivered';
  // Let the page render what it learned, then keep a picture of it.
  await page.evaluate((delivered) => {
    if (window.tidegate) window.tidegate.acknowledgedByCollector = delivered;
    if (window.tidegateShowStatus) window.tidegateShowStatus();
  }, report.delivered).catch(() => {});
  report.pageState = await page.evaluate(() => window.tidegate ?? null).catch((e) => String(e));
  await page.screenshot({ path: screenshot, fullPage: true });
  exitCode = outcome === 'timeout' ? 1 : 0;
} catch (e) {
  report.error = String(e && e.stack ? e.stack : e);
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify(report) + '\n');
process.exit(exitCode);
