package org.artefact.field

import android.content.res.AssetManager
import android.graphics.BitmapFactory
import android.text.format.DateFormat
import android.view.LayoutInflater
import android.view.View
import android.view.ViewGroup
import android.widget.ImageView
import android.widget.ProgressBar
import android.widget.TextView
import androidx.recyclerview.widget.RecyclerView
import org.artefact.field.core.Candidate
import org.artefact.field.core.HistoryEntry
import java.io.IOException
import java.util.Date
import java.util.Locale

fun percent(p: Double): String = String.format(Locale.getDefault(), if (p >= 0.995 || p < 0.001) "%.0f%%" else "%.1f%%", 100 * p)

/**
 * The top-k list: thumbnail, object id (marked when enrolled), collection (+ gallery similarity) and the
 * number the decision uses (head probability; similarity for an enrolled object).
 */
class MatchAdapter(private val assets: AssetManager) : RecyclerView.Adapter<MatchAdapter.Holder>() {

    class Holder(view: View) : RecyclerView.ViewHolder(view) {
        val thumb: ImageView = view.findViewById(R.id.thumb)
        val title: TextView = view.findViewById(R.id.title)
        val collection: TextView = view.findViewById(R.id.collection)
        val bar: ProgressBar = view.findViewById(R.id.bar)
        val percent: TextView = view.findViewById(R.id.percent)
    }

    private var matches: List<Candidate> = emptyList()

    fun show(matches: List<Candidate>) {
        this.matches = matches
        notifyDataSetChanged()
    }

    override fun onCreateViewHolder(parent: ViewGroup, viewType: Int) =
        Holder(LayoutInflater.from(parent.context).inflate(R.layout.item_match, parent, false))

    override fun getItemCount() = matches.size

    override fun onBindViewHolder(holder: Holder, position: Int) {
        val match = matches[position]
        val context = holder.itemView.context
        holder.title.text = context.getString(if (match.enrolled) R.string.match_row_enrolled else R.string.match_row, position + 1, match.objectId)
        val collection = match.collection.ifEmpty { "—" }
        holder.collection.text = match.similarity?.let { context.getString(R.string.match_similarity, collection, percent(it)) } ?: collection
        holder.bar.progress = (1000 * match.score).toInt().coerceIn(0, 1000)
        holder.percent.text = percent(match.score)
        val thumb = try {
            assets.open(match.thumbnail).use { BitmapFactory.decodeStream(it) }
        } catch (err: IOException) {
            null  // a missing thumbnail is shown as a blank square, never a crash
        }
        holder.thumb.setImageBitmap(thumb)
    }
}

/** Past queries, newest first. */
class HistoryAdapter(private val store: HistoryStore) : RecyclerView.Adapter<HistoryAdapter.Holder>() {

    class Holder(view: View) : RecyclerView.ViewHolder(view) {
        val thumb: ImageView = view.findViewById(R.id.thumb)
        val text: TextView = view.findViewById(R.id.text)
    }

    private var entries: List<HistoryEntry> = emptyList()

    fun show(entries: List<HistoryEntry>) {
        this.entries = entries
        notifyDataSetChanged()
    }

    override fun onCreateViewHolder(parent: ViewGroup, viewType: Int) =
        Holder(LayoutInflater.from(parent.context).inflate(R.layout.item_history, parent, false))

    override fun getItemCount() = entries.size

    override fun onBindViewHolder(holder: Holder, position: Int) {
        val e = entries[position]
        val context = holder.itemView.context
        val time = DateFormat.getDateFormat(context).format(Date(e.timeMillis)) + " " + DateFormat.getTimeFormat(context).format(Date(e.timeMillis))
        val best = e.matches.firstOrNull()
        val answer = when {
            best == null -> "—"
            e.confident -> "${best.first} ${percent(best.second)}"
            else -> "no confident match (${best.first}? ${percent(best.second)})"
        }
        holder.text.text = "$time · ${e.source} · $answer · ${e.inferenceMillis} ms"
        holder.thumb.setImageBitmap(store.image(e)?.let { BitmapFactory.decodeFile(it.path) })
    }
}
