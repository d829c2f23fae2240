// Pure Kotlin/JVM logic shared by the app: preprocessing (PIL-exact), EXIF orientation, top-k,
// threshold, config/label parsing, history. Tested here with JUnit (./gradlew :core:test) and, without
// Gradle, by tests/test_android_core.py through core/jvm-test.sh (kotlinc + JUnit 4).
plugins {
    alias(libs.plugins.kotlin.jvm)
}

java {
    toolchain { languageVersion.set(JavaLanguageVersion.of(17)) }
}

dependencies {
    implementation(libs.gson)
    testImplementation(libs.junit)
}
