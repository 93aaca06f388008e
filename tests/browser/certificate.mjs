// Signs in to Parapet's console with a client certificate (no form), and without one (the
// form); prints what it saw as one JSON line for orchestrator/tests/console.rs.
//
// usage: node certificate.mjs BASE_URL CERT_PEM KEY_PEM
import { chromium } from "playwright-core";

const [base, certPath, keyPath] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
const seen = {};
// the test's own CA signed the server's certificate; the browser is told not to mind
const withCert = await browser.newContext({
  ignoreHTTPSErrors: true,
  clientCertificates: [{ origin: base, certPath, keyPath }],
});
const page = await withCert.newPage();
await page.goto(`${base}/console/`);
seen.withCertUrl = new URL(page.url()).pathname;
seen.signedInAs = await page.locator("header span.muted").innerText();
const cookie = (await withCert.cookies()).find((c) => c.name === "parapet_session");
seen.cookie = cookie && { secure: cookie.secure, httpOnly: cookie.httpOnly, sameSite: cookie.sameSite };
const anonymous = await (await browser.newContext({ ignoreHTTPSErrors: true })).newPage();
await anonymous.goto(`${base}/console/`);
seen.withoutCertUrl = new URL(anonymous.url()).pathname;
await browser.close();
console.log(JSON.stringify(seen));
