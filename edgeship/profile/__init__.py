"""edgeship profile: per-op instruction counts and estimated cycles on emulated Cortex-M cores.

The generated C (edgeship.convert.codegen) is compiled for a core (targets.py), linked into a
bare-metal harness (harness/) and run once in unicorn (emulator.py); every executed basic
block is costed with the core's instruction-timing table (cycle_model.py, an estimate from
Arm's manuals, never a measurement). run.profile_model is the library call (and ProfileConfig
its options; the command is edgeship/commands/profile.py); report.py the JSON, table and gate
arithmetic.
"""
