package org.artefact.field.core

import com.google.gson.JsonArray
import com.google.gson.JsonObject
import com.google.gson.JsonParser

/** One past query, as kept on the device (newest first in [History]). */
data class HistoryEntry(
    val timeMillis: Long,
    val source: String,
    val matches: List<Pair<String, Double>>,
    val confident: Boolean,
    val inferenceMillis: Long,
    val imageFile: String?,
) {
    val bestId: String get() = matches.firstOrNull()?.first ?: ""
}

/**
 * The local query history: one JSON object a line, newest last in the file, capped in length.
 * Lines that cannot be read (a crash mid-write) are skipped, never fatal.
 */
object History {
    const val MAX_ENTRIES = 200

    fun encode(entry: HistoryEntry): String {
        val o = JsonObject()
        o.addProperty("time", entry.timeMillis)
        o.addProperty("source", entry.source)
        o.addProperty("confident", entry.confident)
        o.addProperty("inference_ms", entry.inferenceMillis)
        entry.imageFile?.let { o.addProperty("image", it) }
        val arr = JsonArray()
        for ((id, p) in entry.matches) arr.add(JsonObject().apply { addProperty("object_id", id); addProperty("probability", p) })
        o.add("matches", arr)
        return o.toString()
    }

    fun decode(line: String): HistoryEntry? = try {
        val o = JsonParser.parseString(line).asJsonObject
        HistoryEntry(
            timeMillis = o.get("time").asLong,
            source = o.get("source").asString,
            matches = o.getAsJsonArray("matches").map { it.asJsonObject.let { m -> m.get("object_id").asString to m.get("probability").asDouble } },
            confident = o.get("confident").asBoolean,
            inferenceMillis = o.get("inference_ms").asLong,
            imageFile = o.get("image")?.asString,
        )
    } catch (err: RuntimeException) {
        null
    }

    /** Entries of a history file's text, newest first. */
    fun parse(text: String): List<HistoryEntry> = text.lineSequence().filter { it.isNotBlank() }.mapNotNull(::decode).toList().asReversed()

    /** File text after appending `entry`, keeping at most [MAX_ENTRIES] (oldest dropped). */
    fun append(text: String, entry: HistoryEntry): String {
        val lines = text.lineSequence().filter { it.isNotBlank() }.toMutableList()
        lines.add(encode(entry))
        return lines.takeLast(MAX_ENTRIES).joinToString("\n", postfix = "\n")
    }
}
