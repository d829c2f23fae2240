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
    }
}
