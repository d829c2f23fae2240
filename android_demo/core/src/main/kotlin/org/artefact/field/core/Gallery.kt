package org.artefact.field.core

import kotlin.math.exp
import kotlin.math.sqrt

/** One gallery candidate: the object's index in [GallerySpec.objects] and its best row's cosine similarity. */
data class GalleryMatch(val objectIndex: Int, val similarity: Double)

/** Gallery objects best first and the "no confident match" decision (see [Gallery.rank]). */
data class GalleryRanking(val matches: List<GalleryMatch>, val confident: Boolean)

/**
 * The exported embedding gallery (gallery.bin: `rows x dim` int8, row-major), ranked by cosine
 * similarity to the model's embedding output; the same rules as `artefact_export.android.gallery_ranking`.
 */
class Gallery private constructor(val spec: GallerySpec, private val values: ByteArray) {
    private val rowNorms = DoubleArray(spec.rows) { r ->
        var sum = 0.0
        for (i in r * spec.dim until (r + 1) * spec.dim) sum += values[i].toDouble() * values[i]
        sqrt(sum)
    }

    /** Cosine similarity of `embedding` to every row; 0 where either vector is zero. */
    fun rowSimilarities(embedding: FloatArray): DoubleArray {
        require(embedding.size == spec.dim) { "embedding has ${embedding.size} values, the gallery ${spec.dim}" }
        check(embedding.none { it.isNaN() }) { "model embedding contains NaN" }
        val norm = sqrt(embedding.sumOf { it.toDouble() * it })
        val q = DoubleArray(spec.dim) { if (norm > 0.0) embedding[it] / norm else 0.0 }
        return DoubleArray(spec.rows) { r ->
            var dot = 0.0
            val base = r * spec.dim
            for (i in 0 until spec.dim) dot += q[i] * values[base + i]
            if (rowNorms[r] > 0.0) dot / rowNorms[r] else 0.0
        }
    }

    /**
     * Objects by their best row's similarity, best first (ties: lower object index), at most `topK`.
     * Confident when the best is enrolled and reaches `min_similarity`, or is a trained object whose
     * head probability `exp(logProbs[label_index])` reaches `minProbability`.
     */
    fun rank(embedding: FloatArray, logProbs: FloatArray, topK: Int, minProbability: Double): GalleryRanking {
        val sims = rowSimilarities(embedding)
        val scores = spec.objects.map { o -> (o.firstRow until o.firstRow + o.rows).maxOf { sims[it] } }
        val matches = scores.indices.sortedWith(compareByDescending<Int> { scores[it] }.thenBy { it })
            .take(topK.coerceIn(1, scores.size))
            .map { GalleryMatch(it, scores[it]) }
        val best = matches.first()
        val labelIndex = spec.objects[best.objectIndex].labelIndex
        val confident = if (labelIndex == null) best.similarity >= spec.minSimilarity
        else exp(logProbs[labelIndex].toDouble()) >= minProbability
        return GalleryRanking(matches, confident)
    }

    companion object {
        /** The gallery of `spec` from the bytes of its file; checks size and sha256. */
        fun load(spec: GallerySpec, bytes: ByteArray): Gallery {
            if (bytes.size.toLong() != spec.rows.toLong() * spec.dim) {
                throw AssetError("${spec.file}: ${bytes.size} bytes but the config says ${spec.rows} rows x ${spec.dim} (assets from two exports?)")
            }
            if (sha256Hex(bytes) != spec.sha256) {
                throw AssetError("${spec.file} does not match gallery.sha256 in ${FieldConfig.FILE} (assets from two exports?)")
            }
            return Gallery(spec, bytes)
        }
    }
}
