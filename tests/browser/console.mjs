// Drives Debian's Chromium through Parapet's console as people use it, and prints one JSON
// line of what it saw; orchestrator/tests/console.rs starts the server and judges.
//
// usage: node console.mjs BASE_URL APPROVER_TOKEN AUDITOR_TOKEN DETECTOR_TOKEN OPERATOR_TOKEN
//        TO_APPROVE TO_REJECT TO_ROLL_BACK SCREENSHOT_DIR
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

const [base, approver, auditor, detector, operator, toApprove, toReject, toRollBack, shots] =
  process.argv.slice(2);
const seen = { consoleErrors: [], dialogs: 0 };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});

async function signIn(token, options = {}) {
  const context = await browser.newContext(options);
  const page = await context.newPage();
  page.on("console", (m) => { if (m.type() === "error") seen.consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => seen.consoleErrors.push(String(e)));
  page.on("dialog", async (d) => { seen.dialogs += 1; await d.dismiss(); });
  page.on("response", (r) => { if (r.status() >= 400) seen.failed = [...(seen.failed || []), `${r.status()} ${r.url()}`]; });
  await page.goto(`${base}/console/login`);
  await page.getByLabel("Token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForLoadState("load");
  return page;
}

// an approver: the pending intents, one approved and one rejected, each with a reason
const a = await signIn(approver);
seen.approverUrl = new URL(a.url()).pathname;
seen.title = await a.locator("h1").innerText();
seen.shownTitles = await a.locator("td span.muted").allInnerTexts();
await a.screenshot({ path: `${shots}/pending.png`, fullPage: true });
// live: a detection platform submits while the page is open, and it appears without a reload
seen.rowsBefore = await a.locator("tbody tr").count();
const submitted = await fetch(`${base}/v1/intents`, {
  method: "POST",
  headers: { "content-type": "application/json", authorization: `Bearer ${detector}` },
  body: JSON.stringify({
    idempotencyKey: "live-1", source: "siem",
    detection: { ruleId: "edr.c2_beacon", severity: "SEVERITY_CRITICAL", confidence: 0.95, title: "live" },
    steps: [{ kind: "isolate_host", target: { kind: "host", id: "web-3", attributes: { ip: "192.0.2.203", site: "hq" } } }],
    ttl: "3600s", reason: "beacon",
  }),
});
seen.liveSubmit = submitted.status;
await a.locator("td", { hasText: "host:web-3" }).waitFor({ timeout: 10000 });
seen.rowsAfter = await a.locator("tbody tr").count();
await a.locator(`#approve-${toApprove}`).fill("seen the beacon");
await a.locator(`form[action$="${toApprove}/approve"] button`).click();
await a.waitForLoadState("load");
seen.afterApprove = await a.locator("p.notice").innerText();
await a.locator(`#reject-${toReject}`).fill("a test box");
await a.locator(`form[action$="${toReject}/reject"] button`).click();
await a.waitForLoadState("load");
seen.afterReject = await a.locator("p.notice").innerText();
seen.approverHeaders = (await a.request.get(`${base}/console/pending`)).headers();

// with JavaScript off every action still works: the live intent approved by a plain form
const noScript = await signIn(approver, { javaScriptEnabled: false });
const liveRow = noScript.locator("tr", { hasText: "host:web-3" });
await liveRow.locator('input[name="reason"]').first().fill("approved without script");
await liveRow.getByRole("button", { name: "Approve" }).click();
await noScript.waitForLoadState("load");
seen.noScriptApprove = await noScript.locator("p.notice").innerText();

// an auditor: no buttons; a forged POST with its own session and CSRF token is refused
const b = await signIn(auditor);
seen.auditorButtons = await b.getByRole("button", { name: /Approve|Reject/ }).count();
const csrf = await b.locator('form[action="/console/logout"] input[name="csrf"]').getAttribute("value");
const forged = await b.request.post(`${base}/console/intents/${toReject}/approve`, {
  form: { csrf, reason: "forged" },
  maxRedirects: 0,
});
seen.forgedStatus = forged.status();
// and the approver's form without its token
const noToken = await a.request.post(`${base}/console/intents/${toReject}/approve`, {
  form: { reason: "no token" },
  maxRedirects: 0,
});
seen.noCsrfStatus = noToken.status();

// a detector cannot sign in
const c = await signIn(detector);
seen.detectorUrl = new URL(c.url()).pathname;
seen.detectorError = await c.locator("p.error").innerText();

// an operator: one block rolled back, then every remaining block of a detection after the
// preview; the kill switch engaged and released
const o = await signIn(operator);
await o.goto(`${base}/console/active`);
seen.activeBefore = await o.locator("tbody tr").count();
await o.screenshot({ path: `${shots}/active.png`, fullPage: true });
await o.locator(`#rb-${toRollBack}`).fill("false positive");
await o.locator(`form[action="/console/rollback/${toRollBack}"] button`).click();
await o.waitForLoadState("load");
seen.afterRollback = await o.locator("p.notice").first().innerText();
await o.getByLabel("Detection").fill("edr.c2_beacon");
await o.getByRole("button", { name: "Select" }).click();
await o.waitForLoadState("load");
seen.preview = await o.locator("tbody tr").count();
seen.previewButton = await o.getByRole("button", { name: /Roll back these/ }).innerText();
await o.locator("#bulk-reason").fill("the rule was wrong");
await o.getByRole("button", { name: /Roll back these/ }).click();
await o.waitForLoadState("load");
seen.bulk = await o.locator("p.notice").innerText();
await o.goto(`${base}/console/active?detection=edr.c2_beacon`);
seen.activeAfter = await o.locator("tbody tr").count();
await o.goto(`${base}/console/status`);
await o.locator("#ks-reason").fill("drill");
await o.getByRole("button", { name: "Engage the kill switch" }).click();
await o.waitForLoadState("load");
seen.engaged = await o.locator("p.notice").innerText();
seen.engagedList = await o.locator("main ul").first().innerText();
await o.screenshot({ path: `${shots}/status.png`, fullPage: true });
await o.locator("#ks-reason").fill("drill over");
await o.getByRole("button", { name: "Release the kill switch" }).click();
await o.waitForLoadState("load");
seen.released = await o.locator("p.notice").innerText();
await o.goto(`${base}/console/detections`);
seen.volumes = await o.locator("table").first().locator("tbody tr").allInnerTexts();
await o.screenshot({ path: `${shots}/detections.png`, fullPage: true });

// the auditor: the journal searched and verified, an intent's story
await b.goto(`${base}/console/journal?detection=edr.c2_beacon`);
seen.journalRows = await b.locator("tbody tr").count();
await b.screenshot({ path: `${shots}/journal.png`, fullPage: true });
await b.getByRole("button", { name: "Verify the chain" }).click();
await b.waitForLoadState("load");
seen.verified = await b.locator("p.notice").innerText();
await b.goto(`${base}/console/intents/${toApprove}`);
seen.story = await b.locator("tbody td:nth-child(2)").allInnerTexts();
await b.screenshot({ path: `${shots}/intent.png`, fullPage: true });

// accessibility: axe-core on every page, as an operator sees them (its script is let in for
// this audit only)
seen.axe = {};
async function audit(token, paths) {
  const page = await signIn(token, { bypassCSP: true });
  for (const path of paths) {
    await page.goto(`${base}/console/${path}`);
    await page.addScriptTag({ content: axeSource });
    const result = await page.evaluate(() => window.axe.run());
    seen.axe[path] = result.violations
      .filter((v) => v.impact === "serious" || v.impact === "critical")
      .map((v) => `${v.id}: ${v.help}`);
  }
}
await audit(operator, ["pending", "active", "status", "detections", "login"]);
await audit(auditor, ["journal", `intents/${toApprove}`]);

// signing out ends the session
await a.getByRole("button", { name: "Sign out" }).click();
await a.waitForLoadState("load");
await a.goto(`${base}/console/pending`);
seen.afterSignOut = new URL(a.url()).pathname;

await browser.close();
console.log(JSON.stringify(seen));
