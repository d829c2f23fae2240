package org.artefact.field

import android.Manifest
import android.content.pm.PackageManager
import android.net.Uri
import android.os.Bundle
import android.os.SystemClock
import android.view.View
import android.widget.Button
import android.widget.ImageView
import android.widget.TextView
import androidx.activity.result.PickVisualMediaRequest
import androidx.activity.result.contract.ActivityResultContracts
import androidx.appcompat.app.AppCompatActivity
import androidx.camera.core.CameraSelector
import androidx.camera.core.ImageCapture
import androidx.camera.core.ImageCaptureException
import androidx.camera.core.Preview
import androidx.camera.lifecycle.ProcessCameraProvider
import androidx.camera.view.PreviewView
import androidx.core.content.ContextCompat
import androidx.lifecycle.lifecycleScope
import androidx.recyclerview.widget.LinearLayoutManager
import androidx.recyclerview.widget.RecyclerView
import kotlinx.coroutines.CancellationException
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext
import org.artefact.field.core.Answer
import org.artefact.field.core.AssetError
import org.artefact.field.core.HistoryEntry
import org.artefact.field.core.Preprocessor
import java.io.File

/**
 * One screen: camera preview with Capture, a Gallery pick (photo picker), the top-k result and the
 * local history. All failures (assets, camera, photo) end as a message in the status line.
 */
class MainActivity : AppCompatActivity() {
    private lateinit var status: TextView
    private lateinit var captureButton: Button
    private lateinit var galleryButton: Button
    private lateinit var resultPanel: View
    private lateinit var historyList: RecyclerView
    private lateinit var history: HistoryStore

    private var classifier: Classifier? = null
    private var preprocessor: Preprocessor? = null
    private var matchAdapter: MatchAdapter? = null
    private var imageCapture: ImageCapture? = null

