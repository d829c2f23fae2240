package org.artefact.field.core

/** An image as packed 0xAARRGGBB ints, row-major (what Android's `Bitmap.getPixels` returns). */
class ArgbImage(val width: Int, val height: Int, val pixels: IntArray) {
    init {
        require(width > 0 && height > 0) { "image size must be positive, got ${width}x$height" }
        require(pixels.size == width * height) { "expected ${width * height} pixels, got ${pixels.size}" }
    }

    operator fun get(x: Int, y: Int): Int = pixels[y * width + x]

    /** The same image with every translucent pixel composited on white (as `artefact.images.load_image`). */
    fun opaqueOnWhite(): ArgbImage {
        if (pixels.all { it ushr 24 == 0xFF }) return this
        val out = IntArray(pixels.size) { i ->
            val p = pixels[i]
            val a = p ushr 24
            fun blend(c: Int) = (c * a + 255 * (255 - a) + 127) / 255
            (0xFF shl 24) or (blend((p shr 16) and 0xFF) shl 16) or (blend((p shr 8) and 0xFF) shl 8) or blend(p and 0xFF)
        }
        return ArgbImage(width, height, out)
    }

    /** Interleaved RGB bytes (HWC), alpha dropped. */
    fun toRgbBytes(): ByteArray {
        val out = ByteArray(pixels.size * 3)
        for (i in pixels.indices) {
            val p = pixels[i]
            out[3 * i] = (p shr 16).toByte()
            out[3 * i + 1] = (p shr 8).toByte()
            out[3 * i + 2] = p.toByte()
        }
        return out
    }

    companion object {
        /** From interleaved RGB (3 bytes a pixel) or RGBA (4 bytes a pixel) data. */
        fun fromInterleaved(width: Int, height: Int, data: ByteArray, channels: Int): ArgbImage {
            require(channels == 3 || channels == 4) { "channels must be 3 or 4, got $channels" }
            require(data.size == width * height * channels) { "expected ${width * height * channels} bytes, got ${data.size}" }
            val pixels = IntArray(width * height) { i ->
                val o = i * channels
                val a = if (channels == 4) data[o + 3].toInt() and 0xFF else 0xFF
                (a shl 24) or ((data[o].toInt() and 0xFF) shl 16) or ((data[o + 1].toInt() and 0xFF) shl 8) or (data[o + 2].toInt() and 0xFF)
            }
            return ArgbImage(width, height, pixels)
        }
    }
}

/** An integer rectangle: [left, right) x [top, bottom). */
data class Box(val left: Int, val top: Int, val right: Int, val bottom: Int) {
    val width: Int get() = right - left
    val height: Int get() = bottom - top
}
