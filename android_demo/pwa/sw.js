// Offline cache: the app shell is cached at install; everything else (LiteRT wasm, model, gallery.bin
// when the assets have an embedding gallery, thumbnails) is cached on first use, and app.js also puts
// them all in after a start-up (keepOffline). The config and labels are network-first so a re-export is
// picked up when online; model, gallery.bin and thumbnails are requested with a ?v=<hash> so a new
// export gets new cache keys. Bump CACHE (and OFFLINE_CACHE in app.js) when the shell changes.
const CACHE = 'artefact-v2';
const SHELL = [
  './', './index.html', './styles.css', './manifest.webmanifest', './icons/icon-192.png', './icons/icon-512.png',
  './src/app.js', './src/config.js', './src/preprocess.js', './src/ranking.js',
  './node_modules/@litertjs/core/dist/index.js', './node_modules/@litertjs/wasm-utils/dist/index.js',
];
const NETWORK_FIRST = ['assets/artefact_config.json', 'assets/labels.txt'];

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

async function networkFirst(request) {
  const cache = await caches.open(CACHE);
  try {
    const response = await fetch(request);
    if (response.ok) await cache.put(request, response.clone());
    return response;
  } catch (err) {
    return (await cache.match(request)) || Response.error();
  }
}

async function cacheFirst(request) {
  const cache = await caches.open(CACHE);
  const hit = await cache.match(request);
  if (hit) return hit;
  const response = await fetch(request);
  if (response.ok) await cache.put(request, response.clone());
  return response;
}

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== 'GET' || url.origin !== self.location.origin) return;
  const networkFirstHit = NETWORK_FIRST.some((p) => url.pathname.endsWith(p));
  event.respondWith(networkFirstHit ? networkFirst(event.request) : cacheFirst(event.request));
});
