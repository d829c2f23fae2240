package org.artefact.field.core

import org.junit.Assert.assertEquals
import org.junit.Test

class HistoryTest {
    private fun entry(t: Long) = HistoryEntry(t, "camera", listOf("apple1" to 0.9, "pear2" to 0.05), true, 42, "q$t.jpg")

    @Test fun `entries round-trip, newest first`() {
        val text = History.append(History.append("", entry(1)), entry(2))
        assertEquals(listOf(entry(2), entry(1)), History.parse(text))
    }

    @Test fun `a corrupt line is skipped and the file is capped`() {
        var text = "{not json\n"
        for (t in 1L..(History.MAX_ENTRIES + 5)) text = History.append(text, entry(t))
        val entries = History.parse(text)
        assertEquals(History.MAX_ENTRIES, entries.size)
        assertEquals(History.MAX_ENTRIES + 5L, entries.first().timeMillis)
        assertEquals(1, History.parse("garbage\n" + History.encode(entry(7))).size)
    }
}
