package org.artefact.field.core

/**
 * One row of the result list, whichever ranking produced it. `probability`: the classifier head's
 * (null for an enrolled object); `similarity`: cosine to the gallery (null without a gallery).
 */
data class Candidate(
    val objectId: String,
    val collection: String,
    val thumbnail: String,
    val probability: Double?,
    val similarity: Double?,
    val enrolled: Boolean,
) {
    /** The number the decision compares with its threshold: head probability, else similarity. */
    val score: Double get() = probability ?: similarity ?: 0.0
}

/** What the screen shows: candidates best first, the decision, and the threshold it applied to the best. */
data class Answer(val candidates: List<Candidate>, val confident: Boolean, val threshold: Double) {
    val best: Candidate get() = candidates.first()
}

/** Model outputs -> [Answer]: by the gallery when the assets have one, otherwise by the head's top-k. */
class Recognizer(private val config: FieldConfig, private val gallery: Gallery?) {
    init {
        require((gallery == null) == (config.gallery == null)) { "the config's gallery block and the loaded gallery go together" }
    }

    /** `embedding` is the model's embedding output; needed (only) with a gallery. */
    fun answer(logProbs: FloatArray, embedding: FloatArray?): Answer {
        if (logProbs.any { it.isNaN() }) throw IllegalStateException("model output contains NaN")
        return if (gallery == null) byHead(logProbs) else byGallery(gallery, logProbs, requireNotNull(embedding) { "no embedding output" })
    }

    private fun byHead(logProbs: FloatArray): Answer {
        val verdict = Ranking.decide(logProbs, config.topK, config.minProbability)
        val candidates = verdict.matches.map { m ->
            val label = config.labels[m.index]
            Candidate(label.objectId, label.collection, label.thumbnail, m.probability, null, enrolled = false)
        }
        return Answer(candidates, verdict.confident, config.minProbability)
    }

    private fun byGallery(gallery: Gallery, logProbs: FloatArray, embedding: FloatArray): Answer {
        val ranking = gallery.rank(embedding, logProbs, config.topK, config.minProbability)
        val candidates = ranking.matches.map { m ->
            val o = gallery.spec.objects[m.objectIndex]
            Candidate(o.objectId, o.collection, o.thumbnail, o.labelIndex?.let { kotlin.math.exp(logProbs[it].toDouble()) },
                m.similarity, o.enrolled)
        }
        val threshold = if (candidates.first().enrolled) gallery.spec.minSimilarity else config.minProbability
        return Answer(candidates, ranking.confident, threshold)
    }
}
