// End-to-end check of the PWA in headless Chromium (driven by tests/test_pwa.py).
// Usage: node e2e.mjs <plan.json>; prints one JSON report on stdout.
// plan: {base, images: [paths], chromium, user_data_dir, screenshot?,
//        bad_file?, missing_base?, mismatch_base?, bad_gallery_base?}: the optional ones add the
//        bad-input, camera and offline checks (when bad_file is given) and the broken-asset start-ups.
import { readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

const plan = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const TIMEOUT = 90_000;

async function settled(page, accept) {
  await page.waitForFunction((states) => states.includes(document.body.dataset.state), accept, { timeout: TIMEOUT });
  return page.evaluate(() => ({ state: document.body.dataset.state, status: document.getElementById('status').textContent }));
}

async function classify(page, path) {
  const before = await page.evaluate(() => window.artefact.results.length);
  await page.setInputFiles('#file', path);
  await page.waitForFunction((n) => window.artefact.results.length > n || document.body.dataset.state === 'error', before, { timeout: TIMEOUT });
  return page.evaluate((n) => {
    const r = window.artefact.results[n];
    if (!r) return { error: document.getElementById('status').textContent };
    return { top: r.matches.map((m) => m.index), probs: r.matches.map((m) => m.probability),
      similarities: r.matches.map((m) => m.similarity), enrolled: r.matches.map((m) => m.enrolled), confident: r.confident,
      inference_ms: r.inferenceMs, preprocess_ms: r.preprocessMs,
      shown: [...document.querySelectorAll('#matches li b')].map((b) => b.textContent),
      verdict: document.getElementById('verdict').textContent };
  }, before);
}

const context = await chromium.launchPersistentContext(plan.user_data_dir, {
  executablePath: plan.chromium,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--use-fake-device-for-media-stream'],
});
const report = { console: [] };
try {
  const page = await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error') report.console.push(m.text()); });
  page.on('pageerror', (e) => report.console.push(`pageerror: ${e.message}`));

  const t0 = Date.now();
  await page.goto(plan.base + 'index.html');
  report.start = await settled(page, ['ready', 'error']);
  report.start_ms = Date.now() - t0;
  report.outputs = await page.evaluate(() => window.artefact.model
    && { details: window.artefact.model.getOutputDetails().map((d) => ({ name: d.name, shape: [...d.shape] })), slots: window.artefact.slots });
  report.images = [];
  if (report.start.state === 'ready') {
    for (const path of plan.images) report.images.push(await classify(page, path));
    report.history_items = await page.locator('#history li').count();
    if (plan.screenshot) await page.screenshot({ path: plan.screenshot, fullPage: true });
  }
  if (report.start.state === 'ready' && plan.bad_file) {
    report.bad_file = await classify(page, plan.bad_file);
    // a (fake) camera exists but permission is refused, then granted: preview -> capture -> result
    await page.click('#open-camera');
    report.camera_denied = await settled(page, ['error', 'camera']);
    await context.grantPermissions(['camera'], { origin: new URL(plan.base).origin });
    await page.click('#open-camera');
    report.camera_granted = await settled(page, ['error', 'camera']);
    if (report.camera_granted.state === 'camera') {
      await page.waitForFunction(() => document.getElementById('video').videoWidth > 0, null, { timeout: TIMEOUT });
      const before = await page.evaluate(() => window.artefact.results.length);
      await page.click('#capture');
      await page.waitForFunction((n) => window.artefact.results.length > n || document.body.dataset.state === 'error', before, { timeout: TIMEOUT });
      report.camera_result = await page.evaluate(() => {
        const r = window.artefact.results.at(-1);
        return { origin: r.origin, top: r.matches.map((m) => m.index), camera_open: !document.getElementById('camera').hidden };
      });
    }
    // offline: the service worker must serve the app, the wasm runtime and the model
    await page.waitForFunction(() => window.artefact.offlineReady === true, null, { timeout: TIMEOUT });
    await context.setOffline(true);
    await page.reload();
    report.offline_start = await settled(page, ['ready', 'error']);
    if (report.offline_start.state === 'ready') report.offline_image = await classify(page, plan.images[0]);
    await context.setOffline(false);
  }
  for (const key of ['missing', 'mismatch', 'bad_gallery'].filter((k) => plan[`${k}_base`])) {
    const other = await context.newPage();
    await other.goto(plan[`${key}_base`] + 'index.html?nosw');
    report[key] = await settled(other, ['ready', 'error']);
    await other.close();
  }
} finally {
  await context.close();
}
process.stdout.write(JSON.stringify(report) + '\n');
