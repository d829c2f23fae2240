package org.artefact.field.core

import com.google.gson.JsonObject
import com.google.gson.JsonParser
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Assert.assertThrows
import org.junit.Assert.assertTrue
import org.junit.Test

class FieldConfigTest {
    private val ids = listOf("apple1", "cup3", "pear2")
    private val collections = listOf("apple", "cup", "pear")
    private val labelsTxt = ids.joinToString("\n", postfix = "\n")
    private val hash = sha256Hex(ids.indices.joinToString("\n") { "${ids[it]}\t${collections[it]}" }.toByteArray())

    private fun json(numClasses: Int = 3, dtype: String = "uint8", labelHash: String = hash, extra: String = "") = """
        {"format_version": 1, "model_file": "model.tflite", "labels_file": "labels.txt",
         "model_sha256": "ABC", "label_hash": "$labelHash",
         "input": {"width": 224, "height": 200, "channels": 3, "dtype": "$dtype", "layout": "NHWC",
                   "channel_order": "RGB", "crop_fraction": 0.875, "interpolation": "bilinear",
                   "mean": [127.5, 127.5, 127.5], "std": [127.5, 127.5, 127.5],
                   "quantization": {"scale": 0.00784313725490196, "zero_point": 127}},
         "output": {"type": "log_probabilities", "dtype": "float32", "num_classes": $numClasses},
         "labels": [${ids.indices.joinToString(",") { """{"index": $it, "object_id": "${ids[it]}", "collection": "${collections[it]}", "thumbnail": "thumbs/$it.jpg"}""" }}],
         "top_k": 5, "threshold": {"min_probability": 0.3} $extra}
    """

    private fun message(block: () -> Unit): String = assertThrows(AssetError::class.java) { block() }.message!!

    @Test fun `a valid config is read completely`() {
        val config = FieldConfig.parse(json(), labelsTxt)
        assertEquals(224, config.input.width)
        assertEquals(200, config.input.height)
        assertEquals(0.875, config.input.cropFraction, 0.0)
        assertEquals(127, config.input.quantZeroPoint)
        assertEquals(listOf("apple1", "cup3", "pear2"), config.labels.map { it.objectId })
        assertEquals("thumbs/2.jpg", config.labels[2].thumbnail)
        assertEquals("abc", config.modelSha256)
        assertEquals(0.3, config.minProbability, 0.0)
        assertEquals(5, config.topK)
    }

    @Test fun `label count or order mismatches are refused`() {
        assertTrue(message { FieldConfig.parse(json(numClasses = 4), labelsTxt) }.startsWith("model/label mismatch"))
        assertTrue(message { FieldConfig.parse(json(), "apple1\npear2\ncup3\n") }.contains("line 2 is 'pear2'"))
        assertTrue(message { FieldConfig.parse(json(labelHash = "0".repeat(64)), labelsTxt) }.contains("label_hash"))
    }

    @Test fun `bad JSON, missing keys and unsupported values name the problem`() {
        assertTrue(message { FieldConfig.parse("{", labelsTxt) }.contains("not valid JSON"))
        assertTrue(message { FieldConfig.parse(json().replace("\"top_k\": 5,", ""), labelsTxt) }.contains("'top_k' is missing"))
        assertTrue(message { FieldConfig.parse(json(dtype = "int16"), labelsTxt) }.contains("input.dtype"))
        assertTrue(message { FieldConfig.parse(json().replace("\"format_version\": 1", "\"format_version\": 2"), labelsTxt) }.contains("format_version"))
    }

    @Test fun `the model's tensors are checked against the config`() {
        val config = FieldConfig.parse(json(), labelsTxt)
        config.checkModel(intArrayOf(1, 200, 224, 3), "UINT8", intArrayOf(1, 3), "FLOAT32", 0.00784313725490196, 127)
        assertTrue(message { config.checkModel(intArrayOf(1, 224, 224, 3), "UINT8", intArrayOf(1, 3), "FLOAT32") }.contains("model input"))
        assertTrue(message { config.checkModel(intArrayOf(1, 200, 224, 3), "UINT8", intArrayOf(1, 80), "FLOAT32") }.contains("model/label mismatch"))
        assertTrue(message { config.checkModel(intArrayOf(1, 200, 224, 3), "FLOAT32", intArrayOf(1, 3), "FLOAT32") }.contains("input type"))
        assertTrue(message { config.checkModel(intArrayOf(1, 200, 224, 3), "UINT8", intArrayOf(1, 3), "FLOAT32", 0.01, 128) }.contains("quantisation"))
    }

