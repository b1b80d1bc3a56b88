// The page's inference path: raw pixels -> the manifest's preprocessing -> the model -> scores.
//
// The drawing UI, the test-image picker and the browser test all call `Classifier.classify`,
// so the test checks the exact code a person's taps run. firmware_examples/android mirrors
// these steps one for one (MainActivity.kt).

/** Float32 rounding, so JS arithmetic matches numpy's float32 preprocessing bit for bit. */
const f32 = Math.fround;

/**
 * Raw pixels (HWC order, 0..raw_max) -> model input, exactly as Python's load_dataset:
 * x = raw * scale + offset, computed in float32.
 */
export function preprocess(raw, preprocessing) {
  const scale = f32(preprocessing.scale);
  const offset = f32(preprocessing.offset);
  const input = new Float32Array(raw.length);
  for (let index = 0; index < raw.length; index += 1) {
    input[index] = f32(f32(f32(raw[index]) * scale) + offset);
  }
  return input;
}

/** Index of the largest score (the first one on ties, as numpy.argmax). */
export function argmax(scores) {
  let best = 0;
  for (let index = 1; index < scores.length; index += 1) {
    if (scores[index] > scores[best]) best = index;
  }
  return best;
}

/**
 * A drawing (RGBA pixels, white strokes on black) -> raw pixels of the model's input size.
 *
 * Crops the strokes' bounding box to a centred square, area-averages it into the central
 * 20/28 of the frame (how MNIST digits are framed) and maps 0..255 to 0..raw_max, one value
 * per channel. Only the drawing goes through this; test images are already raw pixels.
 */
export function rasterizeDrawing(rgba, sourceWidth, sourceHeight, preprocessing) {
  const [height, width] = preprocessing.image_size;
  const channels = preprocessing.channels;
  const rawMax = preprocessing.raw_max;
  const raw = new Float32Array(height * width * channels);
  let top = sourceHeight;
  let bottom = -1;
  let left = sourceWidth;
  let right = -1;
  for (let y = 0; y < sourceHeight; y += 1) {
    for (let x = 0; x < sourceWidth; x += 1) {
      if (rgba[(y * sourceWidth + x) * 4] > 0) {
        top = Math.min(top, y);
        bottom = Math.max(bottom, y);
        left = Math.min(left, x);
        right = Math.max(right, x);
      }
    }
  }
  if (bottom < 0) return raw;
  const side = Math.max(bottom - top + 1, right - left + 1);
  const cropTop = Math.floor((top + bottom + 1 - side) / 2);
  const cropLeft = Math.floor((left + right + 1 - side) / 2);
  const inner = Math.max(1, Math.round((Math.min(height, width) * 20) / 28));
  const innerTop = Math.floor((height - inner) / 2);
  const innerLeft = Math.floor((width - inner) / 2);
  const step = side / inner;
  for (let row = 0; row < inner; row += 1) {
    const y0 = Math.floor(row * step);
    const y1 = Math.max(y0 + 1, Math.floor((row + 1) * step));
    for (let column = 0; column < inner; column += 1) {
      const x0 = Math.floor(column * step);
      const x1 = Math.max(x0 + 1, Math.floor((column + 1) * step));
      let sum = 0;
      for (let y = cropTop + y0; y < cropTop + y1; y += 1) {
        for (let x = cropLeft + x0; x < cropLeft + x1; x += 1) {
          if (y >= 0 && y < sourceHeight && x >= 0 && x < sourceWidth) {
            sum += rgba[(y * sourceWidth + x) * 4];
          }
        }
      }
      const value = (sum / ((y1 - y0) * (x1 - x0)) / 255) * rawMax;
      const base = ((innerTop + row) * width + innerLeft + column) * channels;
      for (let channel = 0; channel < channels; channel += 1) raw[base + channel] = value;
    }
  }
  return raw;
}

/**
 * Float32 values -> int8/uint8 as edgeship.quantization.quantize_values (and TFLite):
 * round(x / scale) + zero_point, halves away from zero, the division in float32, clipped.
 */
export function quantize(values, io) {
  const [low, high, ArrayType] = io.dtype === "uint8" ? [0, 255, Uint8Array] : [-128, 127, Int8Array];
  const scale = f32(io.scale);
  const out = new ArrayType(values.length);
  for (let index = 0; index < values.length; index += 1) {
    const scaled = f32(f32(values[index]) / scale);
    const rounded = Math.sign(scaled) * Math.floor(f32(Math.abs(scaled) + 0.5)) + io.zero_point;
    out[index] = Math.min(high, Math.max(low, rounded));
  }
  return out;
}

/** int8/uint8 values -> float32 scores: (q - zero_point) * scale, in float32. */
export function dequantize(values, io) {
  const scale = f32(io.scale);
  return Float32Array.from(values, (value) => f32((value - io.zero_point) * scale));
}

