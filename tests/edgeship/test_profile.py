"""edgeship profile: the cycle model's arithmetic by hand, the emulated run against TFLite
Micro, determinism, and the regression gate. One tiny int8 model (conv, depthwise, pool,
dense, softmax; untrained weights are enough for counting) keeps it to seconds."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeship.profile.cycle_model import (
    ALU,
    BRANCH,
    DSP,
    LOAD,
    MULTIPLY_ACCUMULATE,
    STORE,
    BlockCost,
    Instruction,
    block_cost,
    decode,
    thumb_disassembler,
)
from edgeship.targets import TARGETS

needs_toolchain = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                                     reason="arm-none-eabi-gcc is not installed "
                                            "(apt-get install gcc-arm-none-eabi)")
needs_emulator = pytest.mark.skipif(
    any(__import__("importlib").util.find_spec(name) is None
        for name in ("unicorn", "capstone", "elftools")),
    reason="unicorn, capstone or pyelftools is not installed")


def assemble(lines: list[str], cpu: str = "cortex-m4") -> bytes:
    """Thumb-2 machine code of a few instructions (arm-none-eabi-as, then the raw .text)."""
    import tempfile

    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        (work / "code.s").write_text("\n".join([".syntax unified", ".thumb", f".cpu {cpu}",
                                                *lines]) + "\n")
        subprocess.run(["arm-none-eabi-as", "-o", str(work / "code.o"), str(work / "code.s")],
                       check=True)
        subprocess.run(["arm-none-eabi-objcopy", "-O", "binary", "-j", ".text",
                        str(work / "code.o"), str(work / "code.bin")], check=True)
        return (work / "code.bin").read_bytes()


# A MAC loop body as codegen's kernels compile it, counted by hand from the M4 table
# (TRM DDI 0439 table 3-1): ldrsb 2, ldrsb pipelined 1, mla 2, smlabb 1, adds 1, cmp 1,
# str 2 (after an ALU op, not pipelined), bne not taken 1 (taken: + P = 2).
LOOP = ["ldrsb r4, [r1], #1", "ldrsb.w r5, [r2], #1", "mla r3, r4, r5, r3",
        "smlabb r6, r4, r5, r6", "adds r0, r0, #1", "cmp r0, r7", "str r3, [r8]",
        "bne.n .-20"]
M4_LOOP_FALL_THROUGH = 2 + 1 + 2 + 1 + 1 + 1 + 2 + 1
M0PLUS_PUSH_POP = ["push {r4, r5, r6, lr}", "ldr r0, [r1]", "ldr r2, [r1, #4]",
                   "muls r0, r2, r0", "str r0, [r3]", "pop {r4, r5, r6, pc}"]
# Cortex-M0+ TRM 3.3: PUSH 1+4, LDR 2, LDR 2 (no pipelining), MULS 1, STR 2, POP with PC 3+4.
M0PLUS_PUSH_POP_CYCLES = 5 + 2 + 2 + 1 + 2 + 7


@needs_toolchain
@needs_emulator
def test_cycle_model_counts_a_hand_counted_m4_loop():
    instructions = decode(assemble(LOOP), 0, thumb_disassembler())
    assert [insn.klass for insn in instructions] == [
        LOAD, LOAD, MULTIPLY_ACCUMULATE, DSP, ALU, ALU, STORE, BRANCH]
    cost = block_cost(instructions, TARGETS["cortex-m4"].timing)
    assert cost.instructions == 8
    assert cost.cycles == M4_LOOP_FALL_THROUGH
    assert cost.taken_extra == 2  # P, the pipeline refill


@needs_toolchain
@needs_emulator
def test_cycle_model_counts_multiple_register_transfers_on_m0plus():
    code = assemble(M0PLUS_PUSH_POP, cpu="cortex-m0plus")
    instructions = decode(code, 0, thumb_disassembler())
    assert instructions[0].registers == 4 and instructions[-1].writes_pc
    cost = block_cost(instructions, TARGETS["cortex-m0plus"].timing)
    # POP {.., pc} ends the block: its refill is the taken cost, paid when control moves.
    assert cost.cycles + cost.taken_extra == M0PLUS_PUSH_POP_CYCLES


def test_block_totals_charge_the_refill_only_when_the_branch_is_taken():
    from edgeship.profile.emulator import _total

    body = [Instruction("ldr", 2, LOAD), Instruction("adds", 2, ALU),
            Instruction("b", 2, BRANCH, writes_pc=True, conditional=True)]
    cost = block_cost(body, TARGETS["cortex-m4"].timing)
    assert (cost.cycles, cost.taken_extra) == (4, 2)
    loop, after = 0x100, 0x106
    costs = {loop: (cost, after)}
    # 10 iterations: 9 times back to the loop (taken), once out (falls through).
    edges = {(loop << 32) | loop: 9, (loop << 32) | after: 1}
    total = _total(edges, costs, boundary=0x999)
    assert total.instructions == 30
    assert total.cycles == 10 * 4 + 9 * 2
    assert total.classes == {LOAD: 10, ALU: 10, BRANCH: 10}
    assert isinstance(cost, BlockCost)


def test_loads_pipeline_across_a_block_split_without_a_branch():
    """unicorn ends blocks at 1 KB pages: a run of loads split there costs what it costs in
    one block (2 + 1 + 1 + 1 on the M4), not 2 + 1 + 2 + 1; after a taken branch it does not
    pipeline."""
    from edgeship.profile.emulator import _total

    timing = TARGETS["cortex-m4"].timing
    first = block_cost([Instruction("ldr", 2, LOAD), Instruction("ldr", 2, LOAD)], timing)
    second = block_cost([Instruction("ldr", 2, LOAD), Instruction("ldr", 2, LOAD),
                         Instruction("b", 2, BRANCH, writes_pc=True, conditional=True)],
                        timing)
    whole = block_cost([Instruction("ldr", 2, LOAD)] * 4, timing)
    assert first.ends_in_memory and not second.ends_in_memory
    assert second.pipelined_saving == 1
    split, rest, out = 0x3FC, 0x400, 0x406
    costs = {split: (first, rest), rest: (second, out)}
    edges = {(split << 32) | rest: 1, (rest << 32) | out: 1}
    assert _total(edges, costs, boundary=0x999).cycles == whole.cycles + 1  # + the bne
    # rest reached by a taken branch from elsewhere: no pipelining into it
    edges = {(rest << 32) | rest: 1, (rest << 32) | out: 1}
    taken = _total(edges, costs, boundary=0x999).cycles
    assert taken == 2 * second.cycles + second.taken_extra


@pytest.fixture(scope="module")
def tiny_int8_model(tmp_path_factory) -> Path:
    """An untrained 12x12x1 conv -> depthwise -> pool -> dense -> softmax, full int8."""
    from edgeship.convert.tflite import export_tflite
    from edgeship.deps import import_tf_keras

    tensorflow, keras = import_tf_keras()
    tensorflow.random.set_seed(0)
    model = keras.Sequential([
        keras.layers.Input((12, 12, 1)),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.DepthwiseConv2D(3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(5),
        keras.layers.Softmax()])
    samples = np.random.default_rng(0).uniform(0, 1, (32, 12, 12, 1)).astype(np.float32)
    path = tmp_path_factory.mktemp("profile") / "tiny_int8.tflite"
    path.write_bytes(export_tflite(model, representative_samples=samples))
    return path


def profile(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeship.profile", *map(str, args)],
                          check=False, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def profiled(tiny_int8_model, tmp_path_factory):
    """The tiny model profiled twice on the M4, as two separate commands."""
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc is not installed")
    folder = tmp_path_factory.mktemp("profiled")
    runs = []
    for name in ("first.json", "second.json"):
        completed = profile(tiny_int8_model, "--target", "cortex-m4", "--json", folder / name)
        assert completed.returncode == 0, completed.stderr
        runs.append(json.loads((folder / name).read_text()))
    return runs, folder, completed.stdout


@needs_emulator
def test_profile_reports_every_op_and_matches_tflite_micro(tiny_int8_model, profiled):
    from edgeship.profile.run import ProfileConfig, model_input
    from tests.helpers import matches_tflite_micro

    (report, _), _, stdout = profiled
    assert [op["op"] for op in report["ops"]] == [
        "CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"]
    conv = report["ops"][0]
    assert conv["macs"] == 10 * 10 * 4 * 9
    assert conv["instructions"] > conv["macs"]  # at least one instruction per MAC, portably
    assert conv["cycles"] >= conv["instructions"]  # no M4 instruction costs under 1 cycle
    assert conv["ms"] == pytest.approx(conv["cycles"] / 120_000, rel=1e-4)
    total = report["total"]
    assert total["instructions"] == sum(op["instructions"] for op in report["ops"])
    assert total["macs"] == 10 * 10 * 4 * 9 + 10 * 10 * 4 * 9 + 100 * 5
    assert report["clock_mhz"] == 120 and "-mcpu=cortex-m4" in report["compiler"]["compile_flags"]
    assert report["board"] == "NUCLEO-L4R5ZI, the MLPerf Tiny reference board (120 MHz)"
    assert report["flash"]["rodata"] > 0 and report["flash"]["total"] >= report["flash"]["text"]
    assert 0 < report["ram"]["stack"] < 4096
    ram = report["ram"]  # input, output and scratch are planned inside the one buffer
    assert ram["total"] == ram["activations"] + ram["stack"]
    assert 0 < ram["input"] + ram["output"] + ram["scratch"] <= ram["activations"]
    assert "CONV_2D" in stdout and "total" in stdout
    # The counted program computed the right thing: TFLite Micro's output, bit for bit.
    input_bytes, described = model_input(ProfileConfig(model=str(tiny_int8_model)), 144,
                                         1.0, 0)
    assert described["sha256"] == report["input"]["sha256"]
    assert matches_tflite_micro(tiny_int8_model, input_bytes, report["output"])


@needs_emulator
def test_profile_is_deterministic(profiled):
    (first, second), _, _ = profiled
    assert first == second


@needs_emulator
def test_gate_passes_on_itself_and_fails_naming_the_regressed_op(tiny_int8_model, profiled):
    (report, _), folder, _ = profiled
    same = profile(tiny_int8_model, "--baseline", folder / "first.json",
                   "--max-regression", "0")
    assert same.returncode == 0, same.stderr
    lowered = json.loads(json.dumps(report))
    depthwise = lowered["ops"][1]
    depthwise["instructions"] = int(depthwise["instructions"] * 0.9)
    (folder / "lowered.json").write_text(json.dumps(lowered))
    regressed = profile(tiny_int8_model, "--baseline", folder / "lowered.json",
                        "--max-regression", "0.01")
    assert regressed.returncode == 1
    failures = [line for line in regressed.stderr.splitlines() if "regression" in line]
    assert len(failures) == 1 and "op 1 DEPTHWISE_CONV_2D: instructions" in failures[0]


def test_board_text_follows_the_clock_used():
    m7 = TARGETS["cortex-m7"]
    assert m7.board_at(216.0) == "STM32F7 class (216 MHz)"
    at_400 = m7.board_at(400.0)
    assert "400 MHz" in at_400 and "(216 MHz)" not in at_400 and at_400.startswith("cortex-m7")


@needs_emulator
def test_profile_board_follows_the_clock_mhz_given(tiny_int8_model, tmp_path):
    """--clock-mhz 400 on the M7 once said "board": "STM32F7 class (216 MHz)"."""
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc is not installed")
    completed = profile(tiny_int8_model, "--target", "cortex-m7", "--clock-mhz", 400,
                        "--json", tmp_path / "m7.json")
    assert completed.returncode == 0, completed.stderr
    report = json.loads((tmp_path / "m7.json").read_text())
    assert report["clock_mhz"] == 400
    assert report["board"] == TARGETS["cortex-m7"].board_at(400.0)
    assert report["board"].startswith("cortex-m7 at 400 MHz")
    cycles = report["total"]["cycles"]
    assert report["total"]["ms"] == pytest.approx(cycles / 400_000, rel=1e-4)


def test_codegen_and_profile_share_one_target_list():
    from edgeship.convert.codegen.kernels import DSP_CORES, resolve_kernels
    from edgeship.profile.targets import PROFILE_TARGETS

    assert DSP_CORES == {name for name, target in TARGETS.items() if target.dsp}
    assert DSP_CORES <= set(TARGETS)
    assert set(PROFILE_TARGETS) == {"cortex-m0plus", "cortex-m4", "cortex-m7", "cortex-m33"}
    for name, target in TARGETS.items():
        assert target.cpu_flags[0] == f"-mcpu={name}"
        assert resolve_kernels("auto", name) == ("dsp" if target.dsp else "portable")
        assert (target.timing is not None and target.timing.core == name) == target.profilable


@needs_emulator
def test_profile_input_errors_exit_2_in_one_line(tiny_int8_model, tmp_path):
    missing = profile(tmp_path / "none.tflite")
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr
    m55 = profile(tiny_int8_model, "--target", "cortex-m55")
    assert m55.returncode == 2 and "no cortex-m55 model" in m55.stderr
    np.save(tmp_path / "wrong.npy", np.zeros(7, np.float32))
    wrong = profile(tiny_int8_model, "--input", tmp_path / "wrong.npy")
    assert wrong.returncode == 2 and "holds 7 values" in wrong.stderr
    not_json = tmp_path / "baseline.json"
    not_json.write_text("{}")
    baseline = profile(tiny_int8_model, "--baseline", not_json)
    assert baseline.returncode == 2 and "not an `edgeship profile --json` file" in baseline.stderr


def test_op_hooks_are_inserted_into_generated_c_that_lacks_them():
    from edgeship.profile.firmware import insert_op_hooks

    source = """static int helper(void) { return 0; }
