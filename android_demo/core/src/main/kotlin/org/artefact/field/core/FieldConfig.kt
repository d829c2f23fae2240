package org.artefact.field.core

import com.google.gson.JsonArray
import com.google.gson.JsonElement
import com.google.gson.JsonObject
import com.google.gson.JsonParseException
import com.google.gson.JsonParser

/** A problem with the exported assets; the message is meant for the screen, one line. */
class AssetError(message: String) : Exception(message)

/** How a photo becomes the model input (the `input` block of artefact_config.json). */
data class InputSpec(
    val width: Int,
    val height: Int,
    val channels: Int,
    val dtype: String,
    val cropFraction: Double,
    val mean: List<Double>,
    val std: List<Double>,
    val quantScale: Double?,
    val quantZeroPoint: Int?,
) {
    /** Element count of one NHWC input. */
    val size: Int get() = width * height * channels

    companion object {
        const val UINT8 = "uint8"
        const val FLOAT32 = "float32"
    }
}

/** One catalogue object the model can answer. */
data class CatalogueLabel(val index: Int, val objectId: String, val collection: String, val thumbnail: String)

/** The model's second output (`embedding` block): raw pooled features, float32 [1, dim]. */
data class EmbeddingSpec(val outputIndex: Int, val dim: Int)

/** One gallery object: its rows [firstRow, firstRow + rows) of gallery.bin; labelIndex null when enrolled. */
data class GalleryObject(
    val objectId: String,
    val collection: String,
    val firstRow: Int,
    val rows: Int,
    val enrolled: Boolean,
    val labelIndex: Int?,
    val thumbnail: String,
)

/** The `gallery` block: `rows x dim` int8 reference embeddings in [file], grouped by object. */
data class GallerySpec(
    val file: String,
    val sha256: String,
    val rows: Int,
    val dim: Int,
    val minSimilarity: Double,
    val objects: List<GalleryObject>,
)

