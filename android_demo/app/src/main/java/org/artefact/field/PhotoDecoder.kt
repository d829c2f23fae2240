package org.artefact.field

import android.content.ContentResolver
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.net.Uri
import androidx.exifinterface.media.ExifInterface
import org.artefact.field.core.ArgbImage
import org.artefact.field.core.Preprocessor
import java.io.IOException

/** A photo that cannot be used; the message is meant for the screen. */
class PhotoError(message: String) : Exception(message)

/**
 * Decodes a photo (camera capture or gallery pick) into the model input, following the contract:
 * full-resolution decode, EXIF orientation, centre crop, PIL-exact bilinear resize (in core).
 */
object PhotoDecoder {
    private const val MIN_SIDE = 16

    class Prepared(val tensor: ByteArray, val pixels: ArgbImage)

    fun prepare(resolver: ContentResolver, uri: Uri, preprocessor: Preprocessor): Prepared {
        val orientation = try {
            resolver.openInputStream(uri)?.use { ExifInterface(it).getAttributeInt(ExifInterface.TAG_ORIENTATION, ExifInterface.ORIENTATION_NORMAL) }
                ?: ExifInterface.ORIENTATION_NORMAL
        } catch (err: IOException) {
            ExifInterface.ORIENTATION_NORMAL  // no readable EXIF: the pixels are taken as stored
        }
        val bitmap = decode(resolver, uri)
        try {
            if (minOf(bitmap.width, bitmap.height) < MIN_SIDE) {
                throw PhotoError("too small: ${bitmap.width}×${bitmap.height} px, need at least $MIN_SIDE")
            }
            val pixels = preprocessor.pixels(bitmap.width, bitmap.height, orientation) { box ->
                val region = IntArray(box.width * box.height)
                bitmap.getPixels(region, 0, box.width, box.left, box.top, box.width, box.height)
                ArgbImage(box.width, box.height, region)
            }
            return Prepared(preprocessor.tensorBytes(pixels), pixels)
        } finally {
            bitmap.recycle()
        }
    }

    private fun decode(resolver: ContentResolver, uri: Uri): Bitmap {
        val options = BitmapFactory.Options().apply {
            inPreferredConfig = Bitmap.Config.ARGB_8888
            inPremultiplied = false  // keep straight alpha; core composites on white like artefact.images
        }
        val bitmap = try {
            resolver.openInputStream(uri)?.use { BitmapFactory.decodeStream(it, null, options) }
        } catch (err: IOException) {
            throw PhotoError(err.message ?: "cannot open the file")
        } catch (err: SecurityException) {
            throw PhotoError("no permission to read it")
        } catch (err: OutOfMemoryError) {
            throw PhotoError("too large to decode on this device")
        }
        return bitmap ?: throw PhotoError("not an image, or a damaged file")
    }

    /** A small square JPEG-able bitmap of the analysed crop (for the result and the history). */
    fun thumbnail(pixels: ArgbImage, side: Int = 96): Bitmap {
        val full = Bitmap.createBitmap(pixels.pixels, pixels.width, pixels.height, Bitmap.Config.ARGB_8888)
        return Bitmap.createScaledBitmap(full, side, side, true).also { if (it !== full) full.recycle() }
    }
}
