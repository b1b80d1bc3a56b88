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

/** The run's model in onnxruntime-web (WASM, one thread: no cross-origin isolation needed). */
export class Classifier {
  constructor(ort, session, config) {
    this.ort = ort;
    this.session = session;
    this.config = config;
    this.inputName = session.inputNames[0];
    this.outputName = session.outputNames[0];
  }

  static async load(config, baseUrl) {
    const ort = await import(new URL(config.runtime.module, baseUrl).href);
    ort.env.wasm.wasmPaths = new URL(config.runtime.wasm_dir, baseUrl).href;
    ort.env.wasm.numThreads = 1;
    ort.env.wasm.proxy = false;
    const response = await fetch(new URL(config.model.file, baseUrl));
    if (!response.ok) throw new Error(`cannot load ${config.model.file}: HTTP ${response.status}`);
    const bytes = new Uint8Array(await response.arrayBuffer());
    const session = await ort.InferenceSession.create(bytes, {
      executionProviders: ["wasm"],
      graphOptimizationLevel: "all",
    });
    return new Classifier(ort, session, config);
  }

  /** Raw pixels (HWC, 0..raw_max) -> {input, scores, predicted, latencyMs}. */
  async classify(raw) {
    const [height, width] = this.config.preprocessing.image_size;
    const channels = this.config.preprocessing.channels;
    if (raw.length !== height * width * channels) {
      throw new Error(`expected ${height * width * channels} pixels, got ${raw.length}`);
    }
    const input = preprocess(raw, this.config.preprocessing);
    const tensor = new this.ort.Tensor("float32", input, [1, height, width, channels]);
    const start = performance.now();
    const outputs = await this.session.run({ [this.inputName]: tensor });
    const latencyMs = performance.now() - start;
    const scores = Float32Array.from(outputs[this.outputName].data);
    tensor.dispose();
    outputs[this.outputName].dispose();
    return { input, scores, predicted: argmax(scores), latencyMs };
  }
}