/** Everything the app needs from artefact_config.json + labels.txt (see android_demo/ASSETS.md). */
data class FieldConfig(
    val modelFile: String,
    val labelsFile: String,
    val modelSha256: String,
    val labelHash: String,
    val input: InputSpec,
    val numClasses: Int,
    val labels: List<CatalogueLabel>,
    val topK: Int,
    val minProbability: Double,
    val embedding: EmbeddingSpec? = null,
    val gallery: GallerySpec? = null,
) {
    /**
     * Check the model's actual tensors against this config: input shape [1, h, w, c] of type
     * `input.dtype` (with the same quantisation when uint8), output [1, numClasses] float32.
     */
    fun checkModel(inputShape: IntArray, inputType: String, outputShape: IntArray, outputType: String,
                   inputScale: Double? = null, inputZeroPoint: Int? = null) {
        val expected = intArrayOf(1, input.height, input.width, input.channels)
        val batchOne = inputShape.copyOf().also { if (it.isNotEmpty() && it[0] == -1) it[0] = 1 }  // dynamic batch runs as 1
        if (!batchOne.contentEquals(expected)) {
            throw AssetError("$modelFile: model input is ${inputShape.contentToString()} but the config says ${expected.contentToString()}")
        }
        if (inputType.lowercase() != input.dtype) {
            throw AssetError("$modelFile: model input type is ${inputType.lowercase()} but the config says ${input.dtype}")
        }
        val outputs = outputShape.map { kotlin.math.abs(it) }
        if (outputs.lastOrNull() != numClasses || outputs.fold(1) { a, b -> a * b } != numClasses) {
            throw AssetError("$modelFile: model has ${outputShape.contentToString()} outputs but there are $numClasses labels (model/label mismatch)")
        }
        if (outputType.lowercase() != "float32") {
            throw AssetError("$modelFile: model output type is ${outputType.lowercase()}, expected float32 log-probabilities")
        }
        val scale = input.quantScale
        if (inputScale != null && scale != null && (kotlin.math.abs(inputScale - scale) > 1e-6 * scale || inputZeroPoint != input.quantZeroPoint)) {
            throw AssetError("$modelFile: model input quantisation ($inputScale, $inputZeroPoint) differs from the config ($scale, ${input.quantZeroPoint})")
        }
    }

    /**
     * With a gallery: the model must have an output [EmbeddingSpec.outputIndex] of float32 with `dim`
     * values. `shapeOf(i)`/`typeOf(i)` describe model output i; `outputCount` is how many there are.
     */
    fun checkEmbedding(outputCount: Int, shapeOf: (Int) -> IntArray, typeOf: (Int) -> String) {
        val spec = embedding ?: return
        val i = spec.outputIndex
        if (outputCount <= i) {
            throw AssetError("$modelFile: model has $outputCount output(s) but the gallery needs the embedding at output $i (re-export)")
        }
        val size = shapeOf(i).fold(1) { a, b -> a * kotlin.math.abs(b) }
        if (size != spec.dim) throw AssetError("$modelFile: embedding output $i is ${shapeOf(i).contentToString()} ($size values) but the config says dim ${spec.dim}")
        val type = typeOf(i).lowercase()
        if (type != "float32") throw AssetError("$modelFile: embedding output $i is $type, expected float32")
    }

    companion object {
        /** `artefact.bundle.label_hash`: sha256 of "object_id<TAB>collection" lines joined by newlines. */
        fun labelHashOf(labels: List<CatalogueLabel>): String = sha256Hex(
            labels.joinToString("\n") { "${it.objectId}\t${it.collection}" }.toByteArray(Charsets.UTF_8))

        const val FILE = "artefact_config.json"
        const val FORMAT_VERSION = 1

        /** Parse and cross-check the config and labels.txt; throws [AssetError] with a readable message. */
        fun parse(configJson: String, labelsTxt: String): FieldConfig {
            val root = try {
                JsonParser.parseString(configJson).takeIf { it.isJsonObject }?.asJsonObject
            } catch (err: JsonParseException) {
                throw AssetError("$FILE: not valid JSON (${err.message?.lineSequence()?.first()})")
            } ?: throw AssetError("$FILE: not a JSON object")
            return Reader(root).config(labelsTxt)
        }
    }

    /** Field access with errors that name the key. */
    private class Reader(private val root: JsonObject) {
        private fun fail(key: String, what: String): Nothing = throw AssetError("$FILE: '$key' $what")

        private fun get(obj: JsonObject, key: String, path: String = key): JsonElement =
            obj.get(key)?.takeUnless { it.isJsonNull } ?: fail(path, "is missing")

        private fun obj(obj: JsonObject, key: String): JsonObject =
            get(obj, key).takeIf { it.isJsonObject }?.asJsonObject ?: fail(key, "must be an object")

        private fun str(obj: JsonObject, key: String, path: String = key): String {
            val e = get(obj, key, path)
            return if (e.isJsonPrimitive && e.asJsonPrimitive.isString) e.asString else fail(path, "must be a string")
        }

        private fun num(obj: JsonObject, key: String, path: String = key): Double {
            val e = get(obj, key, path)
            return if (e.isJsonPrimitive && e.asJsonPrimitive.isNumber) e.asDouble else fail(path, "must be a number")
        }

        private fun int(obj: JsonObject, key: String, path: String = key): Int {
            val v = num(obj, key, path)
            return if (v == Math.floor(v) && v in 0.0..1e9) v.toInt() else fail(path, "must be a non-negative integer")
        }

        private fun triple(obj: JsonObject, key: String, path: String): List<Double> {
            val e = get(obj, key, path)
            val arr: JsonArray = e.takeIf { it.isJsonArray }?.asJsonArray ?: fail(path, "must be a list of 3 numbers")
            if (arr.size() != 3 || !arr.all { it.isJsonPrimitive && it.asJsonPrimitive.isNumber }) fail(path, "must be a list of 3 numbers")
            return arr.map { it.asDouble }
        }

        fun config(labelsTxt: String): FieldConfig {
            val version = int(root, "format_version")
            if (version != FORMAT_VERSION) fail("format_version", "is $version; this app reads format $FORMAT_VERSION (re-export the assets)")
            val input = input(obj(root, "input"))
            val output = obj(root, "output")
            if (str(output, "type", "output.type") != "log_probabilities") fail("output.type", "must be log_probabilities")
            val numClasses = int(output, "num_classes", "output.num_classes")
            val labels = labels(labelsTxt, numClasses)
            val topK = int(root, "top_k")
            if (topK < 1) fail("top_k", "must be at least 1")
            val minProbability = num(obj(root, "threshold"), "min_probability", "threshold.min_probability")
            if (minProbability !in 0.0..1.0) fail("threshold.min_probability", "must be between 0 and 1")
            val labelHash = str(root, "label_hash")
            if (labelHash != labelHashOf(labels)) {
                throw AssetError("$FILE: label_hash does not match its labels (edited by hand, or assets from two exports)")
            }
            val embedding = root.get("embedding")?.takeUnless { it.isJsonNull }?.let { embedding(obj(root, "embedding")) }
            val gallery = root.get("gallery")?.takeUnless { it.isJsonNull }?.let { gallery(obj(root, "gallery"), labels) }
            if ((embedding == null) != (gallery == null)) fail(if (gallery == null) "gallery" else "embedding", "is missing (the embedding and gallery blocks come together)")
            if (embedding != null && gallery != null && embedding.dim != gallery.dim) {
                fail("gallery.dim", "is ${gallery.dim} but embedding.dim is ${embedding.dim}")
            }
            return FieldConfig(
                modelFile = str(root, "model_file"),
                labelsFile = str(root, "labels_file"),
                modelSha256 = str(root, "model_sha256").lowercase(),
                labelHash = labelHash,
                input = input,
                numClasses = numClasses,
                labels = labels,
                topK = topK,
                minProbability = minProbability,
                embedding = embedding,
                gallery = gallery,
            )
        }

        private fun embedding(o: JsonObject): EmbeddingSpec {
            val dtype = str(o, "dtype", "embedding.dtype")
            if (dtype != "float32") fail("embedding.dtype", "must be float32, got $dtype")
            val dim = int(o, "dim", "embedding.dim")
            if (dim < 1) fail("embedding.dim", "must be at least 1")
            return EmbeddingSpec(int(o, "output_index", "embedding.output_index"), dim)
        }

        private fun gallery(o: JsonObject, labels: List<CatalogueLabel>): GallerySpec {
            for ((key, want) in listOf("dtype" to "int8", "similarity" to "cosine")) {
                val got = str(o, key, "gallery.$key")
                if (got != want) fail("gallery.$key", "must be $want, got $got")
            }
            val rows = int(o, "rows", "gallery.rows")
            val dim = int(o, "dim", "gallery.dim")
            if (dim < 1) fail("gallery.dim", "must be at least 1")
            val minSimilarity = num(o, "min_similarity", "gallery.min_similarity")
            if (minSimilarity !in -1.0..1.0) fail("gallery.min_similarity", "must be between -1 and 1")
            val entries = get(o, "objects", "gallery.objects").takeIf { it.isJsonArray }?.asJsonArray ?: fail("gallery.objects", "must be a list")
            if (entries.size() == 0) fail("gallery.objects", "is empty")
            var nextRow = 0
            val objects = entries.mapIndexed { k, e ->
                galleryObject(e, "gallery.objects[$k]", labels).also {
                    if (it.firstRow != nextRow) fail("gallery.objects[$k].first_row", "is ${it.firstRow}, expected $nextRow (rows must be contiguous, in order)")
                    nextRow += it.rows
                }
            }
            if (nextRow != rows) fail("gallery.rows", "is $rows but the objects cover $nextRow rows")
            return GallerySpec(str(o, "file", "gallery.file"), str(o, "sha256", "gallery.sha256").lowercase(), rows, dim, minSimilarity, objects)
        }

        private fun galleryObject(e: JsonElement, path: String, labels: List<CatalogueLabel>): GalleryObject {
            val o = e.takeIf { it.isJsonObject }?.asJsonObject ?: fail(path, "must be an object")
            val enrolled = get(o, "enrolled", "$path.enrolled").takeIf { it.isJsonPrimitive && it.asJsonPrimitive.isBoolean }?.asBoolean
                ?: fail("$path.enrolled", "must be true or false")
            val objectId = str(o, "object_id", "$path.object_id")
            val labelIndex = o.get("label_index")?.takeUnless { it.isJsonNull }?.let { int(o, "label_index", "$path.label_index") }
            if (enrolled != (labelIndex == null)) fail("$path.label_index", if (enrolled) "must be null for an enrolled object" else "is missing (a trained object needs its label index)")
            if (labelIndex != null) {
                if (labelIndex >= labels.size) fail("$path.label_index", "is $labelIndex but there are ${labels.size} labels")
                if (labels[labelIndex].objectId != objectId) {
                    fail("$path.object_id", "is '$objectId' but labels[$labelIndex] is '${labels[labelIndex].objectId}'")
                }
            }
            val rows = int(o, "rows", "$path.rows")
            if (rows < 1) fail("$path.rows", "must be at least 1")
            return GalleryObject(objectId, o.get("collection")?.takeIf { it.isJsonPrimitive }?.asString ?: "",
                int(o, "first_row", "$path.first_row"), rows, enrolled, labelIndex, str(o, "thumbnail", "$path.thumbnail"))
        }

        private fun input(o: JsonObject): InputSpec {
            val dtype = str(o, "dtype", "input.dtype")
            if (dtype != InputSpec.UINT8 && dtype != InputSpec.FLOAT32) fail("input.dtype", "must be uint8 or float32, got $dtype")
            for ((key, want) in listOf("layout" to "NHWC", "channel_order" to "RGB", "interpolation" to "bilinear")) {
                val got = str(o, key, "input.$key")
                if (got != want) fail("input.$key", "must be $want, got $got")
            }
            val channels = int(o, "channels", "input.channels")
            if (channels != 3) fail("input.channels", "must be 3, got $channels")
            val width = int(o, "width", "input.width")
            val height = int(o, "height", "input.height")
            if (width < 1 || height < 1) fail("input.width/height", "must be positive")
            val crop = num(o, "crop_fraction", "input.crop_fraction")
            if (crop <= 0.0 || crop > 1.0) fail("input.crop_fraction", "must be in (0, 1], got $crop")
            val std = triple(o, "std", "input.std")
            if (std.any { it <= 0.0 }) fail("input.std", "must be positive")
            val quant = o.get("quantization")?.takeIf { it.isJsonObject }?.asJsonObject
            if (dtype == InputSpec.UINT8 && quant == null) fail("input.quantization", "is missing (needed for a uint8 model)")
            return InputSpec(
                width = width, height = height, channels = channels, dtype = dtype, cropFraction = crop,
                mean = triple(o, "mean", "input.mean"), std = std,
                quantScale = quant?.let { num(it, "scale", "input.quantization.scale") },
                quantZeroPoint = quant?.let { int(it, "zero_point", "input.quantization.zero_point") },
            )
        }

        private fun labels(labelsTxt: String, numClasses: Int): List<CatalogueLabel> {
            val ids = labelsTxt.lines().map { it.trim() }.filter { it.isNotEmpty() }
            val entries = get(root, "labels").takeIf { it.isJsonArray }?.asJsonArray ?: fail("labels", "must be a list")
            if (ids.size != numClasses || entries.size() != numClasses) {
                throw AssetError("model/label mismatch: the model has $numClasses outputs, labels.txt has ${ids.size} lines, $FILE lists ${entries.size()} labels")
            }
            return entries.mapIndexed { i, e ->
                val o = e.takeIf { it.isJsonObject }?.asJsonObject ?: fail("labels[$i]", "must be an object")
                val label = CatalogueLabel(int(o, "index", "labels[$i].index"), str(o, "object_id", "labels[$i].object_id"),
                    o.get("collection")?.takeIf { it.isJsonPrimitive }?.asString ?: "",
                    o.get("thumbnail")?.takeIf { it.isJsonPrimitive }?.asString ?: "")
                if (label.index != i) fail("labels[$i].index", "is ${label.index}; labels must be in model output order")
                if (label.objectId != ids[i]) {
                    throw AssetError("model/label mismatch: labels.txt line ${i + 1} is '${ids[i]}' but $FILE says '${label.objectId}'")
                }
                label
            }
        }
    }
}

/** Lower-case hex sha256 of `bytes` (to check model_sha256 and label_hash). */
fun sha256Hex(bytes: ByteArray): String =
    java.security.MessageDigest.getInstance("SHA-256").digest(bytes).joinToString("") { "%02x".format(it) }
