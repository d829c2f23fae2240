package org.artefact.field.core

/**
 * The preprocessing contract of `artefact.contract.Preprocess`, driven by the exported config:
 * upright (EXIF) -> opaque on white -> centre square crop -> PIL bilinear resize -> uint8 RGB NHWC
 * (or `(pixel - mean) / std` float32 for a float model).
 */
class Preprocessor(private val input: InputSpec) {

    /** Python's `round()` (half to even), as used by `Preprocess.crop_box`. */
    private fun pyRound(value: Double): Long {
        val floor = kotlin.math.floor(value)
        val diff = value - floor
        return when {
            diff > 0.5 -> floor.toLong() + 1
            diff < 0.5 -> floor.toLong()
            else -> if (floor.toLong() % 2 == 0L) floor.toLong() else floor.toLong() + 1
        }
    }

    /** The centred square crop of an upright width x height image (`Preprocess.crop_box`). */
    fun cropBox(width: Int, height: Int): Box {
        val side = maxOf(1L, pyRound(minOf(width, height) * input.cropFraction)).toInt()
        val left = (width - side) / 2
        val top = (height - side) / 2
        return Box(left, top, left + side, top + side)
    }

    /**
     * Model-ready pixels from a stored (not yet rotated) photo of size width x height with the given
     * EXIF orientation. `read(box)` returns the stored pixels inside `box` (e.g. `Bitmap.getPixels`),
     * so only the crop region is ever copied out of a large photo.
     */
    fun pixels(width: Int, height: Int, orientation: Int, read: (Box) -> ArgbImage): ArgbImage {
        val (uw, uh) = Orientation.uprightSize(orientation, width, height)
        val crop = cropBox(uw, uh)
        val region = read(Orientation.sourceBox(orientation, crop, width, height))
        val upright = Orientation.apply(orientation, region).opaqueOnWhite()
        return PilResize.bilinear(upright, input.width, input.height)
    }

    /** Same as [pixels] for an image already in memory. */
    fun pixels(stored: ArgbImage, orientation: Int = Orientation.NORMAL): ArgbImage =
        pixels(stored.width, stored.height, orientation) { box -> crop(stored, box) }

    /** The model input bytes: uint8 RGB (1 byte a channel) or little-endian float32 normalised values. */
    fun tensorBytes(pixels: ArgbImage): ByteArray {
        val rgb = pixels.toRgbBytes()
        if (input.dtype == InputSpec.UINT8) return rgb
        val out = java.nio.ByteBuffer.allocate(rgb.size * 4).order(java.nio.ByteOrder.LITTLE_ENDIAN)
        for (i in rgb.indices) {
            val c = i % 3
            out.putFloat(((rgb[i].toInt() and 0xFF).toFloat() - input.mean[c].toFloat()) / input.std[c].toFloat())
        }
        return out.array()
    }

    companion object {
        fun crop(image: ArgbImage, box: Box): ArgbImage {
            val out = IntArray(box.width * box.height)
            for (y in 0 until box.height) {
                System.arraycopy(image.pixels, (box.top + y) * image.width + box.left, out, y * box.width, box.width)
            }
            return ArgbImage(box.width, box.height, out)
        }
    }
}

