package org.artefact.field

import android.content.res.AssetManager
import android.os.SystemClock
import org.artefact.field.core.AssetError
import org.artefact.field.core.FieldConfig
import org.artefact.field.core.InputSpec
import org.artefact.field.core.sha256Hex
import org.tensorflow.lite.DataType
import org.tensorflow.lite.Interpreter
import java.io.Closeable
import java.io.FileNotFoundException
import java.nio.ByteBuffer
import java.nio.ByteOrder

/**
 * The exported model and its config (android_demo/ASSETS.md), run by LiteRT on the CPU with XNNPACK.
 * [load] checks everything at start-up and throws [AssetError] with a message for the screen.
 */
class Classifier private constructor(val config: FieldConfig, private val interpreter: Interpreter) : Closeable {

    private val input: ByteBuffer = ByteBuffer.allocateDirect(
        config.input.size * if (config.input.dtype == InputSpec.UINT8) 1 else 4,
    ).order(ByteOrder.nativeOrder())
    private val output = Array(1) { FloatArray(config.numClasses) }

    /** Log-probabilities for one preprocessed input and the time `run` took in milliseconds. */
    @Synchronized
    fun run(tensorBytes: ByteArray): Pair<FloatArray, Long> {
        input.clear()
        if (config.input.dtype == InputSpec.UINT8) {
            input.put(tensorBytes)
        } else {  // tensorBytes are little-endian float32; the interpreter wants native order
            val floats = ByteBuffer.wrap(tensorBytes).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer()
            while (floats.hasRemaining()) input.putFloat(floats.get())
        }
        input.rewind()
        val start = SystemClock.elapsedRealtime()
        interpreter.run(input, output)
        return output[0].copyOf() to SystemClock.elapsedRealtime() - start
    }

    override fun close() = interpreter.close()

    companion object {
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
            } catch (err: AssetError) {
                interpreter.close()
                throw err
            }
            return Classifier(config, interpreter)
        }
    }
}
