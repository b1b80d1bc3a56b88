"""edgeship profile: per-op instruction counts and estimated cycles on emulated Cortex-M cores."""
