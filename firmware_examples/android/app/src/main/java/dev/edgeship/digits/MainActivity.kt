// One activity: draw a digit, see the int8 model's prediction and per-class bars.
//
// Each step mirrors firmware_examples/phone_web/www/classifier.js, which the browser test
// checks against Python: rasterizeDrawing -> preprocess (x = raw * scale + offset) -> model
// -> argmax. The web page runs the same model's int8 ONNX export with float input and output;
// here the LiteRT interpreter runs model_int8.tflite, whose input and output are int8, so
// quantize/dequantize (the scale and zero point from config.json's int8_io) wrap the model.
package dev.edgeship.digits

import android.app.Activity
import android.content.Context
import android.graphics.Bitmap
import android.graphics.Canvas
import android.graphics.Color
import android.graphics.Paint
import android.graphics.Path
import android.os.Bundle
import android.os.SystemClock
import android.view.MotionEvent
import android.view.View
import android.widget.Button
import android.widget.LinearLayout
import android.widget.ProgressBar
import android.widget.TextView
import org.json.JSONObject
import org.tensorflow.lite.Interpreter
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.MappedByteBuffer
import java.nio.channels.FileChannel
import kotlin.math.abs
import kotlin.math.floor
import kotlin.math.max
import kotlin.math.min
import kotlin.math.roundToInt

/** The manifest's preprocessing, as config.json (written by `edgeship serve-demo`) holds it. */
data class Preprocessing(
    val scale: Float, val offset: Float, val rawMax: Float,
    val height: Int, val width: Int, val channels: Int,
)

/** Scale and zero point of an int8 tensor (config.json's int8_io.input / int8_io.output). */
data class Quantization(val scale: Float, val zeroPoint: Int)

/** Same as classifier.js `rasterizeDrawing`: white-on-black ARGB pixels -> raw model pixels. */
fun rasterizeDrawing(argb: IntArray, sourceWidth: Int, sourceHeight: Int, p: Preprocessing): FloatArray {
    val raw = FloatArray(p.height * p.width * p.channels)
    var top = sourceHeight; var bottom = -1; var left = sourceWidth; var right = -1
    for (y in 0 until sourceHeight) for (x in 0 until sourceWidth) {
        if (Color.red(argb[y * sourceWidth + x]) > 0) {
            top = min(top, y); bottom = max(bottom, y); left = min(left, x); right = max(right, x)
        }
    }
    if (bottom < 0) return raw
    val side = max(bottom - top + 1, right - left + 1)
    val cropTop = Math.floorDiv(top + bottom + 1 - side, 2)
    val cropLeft = Math.floorDiv(left + right + 1 - side, 2)
    val inner = max(1, (min(p.height, p.width) * 20.0 / 28.0).roundToInt())
    val innerTop = (p.height - inner) / 2
    val innerLeft = (p.width - inner) / 2
    val step = side.toDouble() / inner
    for (row in 0 until inner) {
        val y0 = floor(row * step).toInt()
        val y1 = max(y0 + 1, floor((row + 1) * step).toInt())
        for (column in 0 until inner) {
            val x0 = floor(column * step).toInt()
            val x1 = max(x0 + 1, floor((column + 1) * step).toInt())
            var sum = 0.0
            for (y in cropTop + y0 until cropTop + y1) for (x in cropLeft + x0 until cropLeft + x1) {
                if (y in 0 until sourceHeight && x in 0 until sourceWidth) {
                    sum += Color.red(argb[y * sourceWidth + x])
                }
            }
            val value = (sum / ((y1 - y0) * (x1 - x0)) / 255.0 * p.rawMax).toFloat()
            val base = ((innerTop + row) * p.width + innerLeft + column) * p.channels
            for (channel in 0 until p.channels) raw[base + channel] = value
        }
    }
    return raw
}

/** Same as classifier.js `preprocess`: x = raw * scale + offset in float32. */
fun preprocess(raw: FloatArray, p: Preprocessing): FloatArray =
    FloatArray(raw.size) { raw[it] * p.scale + p.offset }

/** Float -> int8 as TFLite does: round half away from zero, add the zero point, clamp. */
fun quantize(values: FloatArray, q: Quantization): ByteBuffer {
    val buffer = ByteBuffer.allocateDirect(values.size).order(ByteOrder.nativeOrder())
    for (value in values) {
        val scaled = value / q.scale
        val rounded = Math.signum(scaled) * floor(abs(scaled) + 0.5f) + q.zeroPoint
        buffer.put(rounded.coerceIn(-128f, 127f).toInt().toByte())
    }
    buffer.rewind()
    return buffer
}

fun dequantize(buffer: ByteBuffer, count: Int, q: Quantization): FloatArray {
    buffer.rewind()
    return FloatArray(count) { (buffer.get().toInt() - q.zeroPoint) * q.scale }
}

/** Same as classifier.js `argmax`: the first index of the largest score. */
fun argmax(scores: FloatArray): Int {
    var best = 0
    for (index in 1 until scores.size) if (scores[index] > scores[best]) best = index
    return best
}

class Result(val scores: FloatArray, val predicted: Int, val latencyMs: Double)

/** model_int8.tflite in the LiteRT interpreter, with config.json's facts about it. */
class DigitClassifier(context: Context) : AutoCloseable {
    val classNames: List<String>
    val preprocessing: Preprocessing
    private val input: Quantization
    private val output: Quantization
    private val interpreter: Interpreter

