// Time a site's float and int8 model through the phone demo's own classifier.js in headless
// Chromium, in the site's runtime (LiteRT.js or onnxruntime-web).
//
// usage: node bench_web_driver.mjs JOB.json  (prints one JSON result line on stdout)
// JOB: {phoneWebDir, chromium, url, models: {float: "reference_model", int8: "model"} (keys of
//      the site's config.json), images: [[raw...]...], warmup, rounds, perRound, block,
//      profileRuns, opModels: {float: [URL...], int8: [URL...]} (LiteRT.js only), opRuns}
// The page loads as a person opens it (its own models, window.edgeship.ready); then each
// file gets its own instance from `Classifier.load` (the page's settings: one thread, for
// LiteRT.js XNNPACK's WebAssembly kernels, for ORT-web its WASM backend with
// graphOptimizationLevel "all") and every image goes through `Classifier.classify`, the
// call the drawing pad and the test-image picker make. Rounds alternate which file goes first,
// so both see the same browser and machine load. A sample is a block of `block` images: the
// mean of the page's own latencyMs (session.run only) and the wall time of the whole
// classify() calls (preprocessing and tensors too), per image. Afterwards, for ORT-web, a
// profiled session per file (profileRuns images) lists the kernels it runs (ortLog); LiteRT.js
// has no profiler in its JavaScript API.
// Requests outside the page's origin are blocked and reported.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const job = JSON.parse(readFileSync(process.argv[2], "utf8"));
const require = createRequire(path.join(job.phoneWebDir, "package.json"));
const { chromium } = require("playwright-core");

