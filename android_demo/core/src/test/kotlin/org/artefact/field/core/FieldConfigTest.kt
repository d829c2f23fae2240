package org.artefact.field.core

import org.junit.Assert.assertEquals
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
}
