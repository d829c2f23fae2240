package org.artefact.field.core

import com.google.gson.JsonParser
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assume.assumeTrue
import org.junit.Test
import java.io.File

/**
 * The app's preprocessing against `artefact.contract.Preprocess.to_pixels` on real photos.
 *
 * tests/test_android_core.py writes, into $ARTEFACT_GOLDEN_DIR, the decoded stored pixels of sample
 * photos (RGBA, before EXIF rotation), their EXIF orientation, the contract and Python's uint8
 * output, then runs this test. Without that folder (a plain Gradle run) it is skipped.
 */
class GoldenTest {
    @Test fun `Kotlin preprocessing equals the Python contract within one step`() {
        val dir = System.getenv("ARTEFACT_GOLDEN_DIR")?.let(::File)
        assumeTrue("ARTEFACT_GOLDEN_DIR not set (run through tests/test_android_core.py)", dir != null)
        val cases = JsonParser.parseString(File(dir, "cases.json").readText()).asJsonArray
        assertTrue("no golden cases", cases.size() > 0)
        for (element in cases) {
            val c = element.asJsonObject
            val name = c.get("name").asString
            val size = c.get("input_size").asInt
            val spec = InputSpec(size, size, 3, InputSpec.UINT8, c.get("crop_fraction").asDouble,
                listOf(127.5, 127.5, 127.5), listOf(127.5, 127.5, 127.5), 1 / 127.5, 127)
            val stored = ArgbImage.fromInterleaved(c.get("width").asInt, c.get("height").asInt,
                File(dir, c.get("input").asString).readBytes(), 4)
            val actual = Preprocessor(spec).tensorBytes(Preprocessor(spec).pixels(stored, c.get("orientation").asInt))
            val expected = File(dir, c.get("expected").asString).readBytes()
            assertEquals("$name: tensor size", expected.size, actual.size)
            var maxDiff = 0
            var differing = 0
            for (i in expected.indices) {
                val d = Math.abs((expected[i].toInt() and 0xFF) - (actual[i].toInt() and 0xFF))
                if (d > 0) differing++
                maxDiff = maxOf(maxDiff, d)
            }
            println("GOLDEN $name max_diff=$maxDiff differing=$differing/${expected.size}")
            assertTrue("$name: max difference $maxDiff > 1 step", maxDiff <= 1)
        }
    }
}
