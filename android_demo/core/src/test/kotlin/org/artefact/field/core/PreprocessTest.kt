package org.artefact.field.core

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Test
import kotlin.random.Random

class PreprocessTest {
    private fun gray(values: IntArray) = ArgbImage(values.size, 1, IntArray(values.size) { (0xFF shl 24) or (values[it] * 0x010101) })
    private fun reds(image: ArgbImage) = image.pixels.map { (it shr 16) and 0xFF }

    private fun spec(size: Int, crop: Double = 1.0) = InputSpec(size, size, 3, InputSpec.UINT8, crop,
        listOf(127.5, 127.5, 127.5), listOf(127.5, 127.5, 127.5), 1 / 127.5, 127)

    private fun random(w: Int, h: Int, seed: Int) = Random(seed).let { r -> ArgbImage(w, h, IntArray(w * h) { (0xFF shl 24) or r.nextInt(0x1000000) }) }

    @Test fun `downscale matches Pillow (values from PIL 13)`() {
        assertEquals(listOf(36, 219), reds(PilResize.bilinear(gray(intArrayOf(0, 0, 255, 255)), 2, 1)))
        assertEquals(listOf(91, 81, 181), reds(PilResize.bilinear(gray(intArrayOf(10, 200, 30, 90, 250)), 3, 1)))
    }

    @Test fun `upscale matches Pillow (values from PIL 13)`() {
        assertEquals(listOf(10, 93, 189, 83, 49, 86, 180, 250), reds(PilResize.bilinear(gray(intArrayOf(10, 200, 30, 90, 250)), 8, 1)))
    }

    @Test fun `same size is the identity and a flat image stays flat`() {
        val image = random(9, 7, 1)
        assertArrayEquals(image.pixels, PilResize.bilinear(image, 9, 7).pixels)
        val flat = ArgbImage(50, 30, IntArray(1500) { 0xFF336699.toInt() })
        assertEquals(setOf(0xFF336699.toInt()), PilResize.bilinear(flat, 13, 11).pixels.toSet())
    }

    @Test fun `crop box follows Preprocess crop_box, including Python round half to even`() {
        assertEquals(Box(20, 0, 80, 60), Preprocessor(spec(8)).cropBox(100, 60))
        assertEquals(Box(0, 3, 7, 10), Preprocessor(spec(8)).cropBox(7, 14))
        assertEquals(2, Preprocessor(spec(8, 0.25)).cropBox(10, 10).width)   // round(2.5) == 2
        assertEquals(4, Preprocessor(spec(8, 0.35)).cropBox(10, 10).width)   // round(3.5) == 4
        assertEquals(Box(2, 2, 8, 8), Preprocessor(spec(8, 0.6)).cropBox(10, 10))
    }

    @Test fun `reading only the source box equals rotating the whole photo then cropping`() {
        val stored = random(13, 8, 2)
        for (orientation in 1..8) {
            val p = Preprocessor(spec(5, 0.7))
            val upright = Orientation.apply(orientation, stored)
            val expected = PilResize.bilinear(Preprocessor.crop(upright, p.cropBox(upright.width, upright.height)), 5, 5)
            assertArrayEquals("orientation $orientation", expected.pixels, p.pixels(stored, orientation).pixels)
        }
    }

    @Test fun `orientations 6 and 8 rotate a quarter turn`() {
        val stored = ArgbImage(2, 1, intArrayOf(1, 2))                 // [1 2]
        assertArrayEquals(intArrayOf(1, 2), Orientation.apply(6, stored).pixels)  // 1 above 2
        assertEquals(1, Orientation.apply(6, stored).width)
        assertArrayEquals(intArrayOf(2, 1), Orientation.apply(8, stored).pixels)  // 2 above 1
        assertArrayEquals(intArrayOf(2, 1), Orientation.apply(2, stored).pixels)
        assertArrayEquals(intArrayOf(1, 2), Orientation.apply(99, stored).pixels) // unknown tag: as stored
    }

    @Test fun `translucent pixels are composited on white`() {
        val image = ArgbImage(2, 1, intArrayOf(0x00000000, 0x80FF0000.toInt())).opaqueOnWhite()
        assertEquals(0xFFFFFFFF.toInt(), image.pixels[0])
        assertEquals(0xFFFF7F7F.toInt(), image.pixels[1])
    }

    @Test fun `tensor bytes are RGB NHWC, float models get (pixel - mean) over std`() {
        val px = ArgbImage(1, 1, intArrayOf(0xFF00FF80.toInt()))
        assertArrayEquals(byteArrayOf(0, 0xFF.toByte(), 0x80.toByte()), Preprocessor(spec(1)).tensorBytes(px))
        val floatSpec = spec(1).copy(dtype = InputSpec.FLOAT32)
        val floats = java.nio.ByteBuffer.wrap(Preprocessor(floatSpec).tensorBytes(px)).order(java.nio.ByteOrder.LITTLE_ENDIAN).asFloatBuffer()
        assertEquals(-1f, floats[0], 0f)
        assertEquals(1f, floats[1], 0f)
        assertEquals(0.5f / 127.5f, floats[2], 1e-7f)
    }
}