int model_run(const int8_t *input, int8_t *output) {
  /* op 0: CONV_2D 8x8x1 -> 6x6x4 */
  es_conv_2d(input, arena);
  /* op 1: RESHAPE (same bytes, no code) */
  /* op 2: SOFTMAX 1x4 */
  es_softmax(arena, output);
  return 0;
}
"""
    hooked = insert_op_hooks(source)
    body = hooked.split("int model_run", 1)[1]
    assert [line.strip() for line in body.splitlines() if "HOOK" in line] == [
        "EDGESHIP_OP_HOOK(0);", "EDGESHIP_OP_HOOK(1);", "EDGESHIP_OP_HOOK(2);",
        "EDGESHIP_OP_HOOK(3);"]
    assert body.index("EDGESHIP_OP_HOOK(3)") < body.index("return 0;")
    assert "#define EDGESHIP_OP_HOOK(i) ((void)0)" in hooked
    assert insert_op_hooks(hooked) == hooked


def test_profile_defaults_agree_with_codegen_and_the_pipeline_stage():
    """`edgeship profile` resolves --kernels auto as codegen and the pipeline's stage do
    (the stage's auto and the command's default once disagreed: 7.0 M vs 31.6 M cycles)."""
    from edgeship.cli import build_parser
    from edgeship.convert.codegen import CodegenConfig
    from edgeship.errors import UserInputError
    from edgeship.pipeline_config import ProfileStage
    from edgeship.profile.run import ProfileConfig

    args = build_parser().parse_args(["profile", "model.tflite"])
    assert args.kernels == ProfileConfig.kernels == ProfileStage.kernels == "auto"
    assert args.target == ProfileConfig.target == ProfileStage.target
    for target in ("cortex-m0plus", "cortex-m4", "cortex-m7", "cortex-m33"):
        expected = CodegenConfig(model="m.tflite", out="o", target=target).variant
        assert ProfileConfig(model="m.tflite", target=target).variant == expected
        assert ProfileStage(target=target).variant == expected
    assert ProfileConfig(model="m.tflite", target="cortex-m4").variant == "dsp"
    assert ProfileConfig(model="m.tflite", target="cortex-m0plus").variant == "portable"
    with pytest.raises(UserInputError, match="no 'fast' kernels"):
        ProfileConfig(model="m.tflite", kernels="fast")


def test_board_cache_simulation_is_lru_per_set_and_counts_stalls():
    from edgeship.profile.boards import BOARDS, Cache, CacheSimulation, FlashModel

    cache = CacheSimulation(Cache(lines=4, line_bytes=16, ways=2))  # 2 sets of 2 ways
    hits = [cache.access(line) for line in (0, 2, 0, 4, 2, 0)]
    # set 0 holds lines 0, 2, 4...: 4 evicts 2 (least recent after 0's hit), then 2 evicts 0
    assert hits == [False, False, True, False, False, False]
    assert (cache.accesses, cache.misses) == (6, 5)
    l4 = BOARDS["nucleo-l4r5zi"]
    flash = FlashModel(l4)
    assert flash.read(0x1000, 4) == l4.wait_states and flash.read(0x1004, 4) == 0
    assert flash.read(0x100E, 4) == l4.wait_states  # straddles into line 0x1010: one miss
    assert flash.fetch(0x2000, 8) == l4.wait_states and flash.fetch(0x2000, 8) == 0
    # the next line was prefetched while 16 bytes (8 halfwords) ran: 5 - 8 -> no stall
    assert flash.fetch(0x2010, 4) == 0
    # the L4's ART has its own data lines: reading code's line does not hit the instruction one
    assert flash.read(0x2000, 4) == l4.wait_states


def test_u575_flash_data_reads_share_the_icache_with_code():
    from edgeship.profile.boards import BOARDS, FlashModel

    u5 = BOARDS["nucleo-u575zi"]
    assert u5.data_cache is None  # the M33's C-AHB bus: one ICACHE for fetches and data reads
    flash = FlashModel(u5)
    assert flash.fetch(0x2000, 4) == u5.wait_states
    assert flash.read(0x2004, 4) == 0  # a literal pool in the fetched line: a hit
    # weights streaming through the 2-way ICACHE evict the code of the loop reading them
    ways, line = u5.instruction_cache.ways, u5.instruction_cache.line_bytes
    sets = u5.instruction_cache.lines // ways
    for way in range(1, ways + 1):
        assert flash.read(0x2000 + way * sets * line, 4) == u5.wait_states
    assert flash.fetch(0x2000, 4) == u5.wait_states
    summary = flash.summary()
    assert summary["shared_cache"] and summary["data_reads"] == 3 and summary["data_misses"] == 2
    assert (summary["instruction_line_accesses"], summary["instruction_line_misses"]) == (2, 2)


@needs_emulator
def test_board_model_adds_flash_stalls_deterministically_and_names_the_board(
        tiny_int8_model, profiled, tmp_path):
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc is not installed")
    (zero_wait, _), _, _ = profiled
    runs = []
    for name in ("board1.json", "board2.json"):
        completed = profile(tiny_int8_model, "--target", "cortex-m4", "--board", "nucleo-l4r5zi",
                            "--json", tmp_path / name)
        assert completed.returncode == 0, completed.stderr
        runs.append(json.loads((tmp_path / name).read_text()))
    first, second = runs
    assert first == second
    assert "NUCLEO-L4R5ZI" in first["board"] and first["clock_mhz"] == 120.0
    assert first["cycle_model"]["board"]["wait_states"] == 5
    assert zero_wait["cycle_model"]["board"] is None
    assert first["cycle_model"]["memory_stall_cycles"] > 0
    assert first["cycle_model"]["memory"]["data_misses"] > 0  # weights are read from flash
    # the same program ran: equal instructions per op, more cycles where weights are read
    assert [op["instructions"] for op in first["ops"]] == [op["instructions"]
                                                          for op in zero_wait["ops"]]
    dense = next(index for index, op in enumerate(first["ops"]) if op["op"] == "FULLY_CONNECTED")
    assert first["ops"][dense]["cycles"] > zero_wait["ops"][dense]["cycles"]
    assert first["total"]["cycles"] > zero_wait["total"]["cycles"]
    # the console's header says which memory the estimate assumed
    assert "flash wait states and caches modelled" in completed.stdout
    assert "NUCLEO-L4R5ZI" in completed.stdout.splitlines()[0]
    assert "zero-wait-state" not in completed.stdout.splitlines()[0]


@needs_emulator
def test_bad_board_is_bad_input(tiny_int8_model):
    from edgeship.errors import UserInputError
    from edgeship.profile.run import ProfileConfig

    completed = profile(tiny_int8_model, "--board", "nucleo-f000")
    assert completed.returncode == 2
    assert "unknown board 'nucleo-f000'" in completed.stderr + completed.stdout
    with pytest.raises(UserInputError, match="pass --target cortex-m7"):
        ProfileConfig(model=str(tiny_int8_model), board="nucleo-h7a3zi")