    init {
        val config = JSONObject(context.assets.open("config.json").bufferedReader().readText())
        classNames = config.getJSONArray("class_names").let { names ->
            List(names.length()) { names.getString(it) }
        }
        val p = config.getJSONObject("preprocessing")
        val size = p.getJSONArray("image_size")
        preprocessing = Preprocessing(
            p.getDouble("scale").toFloat(), p.getDouble("offset").toFloat(),
            p.getDouble("raw_max").toFloat(), size.getInt(0), size.getInt(1), p.getInt("channels"))
        val io = config.getJSONObject("int8_io")
        input = io.getJSONObject("input").let { Quantization(it.getDouble("scale").toFloat(), it.getInt("zero_point")) }
        output = io.getJSONObject("output").let { Quantization(it.getDouble("scale").toFloat(), it.getInt("zero_point")) }
        interpreter = Interpreter(loadModel(context), Interpreter.Options().setNumThreads(1))
    }

    private fun loadModel(context: Context): MappedByteBuffer {
        context.assets.openFd("model_int8.tflite").use { descriptor ->
            FileInputStream(descriptor.fileDescriptor).channel.use { channel ->
                return channel.map(FileChannel.MapMode.READ_ONLY, descriptor.startOffset, descriptor.declaredLength)
            }
        }
    }

    fun classify(raw: FloatArray): Result {
        val inputBuffer = quantize(preprocess(raw, preprocessing), input)
        val outputBuffer = ByteBuffer.allocateDirect(classNames.size).order(ByteOrder.nativeOrder())
        val start = SystemClock.elapsedRealtimeNanos()
        interpreter.run(inputBuffer, outputBuffer)
        val latencyMs = (SystemClock.elapsedRealtimeNanos() - start) / 1e6
        val scores = dequantize(outputBuffer, classNames.size, output)
        return Result(scores, argmax(scores), latencyMs)
    }

    override fun close() = interpreter.close()
}

/** A square black pad; white strokes as wide as 1/14 of its side, like the web page's. */
class DrawingView(context: Context, private val onStrokeEnd: () -> Unit) : View(context) {
    private var bitmap: Bitmap? = null
    private var canvas: Canvas? = null
    private val path = Path()
    private val paint = Paint().apply {
        color = Color.WHITE; style = Paint.Style.STROKE; isAntiAlias = true
        strokeCap = Paint.Cap.ROUND; strokeJoin = Paint.Join.ROUND
    }

    override fun onMeasure(widthSpec: Int, heightSpec: Int) {
        val side = MeasureSpec.getSize(widthSpec)
        setMeasuredDimension(side, side)
    }

    override fun onSizeChanged(width: Int, height: Int, oldWidth: Int, oldHeight: Int) {
        bitmap = Bitmap.createBitmap(width, height, Bitmap.Config.ARGB_8888).also {
            canvas = Canvas(it)
            it.eraseColor(Color.BLACK)
        }
        paint.strokeWidth = width / 14f
    }

    override fun onDraw(target: Canvas) {
        bitmap?.let { target.drawBitmap(it, 0f, 0f, null) }
        target.drawPath(path, paint)
    }

    override fun onTouchEvent(event: MotionEvent): Boolean {
        when (event.actionMasked) {
            MotionEvent.ACTION_DOWN -> { path.moveTo(event.x, event.y); path.lineTo(event.x + 0.01f, event.y) }
            MotionEvent.ACTION_MOVE -> path.lineTo(event.x, event.y)
            MotionEvent.ACTION_UP, MotionEvent.ACTION_CANCEL -> {
                canvas?.drawPath(path, paint)
                path.reset()
                onStrokeEnd()
            }
        }
        invalidate()
        return true
    }

    fun clear() {
        bitmap?.eraseColor(Color.BLACK)
        invalidate()
    }

    fun pixels(): Triple<IntArray, Int, Int> {
        val image = bitmap ?: return Triple(IntArray(0), 0, 0)
        val argb = IntArray(image.width * image.height)
        image.getPixels(argb, 0, image.width, 0, 0, image.width, image.height)
        return Triple(argb, image.width, image.height)
    }
}

class MainActivity : Activity() {
    private lateinit var classifier: DigitClassifier
    private lateinit var pad: DrawingView
    private lateinit var prediction: TextView
    private lateinit var details: TextView
    private val bars = mutableListOf<ProgressBar>()

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        classifier = DigitClassifier(this)
        val root = LinearLayout(this).apply { orientation = LinearLayout.VERTICAL; setPadding(32, 48, 32, 32) }
        pad = DrawingView(this) { classifyDrawing() }
        root.addView(pad)
        root.addView(Button(this).apply { text = "Clear"; setOnClickListener { pad.clear() } })
        prediction = TextView(this).apply { textSize = 40f }
        root.addView(prediction)
        for (name in classifier.classNames) {
            val row = LinearLayout(this).apply { orientation = LinearLayout.HORIZONTAL }
            row.addView(TextView(this).apply { text = name; minWidth = 120 })
            val bar = ProgressBar(this, null, android.R.attr.progressBarStyleHorizontal).apply { max = 1000 }
            row.addView(bar, LinearLayout.LayoutParams(0, LinearLayout.LayoutParams.WRAP_CONTENT, 1f))
            bars.add(bar)
            root.addView(row)
        }
        details = TextView(this).apply { text = "LiteRT interpreter, model_int8.tflite" }
        root.addView(details)
        setContentView(root)
    }

    private fun classifyDrawing() {
        val (argb, width, height) = pad.pixels()
        if (width == 0) return
        val raw = rasterizeDrawing(argb, width, height, classifier.preprocessing)
        val result = classifier.classify(raw)
        prediction.text = classifier.classNames[result.predicted]
        result.scores.forEachIndexed { index, score -> bars[index].progress = (score.coerceIn(0f, 1f) * 1000).toInt() }
        details.text = "LiteRT interpreter, model_int8.tflite, %.2f ms".format(result.latencyMs)
    }

    override fun onDestroy() {
        classifier.close()
        super.onDestroy()
    }
}
