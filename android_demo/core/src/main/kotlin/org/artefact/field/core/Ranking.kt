package org.artefact.field.core

import kotlin.math.exp

/** One candidate: output index and its probability. */
data class Match(val index: Int, val probability: Double)

/** The answer shown to the agent: the top matches and whether the best one is confident enough. */
data class Verdict(val matches: List<Match>, val confident: Boolean) {
    val best: Match get() = matches.first()
}

object Ranking {
    /** The k most probable outputs of a log-probability vector, best first (ties: lower index first). */
    fun topK(logProbs: FloatArray, k: Int): List<Match> {
        require(logProbs.isNotEmpty()) { "empty model output" }
        return logProbs.indices
            .sortedWith(compareByDescending<Int> { logProbs[it] }.thenBy { it })
            .take(k.coerceIn(1, logProbs.size))
            .map { Match(it, exp(logProbs[it].toDouble())) }
    }

    /** Top-k plus the "no confident match" decision: confident when the best probability >= threshold. */
    fun decide(logProbs: FloatArray, topK: Int, minProbability: Double): Verdict {
        if (logProbs.any { it.isNaN() }) throw IllegalStateException("model output contains NaN")
        val matches = topK(logProbs, topK)
        return Verdict(matches, matches.first().probability >= minProbability)
    }
}
