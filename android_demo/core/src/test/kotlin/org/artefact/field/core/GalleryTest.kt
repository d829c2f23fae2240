package org.artefact.field.core

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertNull
import org.junit.Assert.assertThrows
import org.junit.Assert.assertTrue
import org.junit.Test
import kotlin.math.ln
import kotlin.math.sqrt

class GalleryTest {
    // rows: apple1 [10,0,0] [0,10,0] | pear2 [0,0,10] | vase-17 (enrolled) [10,10,0] | seal-2 (enrolled) [0,0,0] [-128,0,0]
    private val values = byteArrayOf(10, 0, 0, 0, 10, 0, 0, 0, 10, 10, 10, 0, 0, 0, 0, -128, 0, 0)
    private val objects = listOf(
        GalleryObject("apple1", "apple", 0, 2, false, 0, "thumbs/0.jpg"),
        GalleryObject("pear2", "pear", 2, 1, false, 2, "thumbs/2.jpg"),
        GalleryObject("vase-17", "vases", 3, 1, true, null, "thumbs/enrolled-0.jpg"),
        GalleryObject("seal-2", "seals", 4, 2, true, null, "thumbs/enrolled-1.jpg"),
    )
    private fun spec(minSimilarity: Double = 0.62) = GallerySpec("gallery.bin", sha256Hex(values), 6, 3, minSimilarity, objects)
    private val gallery = Gallery.load(spec(), values)
    private val logProbs = floatArrayOf(0.2f, 0.3f, 0.5f).map { ln(it) }.toFloatArray()  // apple1, cup3, pear2

    private fun order(embedding: FloatArray) = gallery.rank(embedding, logProbs, 10, 0.3).matches.map { it.objectIndex }

    @Test fun `similarity is the cosine to int8 rows, an object scores its best row`() {
        val sims = gallery.rowSimilarities(floatArrayOf(3f, 0f, 0f))
        assertArrayEquals(doubleArrayOf(1.0, 0.0, 0.0, 1 / sqrt(2.0), 0.0, -1.0), sims, 1e-12)
        val top = gallery.rank(floatArrayOf(3f, 0f, 0f), logProbs, 10, 0.3).matches
        assertEquals(listOf(0, 2, 1, 3), top.map { it.objectIndex })  // pear2 and seal-2 tie at 0: lower index first
        assertEquals(1.0, top[0].similarity, 1e-12)
    }

    @Test fun `int8 values are signed`() {
        assertEquals(listOf(3, 0, 1, 2), order(floatArrayOf(-1f, 0f, 0f)))
    }

    @Test fun `a zero embedding or a zero row has similarity 0`() {
        assertTrue(gallery.rowSimilarities(FloatArray(3)).all { it == 0.0 })
        assertEquals(listOf(0, 1, 2, 3), order(FloatArray(3)))
        assertEquals(0.0, gallery.rowSimilarities(floatArrayOf(0f, 0f, 1f))[4], 0.0)
    }

    @Test fun `top k is clamped to the number of objects`() {
        assertEquals(2, gallery.rank(floatArrayOf(1f, 0f, 0f), logProbs, 2, 0.3).matches.size)
        assertEquals(4, gallery.rank(floatArrayOf(1f, 0f, 0f), logProbs, 50, 0.3).matches.size)
    }

    @Test fun `an enrolled best match is confident by min_similarity`() {
        val query = floatArrayOf(1f, 0.5f, 0f)  // vase-17 0.949, apple1 0.894
        assertTrue(gallery.rank(query, logProbs, 5, 0.99).confident)
        assertFalse(Gallery.load(spec(minSimilarity = 0.95), values).rank(query, logProbs, 5, 0.0).confident)
    }

    @Test fun `a trained best match is confident by the head probability, not the similarity`() {
        val query = floatArrayOf(1f, 0f, 0f)  // apple1 similarity 1.0, head probability 0.2
        assertFalse(gallery.rank(query, logProbs, 5, 0.3).confident)
        assertTrue(gallery.rank(query, logProbs, 5, 0.19).confident)
    }

    @Test fun `the file must have rows x dim bytes and the configured sha256`() {
        fun message(block: () -> Unit) = assertThrows(AssetError::class.java) { block() }.message!!
        assertTrue(message { Gallery.load(spec(), values.copyOf(17)) }.contains("17 bytes but the config says 6 rows x 3"))
        assertTrue(message { Gallery.load(spec(), values.copyOf().also { it[0] = 11 }) }.contains("does not match gallery.sha256"))
    }

    @Test fun `the answer shows similarity, head probability of trained objects and the enrolled marker`() {
        val config = FieldConfig(
            "model.tflite", "labels.txt", "", "", InputSpec(8, 8, 3, "uint8", 1.0, listOf(0.0, 0.0, 0.0), listOf(1.0, 1.0, 1.0), 1.0, 0),
            3, listOf("apple1", "cup3", "pear2").mapIndexed { i, id -> CatalogueLabel(i, id, id.dropLast(1), "thumbs/$i.jpg") },
            topK = 3, minProbability = 0.3, embedding = EmbeddingSpec(1, 3), gallery = spec(),
        )
        val answer = Recognizer(config, gallery).answer(logProbs, floatArrayOf(1f, 1f, 0f))
        assertEquals(listOf("vase-17", "apple1", "pear2"), answer.candidates.map { it.objectId })
        assertEquals(Candidate("vase-17", "vases", "thumbs/enrolled-0.jpg", null, 1.0, true), answer.best.copy(similarity = 1.0))
        assertEquals(1.0, answer.best.similarity!!, 1e-12)
        assertEquals(0.2, answer.candidates[1].probability!!, 1e-6)
        assertEquals(listOf(true, 0.62), listOf(answer.confident, answer.threshold))
        val byHead = Recognizer(config.copy(embedding = null, gallery = null), null).answer(logProbs, null)
        assertEquals(listOf("pear2", "cup3", "apple1"), byHead.candidates.map { it.objectId })
        assertNull(byHead.best.similarity)
        assertEquals(listOf(true, 0.3), listOf(byHead.confident, byHead.threshold))
    }
}
