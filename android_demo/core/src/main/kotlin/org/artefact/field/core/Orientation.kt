package org.artefact.field.core

/**
 * EXIF orientation (tag 0x0112, values 1-8): how the stored pixels must be transformed to show the
 * photo upright, exactly as PIL's `ImageOps.exif_transpose`.
 *
 * The Android app reads the tag with androidx ExifInterface and passes it here, so the crop can be
 * read from the raw (unrotated) bitmap without rotating the whole photo first.
 */
object Orientation {
    const val NORMAL = 1

    private fun checked(orientation: Int): Int = if (orientation in 1..8) orientation else NORMAL

    /** True when the upright image has width and height swapped (orientations 5-8). */
    fun swapsAxes(orientation: Int): Boolean = checked(orientation) >= 5

    /** Size (width, height) of the upright image. */
    fun uprightSize(orientation: Int, width: Int, height: Int): Pair<Int, Int> =
        if (swapsAxes(orientation)) height to width else width to height

    /** The stored-pixel coordinate that lands at upright (x, y); (w, h) is the stored size. */
    fun sourceOf(orientation: Int, x: Int, y: Int, w: Int, h: Int): Pair<Int, Int> = when (checked(orientation)) {
        2 -> (w - 1 - x) to y                 // mirrored horizontally
        3 -> (w - 1 - x) to (h - 1 - y)       // rotated 180
        4 -> x to (h - 1 - y)                 // mirrored vertically
        5 -> y to x                           // transposed
        6 -> y to (h - 1 - x)                 // rotate 90 CW to view
        7 -> (w - 1 - y) to (h - 1 - x)       // transversed
        8 -> (w - 1 - y) to x                 // rotate 90 CCW to view
        else -> x to y
    }

    /** The rectangle of stored pixels that becomes `upright` (a box in upright coordinates). */
    fun sourceBox(orientation: Int, upright: Box, width: Int, height: Int): Box {
        val (x0, y0) = sourceOf(orientation, upright.left, upright.top, width, height)
        val (x1, y1) = sourceOf(orientation, upright.right - 1, upright.bottom - 1, width, height)
        return Box(minOf(x0, x1), minOf(y0, y1), maxOf(x0, x1) + 1, maxOf(y0, y1) + 1)
    }

    /** Make `stored` upright. */
    fun apply(orientation: Int, stored: ArgbImage): ArgbImage {
        if (checked(orientation) == NORMAL) return stored
        val (w, h) = uprightSize(orientation, stored.width, stored.height)
        val out = IntArray(w * h)
        for (y in 0 until h) for (x in 0 until w) {
            val (sx, sy) = sourceOf(orientation, x, y, stored.width, stored.height)
            out[y * w + x] = stored[sx, sy]
        }
        return ArgbImage(w, h, out)
    }
}
