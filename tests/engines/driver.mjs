// Drives Debian's firefox-esr over WebDriver BiDi for the Python tests (tests/support/engines.py).
// One JSON command per stdin line, one JSON answer per stdout line: the test keeps the journey
// and its assertions; this only forwards what a user does and what the page says.
import { createInterface } from "node:readline";
import puppeteer from "puppeteer-core";

const browser = await puppeteer.launch({
  browser: "firefox",
  executablePath: process.env.FIREFOX || "/usr/bin/firefox-esr",
  headless: true,
  extraPrefsFirefox: {
    // A fake camera and microphone, granted without a prompt.
    "media.navigator.streams.fake": true,
    "media.navigator.permission.disabled": true,
    // WebRTC between a page and a test peer on the loopback (127.0.0.2 in the call tests'
    // namespace), with plain host candidates, and call audio that plays without a gesture.
    "media.peerconnection.ice.loopback": true,
    "media.peerconnection.ice.obfuscate_host_addresses": false,
    "media.autoplay.default": 0,
    // A Turkish visitor, as in the Chromium tests.
    "intl.accept_languages": "tr-TR, tr",
    // No updates, telemetry or remote settings on a closed network.
    "app.update.enabled": false,
    "toolkit.telemetry.enabled": false,
    // What a test adds (tests/support/engines.py `firefox(prefs=...)`), e.g. strict tracking
    // protection for the widget.
    ...JSON.parse(process.env.SOHBET_FIREFOX_PREFS || "{}"),
  },
});

const pages = new Map();
const consoles = new Map();
let nextId = 1;

async function open({ width, height }) {
  // Each page gets its own browser context: its own cookies and storage, like a new visitor.
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  await page.setViewport({ width, height });
  const id = nextId++;
  const errors = [];
  page.on("console", (msg) => {
    if (msg.type() === "error") errors.push(`${msg.text()} at ${msg.location()?.url ?? ""}`);
  });
  page.on("pageerror", (err) => errors.push(`uncaught: ${err.message ?? err}`));
  pages.set(id, page);
  consoles.set(id, errors);
  return id;
}

// A command runs in the page, or in its frame whose URL contains `frame` (the widget's
// cross-site iframe), waiting for that frame to be there.
async function target(page, frame) {
  const p = pages.get(page);
  if (!frame) return p;
  const deadline = Date.now() + 15000;
  for (;;) {
    const found = p.frames().find((f) => f.url().includes(frame));
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no frame with ${frame} in its URL`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const commands = {
  open,
  async goto({ page, url }) {
    await pages.get(page).goto(url, { waitUntil: "load" });
  },
  async reload({ page }) {
    await pages.get(page).reload({ waitUntil: "load" });
  },
  async resize({ page, width, height }) {
    await pages.get(page).setViewport({ width, height });
  },
  async js({ page, body, args, frame }) {
    const source = `(async function () { ${body} }).apply(null, ${JSON.stringify(args)})`;
    return await (await target(page, frame)).evaluate(source);
  },
  async click({ page, selector, frame }) {
    await (await target(page, frame)).click(selector);
  },
  async type({ page, selector, text, frame }) {
    await (await target(page, frame)).type(selector, text);
  },
  async upload({ page, selector, path }) {
    const input = await pages.get(page).$(selector);
    await input.uploadFile(path);
  },
  async screenshot({ page, path }) {
    await pages.get(page).screenshot({ path });
  },
  async errors({ page }) {
    return consoles.get(page).splice(0);
  },
  async close({ page }) {
    const p = pages.get(page);
    pages.delete(page);
    await p.browserContext().close();
  },
  async version() {
    return await browser.version();
  },
  // Puppeteer starts Firefox in a process group of its own: the test kills it by this id if
  // this script cannot close it.
  async pid() {
    return browser.process()?.pid ?? null;
  },
};

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  const { id, cmd, ...params } = JSON.parse(line);
  let answer;
  try {
    answer = { id, ok: true, value: (await commands[cmd](params)) ?? null };
  } catch (err) {
    answer = { id, ok: false, error: String(err?.stack ?? err) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
}
await browser.close();
