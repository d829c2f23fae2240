#!/usr/bin/env bash
# Compile the core module and its JUnit tests with kotlinc and run them (no Gradle, no Android SDK).
# Tools come from android_demo/setup.sh. Output: JUnit's report; exit status non-zero on failure.
# The build is cached in core/build/jvm-test keyed by the sources' hash.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tools="$here/../.tools"
kotlinc="$tools/node_modules/kotlin-compiler/bin/kotlinc"
stdlib="$tools/node_modules/kotlin-compiler/lib/kotlin-stdlib.jar"
jars="/usr/share/java/junit4.jar:/usr/share/java/hamcrest-core.jar:/usr/share/java/gson.jar"
for f in "$kotlinc" /usr/share/java/junit4.jar /usr/share/java/gson.jar; do
  [[ -e "$f" ]] || { echo "missing $f: run android_demo/setup.sh" >&2; exit 3; }
done

out="$here/build/jvm-test"
hash="$(cd "$here" && find src -name '*.kt' -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
if [[ ! -f "$out/$hash.ok" ]]; then
  rm -rf "$out" && mkdir -p "$out"
  # one compiler run for main and test sources: the JVM start-up dominates on a small module
  "$kotlinc" -nowarn -jvm-target 17 -cp "$jars" -d "$out/classes.jar" $(find "$here/src" -name '*.kt')
  touch "$out/$hash.ok"
fi
classes=$(cd "$here/src/test/kotlin" && find . -name '*Test.kt' | sed 's|^\./||; s|\.kt$||; s|/|.|g' | sort)
exec java -cp "$out/classes.jar:$stdlib:$jars" org.junit.runner.JUnitCore $classes
