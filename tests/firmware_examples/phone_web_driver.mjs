// Drive the phone demo in headless Chromium for tests/firmware_examples/test_phone_web.py.
//
// usage: node phone_web_driver.mjs JOB.json  (prints one JSON result line on stdout)
// JOB: {phoneWebDir, chromium, url, userDataDir, screenshot (optional), images: [[raw...]...],
//      draw, tapTestImage (index of a test-image button to tap)}
// Every image goes through window.edgeship.classify, the function the page's own inputs
// call; `draw` strokes a vertical line on the pad with the mouse and classifies it the way
// lifting the finger does. Requests to anything but the page's origin are blocked and
// reported, so a CDN fetch fails the test.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const job = JSON.parse(readFileSync(process.argv[2], "utf8"));
const require = createRequire(path.join(job.phoneWebDir, "package.json"));
const { chromium } = require("playwright-core");

const origin = new URL(job.url).origin;
const RUNTIME_LOG = /^(INFO|WARNING|VERBOSE): /;
const report = { external: [], consoleErrors: [], pageErrors: [], runtimeLog: [], results: [] };
const context = await chromium.launchPersistentContext(job.userDataDir, {
  executablePath: job.chromium,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run"],
  viewport: { width: 412, height: 1100 },
  deviceScaleFactor: 1,
  serviceWorkers: "block",
});
try {
  await context.route("**/*", (route) => {
    const url = route.request().url();
    if (url.startsWith(origin + "/")) return route.continue();
    report.external.push(url);
    return route.abort();
  });
  const page = context.pages()[0] || await context.newPage();
  page.on("console", (message) => {
    if (message.type() !== "error") return;
    // LiteRT.js's WebAssembly writes its native log (INFO/WARNING lines) to stderr, which
    // Emscripten sends to console.error; only its ERROR lines and anything else are errors.
    const text = message.text();
    (RUNTIME_LOG.test(text) ? report.runtimeLog : report.consoleErrors).push(text);
  });
  page.on("pageerror", (error) => report.pageErrors.push(String(error)));
  await page.goto(job.url, { waitUntil: "load" });
  report.config = await page.evaluate(async () => window.edgeship.ready);
  report.status = await page.textContent("#status");
  for (const raw of job.images) {
    report.results.push(await page.evaluate(async (pixels) => {
      const result = await window.edgeship.classify(pixels);
      return { predicted: result.predicted, scores: Array.from(result.scores),
        rawOutput: Array.from(result.rawOutput), input: Array.from(result.input),
        latencyMs: result.latencyMs,
        reference: result.reference && { predicted: result.reference.predicted,
          latencyMs: result.reference.latencyMs } };
    }, raw));
  }
  report.shownAfterImages = await page.textContent("#predicted");
  if (job.tapTestImage !== undefined) {
    const before = await page.evaluate(() => window.edgeship.classifiedCount);
    await page.locator(".test-images button").nth(job.tapTestImage).click();
    await page.waitForFunction((count) => window.edgeship.classifiedCount > count, before,
      { timeout: 30000 });
    report.tapped = { shown: await page.textContent("#predicted"),
      selected: await page.locator(".test-images button.selected").count() };
  }
  if (job.draw) {
    const box = await page.locator("#pad").boundingBox();
    const x = box.x + box.width * 0.5;
    await page.mouse.move(x, box.y + box.height * 0.2);
    await page.mouse.down();
    for (let step = 1; step <= 12; step += 1) {
      await page.mouse.move(x, box.y + box.height * (0.2 + (0.6 * step) / 12));
    }
    await page.mouse.up();
    const drawn = await page.evaluate(async () => {
      const result = await window.edgeship.classifyDrawing();
      return { predicted: result.predicted, scores: Array.from(result.scores),
        input: Array.from(result.input) };
    });
    report.drawing = { ...drawn, shown: await page.textContent("#predicted") };
  }
  report.facts = await page.evaluate(() => Object.fromEntries(
    ["runtime", "model-file", "model-size", "latency", "preprocessing", "reference-file",
      "reference-latency"].map(
      (id) => [id, document.getElementById(id).textContent])));
  if (job.screenshot) await page.screenshot({ path: job.screenshot, fullPage: true });
} finally {
  await context.close();
}
process.stdout.write(JSON.stringify(report) + "\n");
