package org.artefact.field.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Test
import kotlin.math.ln

class RankingTest {
    private val logProbs = floatArrayOf(0.1f, 0.5f, 0.05f, 0.3f, 0.05f).map { ln(it) }.toFloatArray()

    @Test fun `top k is sorted by probability, ties by index`() {
        val top = Ranking.topK(logProbs, 4)
        assertEquals(listOf(1, 3, 0, 2), top.map { it.index })
        assertEquals(0.5, top[0].probability, 1e-6)
    }

    @Test fun `k is clamped to the number of classes`() {
        assertEquals(5, Ranking.topK(logProbs, 50).size)
        assertEquals(1, Ranking.topK(logProbs, 0).size)
    }

    @Test fun `below the threshold there is no confident match`() {
        assertTrue(Ranking.decide(logProbs, 5, 0.49).confident)
        assertFalse(Ranking.decide(logProbs, 5, 0.51).confident)
        assertEquals(1, Ranking.decide(logProbs, 5, 0.9).best.index)
    }
}
