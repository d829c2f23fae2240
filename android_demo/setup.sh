#!/usr/bin/env bash
# Installs what the field-app checks need, into gitignored folders; idempotent, and offline-safe once
# done (every step is skipped when its result is already there).
#   Debian packages: chromium (PWA end-to-end test), junit4 + libgoogle-gson-java (JVM tests of core/)
#   android_demo/.tools/node_modules: kotlin-compiler 2.4.20 (kotlinc for core/)
#   android_demo/pwa/node_modules: @litertjs/core 2.5.3 (the PWA runtime), playwright-core (test driver)
# Needs node/npm and, for the Debian packages, root (apt-get); without root it says what is missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
KOTLIN_VERSION=2.4.20

need_apt=()
[[ -x /usr/bin/chromium ]] || need_apt+=(chromium)
[[ -f /usr/share/java/junit4.jar ]] || need_apt+=(junit4)
[[ -f /usr/share/java/gson.jar ]] || need_apt+=(libgoogle-gson-java)
command -v node >/dev/null && command -v npm >/dev/null || need_apt+=(nodejs npm)
command -v java >/dev/null || need_apt+=(openjdk-17-jdk-headless)
if (( ${#need_apt[@]} )); then
  if [[ $(id -u) -eq 0 ]]; then
    echo "setup: apt-get install ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "setup: missing Debian packages (run as root: apt-get install ${need_apt[*]})" >&2
    exit 1
  fi
fi

kotlinc="$here/.tools/node_modules/kotlin-compiler/bin/kotlinc"
if [[ ! -x "$kotlinc" ]] || ! grep -q "\"version\": \"$KOTLIN_VERSION\"" "$here/.tools/node_modules/kotlin-compiler/package.json"; then
  echo "setup: npm install kotlin-compiler@$KOTLIN_VERSION into android_demo/.tools"
  mkdir -p "$here/.tools"
  npm install --prefix "$here/.tools" --no-audit --no-fund --no-save "kotlin-compiler@$KOTLIN_VERSION" >/dev/null
fi

if [[ ! -d "$here/pwa/node_modules/@litertjs/core/wasm" || ! -d "$here/pwa/node_modules/playwright-core" ]]; then
  echo "setup: npm ci in android_demo/pwa"
  (cd "$here/pwa" && npm ci --no-audit --no-fund >/dev/null)
fi
echo "setup: android_demo tools ready (kotlinc $KOTLIN_VERSION, chromium, @litertjs/core, playwright-core)"