    private val askCamera = registerForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
        if (granted) startCamera() else showError(getString(R.string.camera_denied))
    }

    private val pickPhoto = registerForActivityResult(ActivityResultContracts.PickVisualMedia()) { uri ->
        if (uri != null) analyse(uri, "gallery")
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        status = findViewById(R.id.status)
        captureButton = findViewById(R.id.capture)
        galleryButton = findViewById(R.id.gallery)
        resultPanel = findViewById(R.id.result_panel)
        historyList = findViewById(R.id.history_list)
        history = HistoryStore(File(filesDir, "history"))
        findViewById<RecyclerView>(R.id.matches).layoutManager = LinearLayoutManager(this)
        historyList.layoutManager = LinearLayoutManager(this)
        historyList.adapter = HistoryAdapter(history)

        captureButton.setOnClickListener { capture() }
        galleryButton.setOnClickListener {
            pickPhoto.launch(PickVisualMediaRequest(ActivityResultContracts.PickVisualMedia.ImageOnly))
        }
        findViewById<Button>(R.id.history).setOnClickListener { toggleHistory() }
        loadModel()
    }

    override fun onDestroy() {
        classifier?.close()
        super.onDestroy()
    }

    private fun loadModel() {
        lifecycleScope.launch {
            try {
                val loaded = withContext(Dispatchers.IO) {
                    Classifier.load(assets, threads = Runtime.getRuntime().availableProcessors().coerceIn(1, 4))
                }
                classifier = loaded
                preprocessor = Preprocessor(loaded.config.input)
                matchAdapter = MatchAdapter(assets).also { findViewById<RecyclerView>(R.id.matches).adapter = it }
                showInfo(getString(R.string.ready, loaded.config.gallery?.objects?.size ?: loaded.config.numClasses))
                galleryButton.isEnabled = true
                requestCamera()
            } catch (err: AssetError) {
                showError(err.message ?: "the model assets cannot be used")
            } catch (err: Exception) {  // unreadable APK assets, interpreter failures: a message, never a crash
                showError("Cannot start: ${err.message ?: err.javaClass.simpleName}")
            }
        }
    }

    private fun requestCamera() {
        if (ContextCompat.checkSelfPermission(this, Manifest.permission.CAMERA) == PackageManager.PERMISSION_GRANTED) {
            startCamera()
        } else {
            askCamera.launch(Manifest.permission.CAMERA)
        }
    }

    private fun startCamera() {
        val future = ProcessCameraProvider.getInstance(this)
        future.addListener({
            try {
                val provider = future.get()
                val preview = Preview.Builder().build().also { it.setSurfaceProvider(findViewById<PreviewView>(R.id.preview).surfaceProvider) }
                val capture = ImageCapture.Builder().setCaptureMode(ImageCapture.CAPTURE_MODE_MAXIMIZE_QUALITY).build()
                provider.unbindAll()
                provider.bindToLifecycle(this, CameraSelector.DEFAULT_BACK_CAMERA, preview, capture)
                imageCapture = capture
                captureButton.isEnabled = true
            } catch (err: Exception) {  // no back camera, camera in use, provider failure
                showError(getString(R.string.camera_unavailable, err.message ?: err.javaClass.simpleName))
            }
        }, ContextCompat.getMainExecutor(this))
    }

    private fun capture() {
        val capture = imageCapture ?: return
        val file = File(cacheDir, "capture.jpg")
        captureButton.isEnabled = false
        showInfo(getString(R.string.analysing))
        capture.takePicture(ImageCapture.OutputFileOptions.Builder(file).build(), ContextCompat.getMainExecutor(this),
            object : ImageCapture.OnImageSavedCallback {
                override fun onImageSaved(output: ImageCapture.OutputFileResults) {
                    captureButton.isEnabled = true
                    analyse(Uri.fromFile(file), "camera")  // CameraX writes the EXIF orientation; the decoder applies it
                }

                override fun onError(exception: ImageCaptureException) {
                    captureButton.isEnabled = true
                    showError(getString(R.string.capture_failed, exception.message ?: "camera error"))
                }
            })
    }

    private fun analyse(uri: Uri, source: String) {
        val classifier = classifier ?: return
        val preprocessor = preprocessor ?: return
        showInfo(getString(R.string.analysing))
        lifecycleScope.launch {
            try {
                val start = SystemClock.elapsedRealtime()
                val (prepared, outputs) = withContext(Dispatchers.Default) {
                    val prepared = PhotoDecoder.prepare(contentResolver, uri, preprocessor)
                    prepared to classifier.run(prepared.tensor)
                }
                val totalMs = SystemClock.elapsedRealtime() - start
                val inferenceMs = outputs.millis
                val answer = classifier.recognizer.answer(outputs.logProbs, outputs.embedding)
                val thumbnail = PhotoDecoder.thumbnail(prepared.pixels)

                val verdictView = findViewById<TextView>(R.id.verdict)
                verdictView.text = verdictText(answer)
                verdictView.setTextColor(getColor(if (answer.confident) R.color.ok else R.color.unsure))
                findViewById<TextView>(R.id.timing).text = getString(R.string.timing, inferenceMs.toInt(), totalMs.toInt())
                findViewById<ImageView>(R.id.query).setImageBitmap(thumbnail)
                matchAdapter?.show(answer.candidates)
                historyList.visibility = View.GONE
                resultPanel.visibility = View.VISIBLE
                status.text = ""

                val now = System.currentTimeMillis()  // saved after showing: a full disk must not hide the answer
                val entry = HistoryEntry(now, source, answer.candidates.map { it.objectId to it.score },
                    answer.confident, inferenceMs, "q$now.jpg")
                withContext(Dispatchers.IO) { history.add(entry, thumbnail) }
            } catch (err: PhotoError) {
                showError(getString(R.string.cannot_decode, err.message))
            } catch (err: OutOfMemoryError) {  // a huge photo after decoding (crop copies): a message, never a crash
                showError(getString(R.string.cannot_decode, "too large for this phone's memory"))
            } catch (err: CancellationException) {
                throw err  // the activity is gone: nothing to show
            } catch (err: Exception) {  // NaN output, an interpreter failure, history not saved
                showError("Analysis failed: ${err.message ?: err.javaClass.simpleName}")
            }
        }
    }

    /** "Best match: …" or "No confident match: …", naming the number the decision used (probability or similarity). */
    private fun verdictText(answer: Answer): String {
        val best = answer.best
        val similar = best.similarity?.let(::percent)
        val threshold = percent(answer.threshold)
        return when {
            best.enrolled && answer.confident -> getString(R.string.best_match_enrolled, best.objectId, similar)
            best.enrolled -> getString(R.string.no_confident_match_enrolled, best.objectId, similar, threshold)
            similar == null && answer.confident -> getString(R.string.best_match, best.objectId, percent(best.score))
            similar == null -> getString(R.string.no_confident_match, percent(best.score), threshold)
            answer.confident -> getString(R.string.best_match_gallery, best.objectId, percent(best.score), similar)
            else -> getString(R.string.no_confident_match_gallery, best.objectId, similar, percent(best.score), threshold)
        }
    }

    private fun toggleHistory() {
        if (historyList.visibility == View.VISIBLE) {
            historyList.visibility = View.GONE
            return
        }
        lifecycleScope.launch {
            val entries = withContext(Dispatchers.IO) { history.entries() }
            (historyList.adapter as HistoryAdapter).show(entries)
            resultPanel.visibility = View.GONE
            historyList.visibility = View.VISIBLE
            if (entries.isEmpty()) showInfo(getString(R.string.no_history))
        }
    }

    private fun showInfo(message: String) {
        status.setTextColor(getColor(R.color.muted))
        status.text = message
    }

    private fun showError(message: String) {
        status.setTextColor(getColor(R.color.error))
        status.text = message
    }
}
