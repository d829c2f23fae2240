package org.artefact.field.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assume.assumeTrue
import org.junit.Test
import java.io.File

/**
 * The assets written by `artefact-export --target android` load in the app's own parser.
 * tests/test_android_core.py exports the test bundle and sets $ARTEFACT_ASSETS_DIR; skipped otherwise.
 */
class ExportedAssetsTest {
    @Test fun `exported assets parse and are self-consistent`() {
        val dir = System.getenv("ARTEFACT_ASSETS_DIR")?.let(::File)
        assumeTrue("ARTEFACT_ASSETS_DIR not set (run through tests/test_android_core.py)", dir != null)
        val config = FieldConfig.parse(File(dir, FieldConfig.FILE).readText(), File(dir, "labels.txt").readText())
        assertEquals(sha256Hex(File(dir, config.modelFile).readBytes()), config.modelSha256)
        assertEquals(InputSpec.UINT8, config.input.dtype)
        assertEquals(config.numClasses, config.labels.size)
        for (label in config.labels) assertTrue("missing ${label.thumbnail}", File(dir, label.thumbnail).isFile)
        println("ASSETS ok labels=${config.numClasses} input=${config.input.width}x${config.input.height}")
        config.gallery?.let { checkGallery(dir!!, config, it) }
    }

    /** gallery.bin loads (size, sha256) and a query equal to row 0 ranks object 0 first with similarity 1. */
    private fun checkGallery(dir: File, config: FieldConfig, spec: GallerySpec) {
        val bytes = File(dir, spec.file).readBytes()
        val gallery = Gallery.load(spec, bytes)
        for (o in spec.objects) assertTrue("missing ${o.thumbnail}", File(dir, o.thumbnail).isFile)
        val row0 = FloatArray(spec.dim) { bytes[it].toFloat() }
        val logProbs = FloatArray(config.numClasses) { kotlin.math.ln(1.0 / config.numClasses).toFloat() }
        val best = gallery.rank(row0, logProbs, config.topK, config.minProbability).matches.first()
        assertEquals(0, best.objectIndex)
        assertEquals(1.0, best.similarity, 1e-9)
        println("GALLERY ok objects=${spec.objects.size} rows=${spec.rows}")
    }
}