    /** The config with an embedding + gallery block (apple1: 2 rows, pear2: 1, enrolled vase-17: 2), after `edit`. */
    private fun withGallery(edit: (JsonObject) -> Unit = {}): String {
        val root = JsonParser.parseString(json()).asJsonObject
        root.add("embedding", JsonParser.parseString("""{"output_index": 1, "dim": 4, "dtype": "float32"}"""))
        root.add("gallery", JsonParser.parseString("""
            {"file": "gallery.bin", "sha256": "ABCD", "rows": 5, "dim": 4, "dtype": "int8", "similarity": "cosine",
             "min_similarity": 0.62, "objects": [
               {"object_id": "apple1", "collection": "apple", "first_row": 0, "rows": 2, "enrolled": false, "label_index": 0, "thumbnail": "thumbs/0.jpg"},
               {"object_id": "pear2", "collection": "pear", "first_row": 2, "rows": 1, "enrolled": false, "label_index": 2, "thumbnail": "thumbs/2.jpg"},
               {"object_id": "vase-17", "collection": "vases", "first_row": 3, "rows": 2, "enrolled": true, "label_index": null, "thumbnail": "thumbs/enrolled-0.jpg"}]}
        """))
        edit(root)
        return root.toString()
    }

    private fun JsonObject.gallery() = getAsJsonObject("gallery")
    private fun JsonObject.galleryObject(k: Int) = gallery().getAsJsonArray("objects")[k].asJsonObject

    @Test fun `without the blocks there is no gallery`() {
        val config = FieldConfig.parse(json(), labelsTxt)
        assertNull(config.embedding)
        assertNull(config.gallery)
    }

    @Test fun `the embedding and gallery blocks are read`() {
        val config = FieldConfig.parse(withGallery(), labelsTxt)
        assertEquals(EmbeddingSpec(outputIndex = 1, dim = 4), config.embedding)
        val gallery = config.gallery!!
        assertEquals(listOf("gallery.bin", "abcd", 5, 4, 0.62), listOf(gallery.file, gallery.sha256, gallery.rows, gallery.dim, gallery.minSimilarity))
        assertEquals(GalleryObject("vase-17", "vases", 3, 2, true, null, "thumbs/enrolled-0.jpg"), gallery.objects[2])
        assertEquals(listOf(0, null), listOf(gallery.objects[0].labelIndex, gallery.objects[2].labelIndex))
    }

    @Test fun `inconsistent gallery blocks are refused with the key named`() {
        fun refused(edit: (JsonObject) -> Unit) = message { FieldConfig.parse(withGallery(edit), labelsTxt) }
        assertTrue(refused { it.remove("embedding") }.contains("'embedding' is missing"))
        assertTrue(refused { it.remove("gallery") }.contains("'gallery' is missing"))
        assertTrue(refused { it.gallery().addProperty("dim", 8) }.contains("'gallery.dim' is 8 but embedding.dim is 4"))
        assertTrue(refused { it.gallery().addProperty("dtype", "float32") }.contains("gallery.dtype"))
        assertTrue(refused { it.gallery().addProperty("similarity", "l2") }.contains("gallery.similarity"))
        assertTrue(refused { it.getAsJsonObject("embedding").addProperty("dtype", "int8") }.contains("embedding.dtype"))
        assertTrue(refused { it.galleryObject(1).addProperty("first_row", 3) }.contains("'gallery.objects[1].first_row' is 3, expected 2"))
        assertTrue(refused { it.gallery().addProperty("rows", 6) }.contains("'gallery.rows' is 6 but the objects cover 5 rows"))
        assertTrue(refused { it.galleryObject(1).addProperty("label_index", 3) }.contains("'gallery.objects[1].label_index' is 3 but there are 3 labels"))
        assertTrue(refused { it.galleryObject(1).addProperty("label_index", 1) }.contains("is 'pear2' but labels[1] is 'cup3'"))
        assertTrue(refused { it.galleryObject(2).addProperty("label_index", 1) }.contains("must be null for an enrolled object"))
        assertTrue(refused { it.galleryObject(0).remove("label_index") }.contains("'gallery.objects[0].label_index' is missing"))
        assertTrue(refused { it.galleryObject(0).addProperty("rows", 0) }.contains("gallery.objects[0].rows"))
        assertTrue(refused { it.gallery().remove("sha256") }.contains("'gallery.sha256' is missing"))
    }

    @Test fun `the model's embedding output is checked against the config`() {
        val config = FieldConfig.parse(withGallery(), labelsTxt)
        val shapes = listOf(intArrayOf(1, 3), intArrayOf(1, 4))
        config.checkEmbedding(2, { shapes[it] }, { "FLOAT32" })
        assertTrue(message { config.checkEmbedding(1, { shapes[it] }, { "FLOAT32" }) }.contains("1 output(s) but the gallery needs the embedding at output 1"))
        assertTrue(message { config.checkEmbedding(2, { intArrayOf(1, 5) }, { "FLOAT32" }) }.contains("config says dim 4"))
        assertTrue(message { config.checkEmbedding(2, { shapes[it] }, { "INT8" }) }.contains("is int8, expected float32"))
        FieldConfig.parse(json(), labelsTxt).checkEmbedding(1, { error("not asked without a gallery") }, { "" })
    }
}
