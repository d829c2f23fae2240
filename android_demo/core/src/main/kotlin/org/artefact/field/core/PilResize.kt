package org.artefact.field.core

import kotlin.math.ceil

/**
 * Pillow's `Image.resize(size, Image.BILINEAR)` for 8-bit RGB, reproduced bit for bit.
 *
 * Pillow resamples separably (horizontal pass, then vertical) with a triangle filter whose support
 * grows with the downscale factor (so it antialiases), fixed-point weights of 22 fractional bits and
 * rounding/clamping to 8 bits after each pass (src/libImaging/Resample.c). Any other bilinear
 * (Android's `Bitmap.createScaledBitmap`, canvas drawImage) gives a different tensor.
 */
object PilResize {
    private const val PRECISION_BITS = 32 - 8 - 2
    private const val HALF = 1 shl (PRECISION_BITS - 1)

    /** Filter taps for one axis: for output i, weights[i*ksize + k] apply to input start[i] + k (count[i] taps). */
    private class Taps(val ksize: Int, val start: IntArray, val count: IntArray, val weights: IntArray)

    private fun triangle(x: Double): Double {
        val a = if (x < 0.0) -x else x
        return if (a < 1.0) 1.0 - a else 0.0
    }

    private fun taps(inSize: Int, outSize: Int): Taps {
        val scale = inSize.toDouble() / outSize
        val filterScale = if (scale < 1.0) 1.0 else scale
        val support = 1.0 * filterScale
        val ksize = ceil(support).toInt() * 2 + 1
        val start = IntArray(outSize)
        val count = IntArray(outSize)
        val weights = IntArray(outSize * ksize)
        val k = DoubleArray(ksize)
        for (i in 0 until outSize) {
            val center = (i + 0.5) * scale
            val inv = 1.0 / filterScale
            val lo = maxOf((center - support + 0.5).toInt(), 0)
            val n = minOf((center + support + 0.5).toInt(), inSize) - lo
            var sum = 0.0
            for (x in 0 until n) {
                k[x] = triangle((x + lo - center + 0.5) * inv)
                sum += k[x]
            }
            for (x in 0 until n) {
                val w = if (sum != 0.0) k[x] / sum else k[x]
                weights[i * ksize + x] = if (w < 0) (-0.5 + w * (1 shl PRECISION_BITS)).toInt()
                else (0.5 + w * (1 shl PRECISION_BITS)).toInt()
            }
            start[i] = lo
            count[i] = n
        }
        return Taps(ksize, start, count, weights)
    }

    private fun clip8(acc: Int): Int {
        val v = acc shr PRECISION_BITS
        return if (v < 0) 0 else if (v > 255) 255 else v
    }

    /** Resize an opaque image to outWidth x outHeight; the alpha channel is set to 255. */
    fun bilinear(src: ArgbImage, outWidth: Int, outHeight: Int): ArgbImage {
        require(outWidth > 0 && outHeight > 0) { "output size must be positive" }
        var image = src
        if (outWidth != src.width) image = horizontal(image, taps(src.width, outWidth))
        if (outHeight != src.height) image = vertical(image, taps(src.height, outHeight))
        return image
    }

    private fun horizontal(src: ArgbImage, t: Taps): ArgbImage {
        val outW = t.start.size
        val out = IntArray(outW * src.height)
        for (y in 0 until src.height) {
            val row = y * src.width
            for (x in 0 until outW) {
                var r = HALF; var g = HALF; var b = HALF
                val base = x * t.ksize
                val first = row + t.start[x]
                for (k in 0 until t.count[x]) {
                    val p = src.pixels[first + k]
                    val w = t.weights[base + k]
                    r += ((p shr 16) and 0xFF) * w
                    g += ((p shr 8) and 0xFF) * w
                    b += (p and 0xFF) * w
                }
                out[y * outW + x] = (0xFF shl 24) or (clip8(r) shl 16) or (clip8(g) shl 8) or clip8(b)
            }
        }
        return ArgbImage(outW, src.height, out)
    }

    private fun vertical(src: ArgbImage, t: Taps): ArgbImage {
        val outH = t.start.size
        val w = src.width
        val out = IntArray(w * outH)
        for (y in 0 until outH) {
            val base = y * t.ksize
            for (x in 0 until w) {
                var r = HALF; var g = HALF; var b = HALF
                for (k in 0 until t.count[y]) {
                    val p = src.pixels[(t.start[y] + k) * w + x]
                    val wt = t.weights[base + k]
                    r += ((p shr 16) and 0xFF) * wt
                    g += ((p shr 8) and 0xFF) * wt
                    b += (p and 0xFF) * wt
                }
                out[y * w + x] = (0xFF shl 24) or (clip8(r) shl 16) or (clip8(g) shl 8) or clip8(b)
            }
        }
        return ArgbImage(w, outH, out)
    }
}