let liteRtPromise = null;

/** LiteRT.js, loaded once per page (its WebAssembly is a global of the module). */
function loadLiteRt(runtime, baseUrl) {
  if (!liteRtPromise) {
    liteRtPromise = (async () => {
      const litert = await import(new URL(runtime.module, baseUrl).href);
      await litert.loadLiteRt(new URL(runtime.wasm_dir, baseUrl).href);
      return litert;
    })();
  }
  return liteRtPromise;
}

/** A .tflite in LiteRT.js: XNNPACK's WebAssembly kernels on the CPU, one thread. */
class LiteRtModel {
  static async open(runtime, entry, baseUrl) {
    const litert = await loadLiteRt(runtime, baseUrl);
    const response = await fetch(new URL(entry.file, baseUrl));
    if (!response.ok) throw new Error(`cannot load ${entry.file}: HTTP ${response.status}`);
    const bytes = new Uint8Array(await response.arrayBuffer());
    const model = await litert.loadAndCompile(bytes, { accelerator: "wasm", cpuOptions: { numThreads: 1 } });
    return new LiteRtModel(litert, model, entry);
  }

  constructor(litert, model, entry) {
    this.litert = litert;
    this.model = model;
    this.io = entry.io;
    this.shape = Array.from(model.getInputDetails()[0].shape);
  }

  /** float32 model input -> {scores, rawOutput, latencyMs}; int8/uint8 I/O quantized here. */
  async run(input) {
    const quantized = this.io.input.dtype !== "float32";
    const tensor = new this.litert.Tensor(quantized ? quantize(input, this.io.input) : input, this.shape);
    let outputs = null;
    try {
      const start = performance.now();
      outputs = await this.model.run([tensor]);
      const latencyMs = performance.now() - start;
      const rawOutput = outputs[0].toTypedArray().slice();
      const scores = this.io.output.dtype === "float32" ? rawOutput : dequantize(rawOutput, this.io.output);
      return { scores, rawOutput, latencyMs };
    } finally {
      tensor.delete();
      for (const output of outputs || []) output.delete();
    }
  }
}

/** An ONNX file in onnxruntime-web (WASM, one thread: no cross-origin isolation needed). */
class OrtModel {
  static async open(runtime, entry, baseUrl) {
    const ort = await import(new URL(runtime.module, baseUrl).href);
    ort.env.wasm.wasmPaths = new URL(runtime.wasm_dir, baseUrl).href;
    ort.env.wasm.numThreads = 1;
    ort.env.wasm.proxy = false;
    const response = await fetch(new URL(entry.file, baseUrl));
    if (!response.ok) throw new Error(`cannot load ${entry.file}: HTTP ${response.status}`);
    const bytes = new Uint8Array(await response.arrayBuffer());
    const session = await ort.InferenceSession.create(bytes, {
      executionProviders: ["wasm"],
      graphOptimizationLevel: "all",
    });
    return new OrtModel(ort, session);
  }

  constructor(ort, session) {
    this.ort = ort;
    this.session = session;
    this.inputName = session.inputNames[0];
    this.outputName = session.outputNames[0];
  }

  async run(input, shape) {
    const tensor = new this.ort.Tensor("float32", input, shape);
    const start = performance.now();
    const outputs = await this.session.run({ [this.inputName]: tensor });
    const latencyMs = performance.now() - start;
    const scores = Float32Array.from(outputs[this.outputName].data);
    tensor.dispose();
    outputs[this.outputName].dispose();
    return { scores, rawOutput: scores, latencyMs };
  }
}

const MODEL_CLASSES = { litert: LiteRtModel, onnx: OrtModel };

/** One of the run's models in the site's runtime (config.runtime.kind). */
export class Classifier {
  constructor(model, config, entry) {
    this.model = model;
    this.config = config;
    this.entry = entry;
  }

  /** The model config[key] ("model" or "reference_model") names, in the site's runtime. */
  static async load(config, baseUrl, key = "model") {
    const entry = config[key];
    const modelClass = MODEL_CLASSES[config.runtime.kind];
    if (!modelClass) throw new Error(`unknown runtime ${config.runtime.kind}`);
    return new Classifier(await modelClass.open(config.runtime, entry, baseUrl), config, entry);
  }

  /** Raw pixels (HWC, 0..raw_max) -> {input, scores, rawOutput, predicted, latencyMs}. */
  async classify(raw) {
    const [height, width] = this.config.preprocessing.image_size;
    const channels = this.config.preprocessing.channels;
    if (raw.length !== height * width * channels) {
      throw new Error(`expected ${height * width * channels} pixels, got ${raw.length}`);
    }
    const input = preprocess(raw, this.config.preprocessing);
    const result = await this.model.run(input, [1, height, width, channels]);
    return { input, ...result, predicted: argmax(result.scores) };
  }
}
