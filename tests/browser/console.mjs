// Drives Debian's Chromium through Parapet's console as people use it, and prints one JSON
// line of what it saw; orchestrator/tests/console.rs starts the server and judges.
//
// usage: node console.mjs BASE_URL APPROVER_TOKEN AUDITOR_TOKEN DETECTOR_TOKEN TO_APPROVE TO_REJECT
import { chromium } from "playwright-core";

const [base, approver, auditor, detector, toApprove, toReject] = process.argv.slice(2);
const seen = { consoleErrors: [], dialogs: 0 };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});

async function signIn(token) {
  const context = await browser.newContext();
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
await a.locator(`#approve-${toApprove}`).fill("seen the beacon");
await a.locator(`form[action$="${toApprove}/approve"] button`).click();
await a.waitForLoadState("load");
seen.afterApprove = await a.locator("p.notice").innerText();
await a.locator(`#reject-${toReject}`).fill("a test box");
await a.locator(`form[action$="${toReject}/reject"] button`).click();
await a.waitForLoadState("load");
seen.afterReject = await a.locator("p.notice").innerText();
seen.approverHeaders = (await a.request.get(`${base}/console/pending`)).headers();

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

// signing out ends the session
await a.getByRole("button", { name: "Sign out" }).click();
await a.waitForLoadState("load");
await a.goto(`${base}/console/pending`);
seen.afterSignOut = new URL(a.url()).pathname;

await browser.close();
console.log(JSON.stringify(seen));