const origin = new URL(job.url).origin;
const DESCRIBE_MARK = "edgeship-describe:";
const RUNTIME_LOG = /^(INFO|WARNING|VERBOSE): /;
const report = { external: [], consoleErrors: [], pageErrors: [], wasmFiles: [] };
const browser = await chromium.launch({
  executablePath: job.chromium,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run"],
});
const context = await browser.newContext({ serviceWorkers: "block" });
try {
  await context.route("**/*", (route) => {
    const url = route.request().url();
    if (!url.startsWith(origin + "/")) {
      report.external.push(url);
      return route.abort();
    }
    if (url.endsWith(".wasm")) report.wasmFiles.push(url.slice(origin.length));
    return route.continue();
  });
  const page = await context.newPage();
  let describing = null;  // the file whose profile events are being read, or null
  report.ortLog = {};
  page.on("console", (message) => {
    const text = message.text();
    if (text.startsWith(DESCRIBE_MARK)) {
      describing = text.slice(DESCRIBE_MARK.length) || null;
      if (describing) report.ortLog[describing] = [];
    } else if (describing) {
      report.ortLog[describing].push(text);
    } else if (message.type() === "error" && !RUNTIME_LOG.test(text)) {
      // LiteRT.js's WebAssembly writes its native INFO/WARNING log to console.error
      report.consoleErrors.push(text);
    }
  });
  page.on("pageerror", (error) => report.pageErrors.push(String(error)));
  report.browserVersion = browser.version();
  await page.goto(job.url, { waitUntil: "load" });
  await page.evaluate(async () => window.edgeship.ready);
  report.status = await page.textContent("#status");
  Object.assign(report, await page.evaluate(async (task) => {
    const { Classifier, preprocess } = await import("./classifier.js");
    const config = await (await fetch("config.json")).json();
    const kinds = Object.keys(task.models);
    const classifiers = {};
    for (const kind of kinds) {
      classifiers[kind] = await Classifier.load(config, document.baseURI, task.models[kind]);
    }
    const images = task.images.map((raw) => Float32Array.from(raw));
    const predictions = {};
    for (const kind of kinds) {
      predictions[kind] = [];
      for (const raw of images) predictions[kind].push((await classifiers[kind].classify(raw)).predicted);
    }
    const runImages = async (kind, count, offset) => {
      let runMs = 0;
      const start = performance.now();
      for (let index = 0; index < count; index += 1) {
        runMs += (await classifiers[kind].classify(images[(offset + index) % images.length])).latencyMs;
      }
      return { runMs: runMs / count, wallMs: (performance.now() - start) / count };
    };
    for (const kind of kinds) await runImages(kind, task.warmup, 0);
    const samples = Object.fromEntries(kinds.map((kind) => [kind, { runMs: [], wallMs: [] }]));
    for (let round = 0; round < task.rounds; round += 1) {
      const order = round % 2 === 0 ? kinds : [...kinds].reverse();
      for (const kind of order) {
        for (let done = 0; done < task.perRound; done += task.block) {
          const sample = await runImages(kind, Math.min(task.block, task.perRound - done), done);
          samples[kind].runMs.push(sample.runMs);
          samples[kind].wallMs.push(sample.wallMs);
        }
      }
    }
    // LiteRT.js has no profiler in its JavaScript API: each op of each file, cut into a model
    // of its own (bench_web.py), runs here on zero inputs, timed over task.opRuns runs in one
    // clock span (one run's latencyMs is too coarse), float and int8 alternating per op.
    const opMicros = {};
    if (task.opModels) {
      const litert = await import(new URL(config.runtime.module, document.baseURI).href);
      const timeOp = async (file) => {
        const model = await litert.loadAndCompile(new URL(file, document.baseURI).href,
          { accelerator: "wasm", cpuOptions: { numThreads: 1 } });
        const arrays = { float32: Float32Array, int32: Int32Array, uint8: Uint8Array, int8: Int8Array };
        const inputs = model.getInputDetails().map((detail) => new litert.Tensor(
          new arrays[detail.dtype](detail.shape.reduce((a, b) => a * b, 1)), Array.from(detail.shape)));
        const runOnce = async () => { for (const output of await model.run(inputs)) output.delete(); };
        for (let index = 0; index < 20; index += 1) await runOnce();
        const start = performance.now();
        for (let index = 0; index < task.opRuns; index += 1) await runOnce();
        const micros = ((performance.now() - start) * 1000) / task.opRuns;
        for (const input of inputs) input.delete();
        model.delete();
        return micros;
      };
      for (const kind of kinds) opMicros[kind] = new Array(task.opModels[kind].length).fill(0);
      const longest = Math.max(...kinds.map((kind) => task.opModels[kind].length));
      for (let op = 0; op < longest; op += 1) {
        for (const kind of op % 2 === 0 ? kinds : [...kinds].reverse()) {
          if (op < task.opModels[kind].length) opMicros[kind][op] = await timeOp(task.opModels[kind][op]);
        }
      }
    }
    const facts = { runtime: config.runtime.kind, opMicros, runtimeVersion: config.runtime.version,
      files: Object.fromEntries(kinds.map((kind) => [kind, config[task.models[kind]].name])),
      userAgent: navigator.userAgent, crossOriginIsolated: globalThis.crossOriginIsolated,
      sharedArrayBuffer: typeof SharedArrayBuffer !== "undefined" };
    if (config.runtime.kind !== "onnx") return { samples, predictions, ...facts };
    const ort = classifiers[kinds[0]].model.ort;
    // ORT-web's profiler prints one JSON event per node run on the console when a session
    // ends profiling: a profiled session per file, both run on the same images, one file then
    // the other, the order alternating like the rounds, says which kernels each file runs and
    // where its time goes.
    const profiled = {};
    for (const kind of kinds) {
      const file = config[task.models[kind]].file;
      profiled[kind] = await ort.InferenceSession.create(new URL(file, document.baseURI).href, {
        executionProviders: ["wasm"], graphOptimizationLevel: "all", enableProfiling: true });
    }
    const shape = [1, ...config.input_shape];
    for (let index = 0; index < task.profileRuns; index += 1) {
      const input = preprocess(images[index % images.length], config.preprocessing);
      for (const kind of index % 2 === 0 ? kinds : [...kinds].reverse()) {
        const session = profiled[kind];
        await session.run({ [session.inputNames[0]]: new ort.Tensor("float32", input, shape) });
      }
    }
    for (const kind of kinds) {
      console.log(task.describeMark + "profile-" + kind);
      profiled[kind].endProfiling();
      await profiled[kind].release();
    }
    console.log(task.describeMark);
    return {
      samples, predictions, ...facts,
      ortVersion: ort.env.versions?.web ?? config.runtime.version,
      wasm: { numThreads: ort.env.wasm.numThreads, simd: ort.env.wasm.simd ?? null,
        proxy: ort.env.wasm.proxy, crossOriginIsolated: globalThis.crossOriginIsolated,
        sharedArrayBuffer: typeof SharedArrayBuffer !== "undefined" },
      userAgent: navigator.userAgent,
    };
  }, { models: job.models, images: job.images, warmup: job.warmup, rounds: job.rounds,
    perRound: job.perRound, block: job.block, describeMark: DESCRIBE_MARK,
    profileRuns: job.profileRuns, opModels: job.opModels, opRuns: job.opRuns }));
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(report) + "\n");
