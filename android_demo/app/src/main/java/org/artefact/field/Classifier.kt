package org.artefact.field

import android.content.res.AssetManager
import android.os.SystemClock
import org.artefact.field.core.AssetError
import org.artefact.field.core.FieldConfig
import org.artefact.field.core.Gallery
import org.artefact.field.core.InputSpec
import org.artefact.field.core.Recognizer
import org.artefact.field.core.sha256Hex
import org.tensorflow.lite.DataType
import org.tensorflow.lite.Interpreter
import java.io.Closeable
import java.io.FileNotFoundException
import java.nio.ByteBuffer
import java.nio.ByteOrder

/** One inference: log-probabilities (output 0), the embedding output when the assets have a gallery, and its time. */
class ModelOutputs(val logProbs: FloatArray, val embedding: FloatArray?, val millis: Long)

/**
 * The exported model, its config and the optional embedding gallery (android_demo/ASSETS.md), run by
 * LiteRT on the CPU with XNNPACK. [load] checks everything at start-up and throws [AssetError] with a
 * message for the screen; [recognizer] turns [run]'s outputs into the answer shown.
 */
class Classifier private constructor(val config: FieldConfig, gallery: Gallery?, private val interpreter: Interpreter) : Closeable {

    val recognizer = Recognizer(config, gallery)

    private val input: ByteBuffer = ByteBuffer.allocateDirect(
        config.input.size * if (config.input.dtype == InputSpec.UINT8) 1 else 4,
    ).order(ByteOrder.nativeOrder())
    private val logProbs = floatBuffer(config.numClasses)
    private val embedding = config.embedding?.let { it.outputIndex to floatBuffer(it.dim) }

    /** Model outputs for one preprocessed input. */
    @Synchronized
    fun run(tensorBytes: ByteArray): ModelOutputs {
        input.clear()
        if (config.input.dtype == InputSpec.UINT8) {
            input.put(tensorBytes)
        } else {  // tensorBytes are little-endian float32; the interpreter wants native order
            val floats = ByteBuffer.wrap(tensorBytes).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer()
            while (floats.hasRemaining()) input.putFloat(floats.get())
        }
        input.rewind()
        logProbs.clear()
        val outputs = hashMapOf<Int, Any>(0 to logProbs)
        embedding?.let { (index, buffer) -> buffer.clear(); outputs[index] = buffer }
        val start = SystemClock.elapsedRealtime()
        interpreter.runForMultipleInputsOutputs(arrayOf<Any>(input), outputs)
        return ModelOutputs(floats(logProbs), embedding?.let { floats(it.second) }, SystemClock.elapsedRealtime() - start)
    }

    @Synchronized  // never while run() is using the interpreter
    override fun close() = interpreter.close()

    companion object {
        private fun floatBuffer(n: Int): ByteBuffer = ByteBuffer.allocateDirect(4 * n).order(ByteOrder.nativeOrder())

        private fun floats(buffer: ByteBuffer): FloatArray {
            buffer.rewind()
            return FloatArray(buffer.capacity() / 4).also { buffer.asFloatBuffer().get(it) }
        }

        private const val HOW_TO_EXPORT =
            "export them with: artefact-export --target android --bundle B --out android_demo/app/src/main/assets, then rebuild"

        private fun read(assets: AssetManager, name: String): ByteArray = try {
            assets.open(name).use { it.readBytes() }
        } catch (err: FileNotFoundException) {
            throw AssetError("assets/$name is missing from the app: $HOW_TO_EXPORT")
        }

        fun load(assets: AssetManager, threads: Int): Classifier {
            val config = FieldConfig.parse(
                String(read(assets, FieldConfig.FILE), Charsets.UTF_8),
                String(read(assets, "labels.txt"), Charsets.UTF_8),
            )
            val gallery = config.gallery?.let { Gallery.load(it, read(assets, it.file)) }
            val model = read(assets, config.modelFile)
            if (sha256Hex(model) != config.modelSha256) {
                throw AssetError("assets/${config.modelFile} does not match model_sha256 in ${FieldConfig.FILE} (assets from two exports?): $HOW_TO_EXPORT")
            }
            val buffer = ByteBuffer.allocateDirect(model.size).order(ByteOrder.nativeOrder()).put(model)
            buffer.rewind()
            val options = Interpreter.Options().setNumThreads(threads).setUseXNNPACK(true)
            val interpreter = try {
                Interpreter(buffer, options)
            } catch (err: IllegalArgumentException) {
                throw AssetError("assets/${config.modelFile}: LiteRT cannot load this model (${err.message})")
            }
            try {
                val inTensor = interpreter.getInputTensor(0)
                val outTensor = interpreter.getOutputTensor(0)
                val quant = inTensor.quantizationParams()
                val isUint8 = inTensor.dataType() == DataType.UINT8
                config.checkModel(
                    inTensor.shape(), inTensor.dataType().name, outTensor.shape(), outTensor.dataType().name,
                    if (isUint8) quant.scale.toDouble() else null, if (isUint8) quant.zeroPoint else null,
                )
                config.checkEmbedding(interpreter.outputTensorCount, { interpreter.getOutputTensor(it).shape() },
                    { interpreter.getOutputTensor(it).dataType().name })
            } catch (err: AssetError) {
                interpreter.close()
                throw err
            }
            return Classifier(config, gallery, interpreter)
        }
    }
}
