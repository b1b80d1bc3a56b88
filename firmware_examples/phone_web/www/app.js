// The page: a drawing pad and test images in, the prediction and per-class bars out.
//
// Every input goes through `classifyRaw`, which calls Classifier.classify (classifier.js) on the
// run's int8 model, then on its float model (the same input, for comparison), and draws the
// int8 result; `window.edgeship.classify` is that same function, for the browser test.
import { Classifier, rasterizeDrawing } from "./classifier.js";

const LATENCY_WINDOW = 50;
const STROKE_FRACTION = 1 / 14;

const elements = Object.fromEntries(
  ["title", "status", "pad", "clear", "preview", "predicted", "confidence", "bars",
    "test-images", "test-source", "runtime", "model-file", "model-size", "latency",
    "preprocessing", "runtime-note", "reference-file", "reference-latency"].map((id) => [id, document.getElementById(id)]),
);
const latencies = [];
const referenceLatencies = [];
let classifiedCount = 0;
let classifier = null;
let reference = null;
let queue = Promise.resolve();

function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / (1024 * 1024)).toFixed(2)} MiB`;
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** Paint raw pixels (HWC, 0..raw_max) into a canvas of the model's input size. */
function paintRaw(canvas, raw, preprocessing) {
  const [height, width] = preprocessing.image_size;
  const channels = preprocessing.channels;
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  const image = context.createImageData(width, height);
  for (let pixel = 0; pixel < height * width; pixel += 1) {
    for (let rgb = 0; rgb < 3; rgb += 1) {
      const value = raw[pixel * channels + (channels === 3 ? rgb : 0)];
      image.data[pixel * 4 + rgb] = Math.round((value / preprocessing.raw_max) * 255);
    }
    image.data[pixel * 4 + 3] = 255;
  }
  context.putImageData(image, 0, 0);
}

function buildBars(classNames) {
  elements.bars.replaceChildren(...classNames.map((name) => {
    const item = document.createElement("li");
    item.innerHTML = '<span class="name"></span><span class="track"><span class="fill">' +
      '</span></span><span class="value">-</span>';
    item.querySelector(".name").textContent = name;
    return item;
  }));
}

function showResult(result, raw) {
  const { config } = classifier;
  paintRaw(elements.preview, raw, config.preprocessing);
  const total = result.scores.reduce((sum, value) => sum + Math.max(value, 0), 0) || 1;
  [...elements.bars.children].forEach((item, index) => {
    const share = Math.max(result.scores[index], 0) / total;
    item.classList.toggle("top", index === result.predicted);
    item.querySelector(".fill").style.width = `${(share * 100).toFixed(1)}%`;
    item.querySelector(".value").textContent = result.scores[index].toFixed(3);
  });
  elements.predicted.textContent = config.class_names[result.predicted];
  elements.confidence.textContent =
    `score ${result.scores[result.predicted].toFixed(3)} of ${config.class_names.length} classes`;
  elements.latency.textContent = describeLatency(latencies, result.latencyMs);
  if (result.reference) {
    elements["reference-latency"].textContent =
      describeLatency(referenceLatencies, result.reference.latencyMs) +
      `, top-1 ${config.class_names[result.reference.predicted]}`;
  }
}

function describeLatency(recent, latencyMs) {
  recent.push(latencyMs);
  if (recent.length > LATENCY_WINDOW) recent.shift();
  return `${latencyMs.toFixed(2)} ms this inference, median ` +
    `${median(recent).toFixed(2)} ms over the last ${recent.length}`;
}

/** The one path every input takes: classify raw pixels, then draw the result. */
function classifyRaw(raw) {
  const run = queue.then(async () => {
    const result = await classifier.classify(raw);
    if (reference) result.reference = await reference.classify(raw);
    showResult(result, raw);
    classifiedCount += 1;
    return result;
  });
  queue = run.catch(() => undefined);
  return run;
}

function setUpPad() {
  const pad = elements.pad;
  const context = pad.getContext("2d", { willReadFrequently: true });
  const clear = () => {
    context.fillStyle = "#000";
    context.fillRect(0, 0, pad.width, pad.height);
  };
  clear();
  context.strokeStyle = "#fff";
  context.lineWidth = pad.width * STROKE_FRACTION;
  context.lineCap = "round";
  context.lineJoin = "round";
  let drawing = false;
  const point = (event) => {
    const box = pad.getBoundingClientRect();
    return [((event.clientX - box.left) / box.width) * pad.width,
      ((event.clientY - box.top) / box.height) * pad.height];
  };
  pad.addEventListener("pointerdown", (event) => {
    drawing = true;
    pad.setPointerCapture(event.pointerId);
    const [x, y] = point(event);
    context.beginPath();
    context.moveTo(x, y);
    context.lineTo(x + 0.01, y);
    context.stroke();
  });
  pad.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    const [x, y] = point(event);
    context.lineTo(x, y);
    context.stroke();
  });
  const finish = () => {
    if (!drawing) return;
    drawing = false;
    classifyDrawing().catch(showError);
  };
  pad.addEventListener("pointerup", finish);
  pad.addEventListener("pointercancel", finish);
  elements.clear.addEventListener("click", clear);
}

function classifyDrawing() {
  const pad = elements.pad;
  const pixels = pad.getContext("2d").getImageData(0, 0, pad.width, pad.height).data;
  const raw = rasterizeDrawing(pixels, pad.width, pad.height, classifier.config.preprocessing);
  selectTestButton(-1);
  return classifyRaw(raw);
}

function selectTestButton(selected) {
  [...elements["test-images"].children].forEach((button, index) => {
    button.classList.toggle("selected", index === selected);
  });
}

function setUpTestImages(testImages) {
  const { config } = classifier;
  elements["test-source"].textContent =
    `(${testImages.images.length} from the ${testImages.dataset} test split)`;
  elements["test-images"].replaceChildren(...testImages.images.map((image, index) => {
    const button = document.createElement("button");
    button.type = "button";
    button.title = `test image ${image.index}, label ${config.class_names[image.label]}`;
    const canvas = document.createElement("canvas");
    paintRaw(canvas, image.raw, config.preprocessing);
    button.append(canvas);
    button.addEventListener("click", () => pickTestImage(index).catch(showError));
    return button;
  }));
}

let testImageSet = { images: [] };

function pickTestImage(index) {
  selectTestButton(index);
  return classifyRaw(Float32Array.from(testImageSet.images[index].raw));
}

function showFacts(config) {
  const { model, runtime, preprocessing } = config;
  elements.title.textContent = config.title;
  elements.runtime.textContent = `${runtime.name} ${runtime.version}, ${runtime.backend}`;
  elements["model-file"].textContent = `${model.name} (${model.kind}` +
    `${model.site_change ? `; ${model.site_change}` : ""})`;
  elements["model-size"].textContent = `${formatBytes(model.bytes)} (${model.bytes} bytes)`;
  const referenceModel = config.reference_model;
  elements["reference-file"].textContent = referenceModel
    ? `${referenceModel.name} (${formatBytes(referenceModel.bytes)}), same runtime and input`
    : "none in this run";
  elements.preprocessing.textContent = `x = raw * ${preprocessing.scale.toPrecision(6)} + ` +
    `${preprocessing.offset}, ${preprocessing.image_size.join("x")}x${preprocessing.channels} ` +
    `${preprocessing.layout}, raw 0..${preprocessing.raw_max}`;
  elements["runtime-note"].textContent = runtime.note;
}

function showError(error) {
  elements.status.textContent = `error: ${error.message || error}`;
  elements.status.classList.add("error");
  throw error;
}

async function fetchJson(name) {
  const response = await fetch(name);
  if (!response.ok) throw new Error(`cannot load ${name}: HTTP ${response.status}`);
  return response.json();
}

async function start() {
  const config = await fetchJson("config.json");
  showFacts(config);
  buildBars(config.class_names);
  classifier = await Classifier.load(config, document.baseURI);
  if (config.reference_model) {
    reference = await Classifier.load(config, document.baseURI, "reference_model");
  }
  setUpPad();
  testImageSet = await fetchJson(config.test_images);
  setUpTestImages(testImageSet);
  elements.status.textContent = "ready: draw a digit or tap a test image";
  if ("serviceWorker" in navigator && window.isSecureContext) {
    navigator.serviceWorker.register("service-worker.js").catch(() => undefined);
  }
  return config;
}

window.edgeship = {
  ready: start().catch(showError),
  classify: (raw) => classifyRaw(Float32Array.from(raw)),
  pickTestImage,
  classifyDrawing,
  get testImages() { return testImageSet.images; },
  get classifiedCount() { return classifiedCount; },
};
