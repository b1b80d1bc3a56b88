plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "dev.edgeship.digits"
    compileSdk = 35

    defaultConfig {
        applicationId = "dev.edgeship.digits"
        minSdk = 24
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
    }

    // The model is memory-mapped from the APK, which needs it stored uncompressed.
    androidResources {
        noCompress += "tflite"
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions {
        jvmTarget = "17"
    }
}

dependencies {
    // LiteRT (formerly TensorFlow Lite): org.tensorflow.lite.Interpreter, CPU kernels.
    implementation("com.google.ai.edge.litert:litert:1.4.1")
}
