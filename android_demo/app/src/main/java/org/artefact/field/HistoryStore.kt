package org.artefact.field

import android.graphics.Bitmap
import org.artefact.field.core.History
import org.artefact.field.core.HistoryEntry
import java.io.File

/** The local query history in the app's private storage: history.jsonl plus one thumbnail a query. */
class HistoryStore(private val dir: File) {
    private val file = File(dir, "history.jsonl")

    @Synchronized
    fun entries(): List<HistoryEntry> = if (file.isFile) History.parse(file.readText()) else emptyList()

    @Synchronized
    fun add(entry: HistoryEntry, thumbnail: Bitmap) {
        dir.mkdirs()
        entry.imageFile?.let { name -> File(dir, name).outputStream().use { thumbnail.compress(Bitmap.CompressFormat.JPEG, 85, it) } }
        val text = History.append(if (file.isFile) file.readText() else "", entry)
        val tmp = File(dir, "history.jsonl.tmp")
        tmp.writeText(text)
        if (!tmp.renameTo(file)) { file.delete(); tmp.renameTo(file) }
        val kept = History.parse(text).mapNotNull { it.imageFile }.toSet()
        dir.listFiles()?.filter { it.name.endsWith(".jpg") && it.name !in kept }?.forEach { it.delete() }
    }

    fun image(entry: HistoryEntry): File? = entry.imageFile?.let { File(dir, it) }?.takeIf { it.isFile }
}
