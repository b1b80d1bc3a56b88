import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import time

import pytest

from edgeship.errors import UserInputError
from edgeship.pipeline import STAGES, run_lock
from edgeship.pipeline_config import PipelineConfig, config_from_sources, load_config_file
from tests.helpers import REPO, run_cli

FAST = ["--model", "lenet5", "--dataset", "mnist5k", "--epochs", "2", "--bench-runs", "20",
        "--validate-limit", "300", "--calibration-samples", "100", "--embed-samples", "4"]
# The profile stage runs where the Arm toolchain and the emulator are installed (CI as root);
# elsewhere it is skipped with one line.
PROFILING = bool(shutil.which("arm-none-eabi-gcc")) and all(
    importlib.util.find_spec(module) for module in ("unicorn", "capstone", "elftools"))
needs_profile = pytest.mark.skipif(not PROFILING, reason="arm-none-eabi-gcc, unicorn, capstone "
                                   "or pyelftools is not installed")


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipeline") / "demo"
    started = time.perf_counter()
    first = run_cli("pipeline", *FAST, "--out", out)
    return out, first, time.perf_counter() - started


def _stage_lines(stdout):
    return [line for line in stdout.splitlines() if line.startswith("[")]


def test_pipeline_runs_every_stage_and_prints_summary(pipeline_run):
    out, result, _ = pipeline_run
    assert result.returncode == 0, result.stderr[-2000:]
    ran = [stage for stage in STAGES if PROFILING or stage != "profile"]
    for stage in ran:
        assert any(f"] {stage}: done" in line for line in _stage_lines(result.stdout)), stage
    if not PROFILING:
        assert any("] profile: skipped (" in line for line in _stage_lines(result.stdout))
    assert "| model_int8.tflite | tflm |" in result.stdout
    assert f"report: {(out / 'report.html').resolve()}" in result.stdout
    # A quiet console: stage lines, one line per epoch, the summary; the frameworks' logs
    # (TensorFlow's C++ logging, converter chatter) are in edgeship.log.
    console = (result.stdout + result.stderr).splitlines()
    assert len(console) < 40, "\n".join(console)
    # (XNNPACK is named in the summary's delegation column, never in a log line.)
    assert not any("cuda" in line.lower() or ("XNNPACK" in line and not line.startswith("|"))
                   for line in console)
    assert "XNNPACK" in (out / "edgeship.log").read_text()
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["pipeline"]) == set(ran)
    for name in ("report.html", "report.md", "parity.json", "bench.json", "model_int8.tflite"):
        assert (out / name).stat().st_size > 0
    if shutil.which("cc"):
        # The generated C joins validate and must equal TFLite Micro on every test image.
        parity = json.loads((out / "parity.json").read_text())
        (c_vs_tflm,) = [row for row in parity["integer_comparisons"]
                        if row["backend"] == "c" and row["reference_backend"] == "tflm"]
        assert c_vs_tflm["histogram"]["exact"] == c_vs_tflm["histogram"]["elements"] == 3000


def test_rerun_with_nothing_changed_skips_every_stage(pipeline_run):
    out, _, _ = pipeline_run
    started = time.perf_counter()
    again = run_cli("pipeline", *FAST, "--out", out)
    elapsed = time.perf_counter() - started
    assert again.returncode == 0, again.stderr[-2000:]
    lines = _stage_lines(again.stdout)
    assert len(lines) == len(STAGES), lines
    assert all("up to date, skipped" in line for line in lines if PROFILING
               or "] profile:" not in line), lines
    assert elapsed < 20


def test_changing_a_convert_option_redoes_convert_onward_only(pipeline_run, tmp_path):
    out, _, _ = pipeline_run
    copy = tmp_path / "demo"
    shutil.copytree(out, copy)
    before = json.loads((copy / "manifest.json").read_text())["artifacts"]
    changed = [flag if flag != "100" else "60" for flag in FAST]  # --calibration-samples
    result = run_cli("pipeline", *changed, "--out", copy)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = _stage_lines(result.stdout)
    assert any("train: up to date, skipped" in line for line in lines)
    for stage in ("convert", "validate", "bench", "report") + (("profile",) if PROFILING else ()):
        assert any(f"] {stage}: done" in line for line in lines), stage
    after = json.loads((copy / "manifest.json").read_text())["artifacts"]
    assert after["model.keras"]["sha256"] == before["model.keras"]["sha256"]
    assert after["model_int8.tflite"]["sha256"] != before["model_int8.tflite"]["sha256"]


def test_report_sections(pipeline_run):
    out, _, _ = pipeline_run
    page = (out / "report.html").read_text()
    for section in ("<table id='summary'>", "MCU footprint (TFLite Micro)", "Training curves", "Accuracy drop against the float reference",
                    "Per-layer quantization error",
                    "p50 latency per variant", "Latency distribution", "int8 confusion matrix",
                    "Reproduce", "Library versions", "Artifact SHA-256"):
        assert section in page, section
    pipeline_line = next(line for line in page.splitlines() if "edgeship pipeline --" in line)
    assert "--model " in pipeline_line and f"--out {out}" in pipeline_line
    assert "http://" not in page and "https://" not in page
    markdown = (out / "report.md").read_text()
    assert "| model_int8.tflite | litert-ref |" in markdown
    for image in (out / "report_files").iterdir():
        assert image.read_bytes()[:4] == b"\x89PNG"
    # Where the work ran, from bench's records: XNNPACK's partitions, ORT's int8 kernels.
    assert "<th>delegation / kernels</th>" in page and "| delegation / kernels |" in markdown
    litert_int8 = next(line for line in markdown.splitlines()
                       if line.startswith("| model_int8.tflite | litert |"))
    assert re.search(r"\| XNNPACK \d+ partitions?, \d+/\d+ ops", litert_int8), litert_int8
    ort_int8 = next(line for line in markdown.splitlines()
                    if line.startswith("| model_int8.onnx | onnxruntime |"))
    assert re.search(r"\| int8 kernels \d+/\d+ nodes", ort_int8), ort_int8


@needs_profile
def test_profile_stage_writes_the_estimate_and_the_report_shows_it(pipeline_run, tmp_path):
    from edgeship.tflite_graph import op_names, read_model

    out, result, _ = pipeline_run
    profile = json.loads((out / "profile.json").read_text())
    model_ops = op_names(read_model((out / "model_int8.tflite").read_bytes()))
    assert [op["op"] for op in profile["ops"]] == model_ops
    # Defaults: cortex-m4 at its board's 120 MHz, auto kernels resolved to dsp there.
    assert (profile["target"], profile["clock_mhz"], profile["kernels"]) == ("cortex-m4", 120.0,
                                                                             "dsp")
    total = profile["total"]
    assert total["cycles"] == pytest.approx(sum(op["cycles"] for op in profile["ops"]))
    assert total["cycles"] >= total["instructions"] > 0
    assert total["ms"] == pytest.approx(total["cycles"] / 120_000, abs=1e-5)
    assert total["macs"] > 100_000 and 0.5 < total["cycles_per_mac"] < 50
    assert profile["flash"]["rodata"] > 0.5 * (out / "model_int8.tflite").stat().st_size  # weights
    ram = profile["ram"]  # one buffer holds activations, input, output and scratch
    assert ram["total"] == ram["activations"] + ram["stack"] > 0
    assert ram["input"] == 28 * 28 and ram["input"] + ram["output"] <= ram["activations"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["artifacts"]["profile.json"]["stage"] == "profile"
    line = next(line for line in _stage_lines(result.stdout) if "] profile: done" in line)
    assert f"{total['ms']:.2f} ms on cortex-m4 at 120 MHz (dsp kernels)" in line
    page = (out / "report.html").read_text()
    markdown = (out / "report.md").read_text()
    for text in (page, markdown):
        assert f"{total['cycles']:,.0f}" in text and f"{total['cycles_per_mac']:.2f}" in text
        assert f"{profile['flash']['total']:,} B" in text and f"{profile['ram']['total']:,} B" in text
        assert "estimated ms at 120 MHz" in text and "not a measurement" in text
    assert "data-name='mcu_cycles.png'" in page and "report_files/mcu_cycles.png" in markdown
    # The MCU section holds the chart beside TFLite Micro's figures.
    section = page[page.index("<section id='mcu'>"):]
    section = section[:section.index("</section>")]
    assert "mcu_cycles.png" in section and "MCU footprint (TFLite Micro)" in section
    # The reproduce command writes the same numbers (the instruction count is deterministic).
    command = next(line for line in markdown.splitlines() if line.startswith("edgeship profile"))
    written = tmp_path / "profile_again.json"
    reproduced = run_cli(*shlex.split(command.replace(str(out / "profile.json"), str(written)))[1:])
    assert reproduced.returncode == 0, reproduced.stderr[-2000:]
    again = json.loads(written.read_text())
    assert again["total"] == total and again["flash"] == profile["flash"]


def test_profile_stage_off_or_without_tools_is_skipped_in_one_line(pipeline_run, tmp_path,
                                                                    monkeypatch):
    from edgeship import pipeline
    from edgeship.pipeline_config import ProfileStage

    out, _, _ = pipeline_run
    config = PipelineConfig(out=str(out))
    monkeypatch.setattr(pipeline.shutil, "which", lambda name: None)
    assert ("arm-none-eabi-gcc not found; `sudo apt-get install -y gcc-arm-none-eabi "
            "libnewlib-arm-none-eabi` enables the MCU estimate") == (
        pipeline._profile_unavailable(config, out))
    monkeypatch.undo()
    off = PipelineConfig(out=str(out), profile=ProfileStage(enabled=False))
    assert pipeline._profile_unavailable(off, out) == "turned off: --no-profile"
    copy = tmp_path / "demo"
    shutil.copytree(out, copy)
    result = run_cli("pipeline", *FAST, "--no-profile", "--out", copy)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = _stage_lines(result.stdout)
    assert any(line.endswith("] profile: skipped (turned off: --no-profile)") for line in lines)
    assert any("] report: done" in line for line in lines)  # its reproduce commands changed
    assert all("up to date" in line for line in lines if "] profile" not in line
               and "] report" not in line), lines
    manifest = json.loads((copy / "manifest.json").read_text())
    assert "profile.json" not in manifest["artifacts"] and not (copy / "profile.json").exists()
    assert "profile" not in manifest["pipeline"]
    page = (copy / "report.html").read_text()
    assert "MCU footprint (TFLite Micro)" in page and "mcu_cycles.png" not in page
    assert "edgeship profile" not in page and "--no-profile" in page


CHECK_SCRIPT = """
<script>
window.addEventListener('load', () => {
  const images = [...document.images];
  const rows = document.querySelectorAll('#summary tbody tr').length;
  const bad = images.filter(i => !i.complete || i.naturalWidth === 0).length;
  const mcu = document.querySelector("#mcu img[data-name='mcu_cycles.png']");
  const headers = [...document.querySelectorAll('#summary th')].map(h => h.textContent);
  const delegated = [...document.querySelectorAll('#summary td')]
      .filter(c => /^(XNNPACK|int8 kernels)/.test(c.textContent)).length;
  const result = {images: images.length, broken: bad, rows: rows,
                  widths: images.map(i => i.naturalWidth),
                  mcu_chart_width: mcu ? mcu.naturalWidth : 0,
                  delegation_column: headers.includes('delegation / kernels'),
                  delegation_cells: delegated};
  const out = document.createElement('pre');
  out.id = 'edgeship-check';
  out.textContent = 'CHECK' + JSON.stringify(result) + 'END';
  document.body.appendChild(out);
});
</script>
"""


@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed")
def test_report_renders_in_headless_chromium(pipeline_run, tmp_path):
    out, _, _ = pipeline_run
    page = tmp_path / "report_check.html"
    page.write_text((out / "report.html").read_text().replace("</body>", CHECK_SCRIPT + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
             "--virtual-time-budget=5000"]
    dom = subprocess.run(["chromium", *flags, "--dump-dom", page.as_uri()], capture_output=True,
                         text=True, timeout=120, check=False)
    match = re.search(r"CHECK(\{.*?\})END", dom.stdout)
    assert match, dom.stdout[-2000:]
    result = json.loads(match.group(1))
    assert result["images"] >= 6
    assert result["broken"] == 0
    assert min(result["widths"]) > 100
    assert result["rows"] >= 9
    assert result["delegation_column"] and result["delegation_cells"] >= 2
    if PROFILING:
        assert result["mcu_chart_width"] > 100
    screenshot = REPO / "tests" / "artifacts" / "report.png"
    screenshot.parent.mkdir(exist_ok=True)
    subprocess.run(["chromium", *flags, "--window-size=1200,2400", f"--screenshot={screenshot}",
                    (out / "report.html").as_uri()], capture_output=True, timeout=120, check=False)
    assert screenshot.stat().st_size > 20_000


def test_second_pipeline_on_same_out_refuses(tmp_path):
    out = tmp_path / "locked"
    with run_lock(out):
        result = run_cli("pipeline", *FAST, "--out", out)
    assert result.returncode == 2
    assert "another edgeship pipeline is writing" in result.stderr
    assert not (out / "manifest.json").exists()


def test_config_file_and_flags(tmp_path):
    from dataclasses import replace

    config = tmp_path / "pipeline.toml"
    config.write_text('[train]\nmodel = "dscnn"\nepochs = 7\nbatch_norm_statistics = "running"\n'
                      'early_stopping = 2\nstrategy = "mirrored"\ntest_size = 300\n'
                      '[convert]\nqat_epochs = 1\n[bench]\nthreads = [1, 2]\n'
                      '[profile]\nenabled = false\ntarget = "cortex-m33"\nclock_mhz = 80.0\n')
    values = load_config_file(config)
    merged = config_from_sources(values, {"train": {"epochs": 3}})
    defaults = PipelineConfig()
    assert merged == replace(
        defaults,
        train=replace(defaults.train, model="dscnn", epochs=3, batch_norm_statistics="running",
                      early_stopping=2, strategy="mirrored",
                      dataset=replace(defaults.train.dataset, test_size=300)),
        convert=replace(defaults.convert, qat_epochs=1),
        bench=replace(defaults.bench, threads=(1, 2)),
        profile=replace(defaults.profile, enabled=False, target="cortex-m33", clock_mhz=80.0))
    config.write_text("[train]\nepochz = 3\n")
    with pytest.raises(UserInputError, match="unknown key"):
        load_config_file(config)
    config.write_text("[trian]\nepochs = 3\n")
    with pytest.raises(UserInputError, match="unknown table"):
        load_config_file(config)
    with pytest.raises(ValueError, match="batch-norm statistics must be one of population, running"):
        config_from_sources({"train": {"batch_norm_statistics": "exact"}}, {})
    with pytest.raises(ValueError, match="profile target must be one of cortex-m0plus, "):
        config_from_sources({"profile": {"target": "cortex-m55"}}, {})  # no emulator model
    with pytest.raises(ValueError, match="needs --profile-cmsis-nn DIR"):
        config_from_sources({"profile": {"kernels": "cmsis-nn"}}, {})


def test_flat_keys_outside_the_stage_tables_are_refused(tmp_path):
    """Each option has one key, in its stage's table; a flat key (edgeship 0.1's format) is
    bad input naming the tables."""
    config = tmp_path / "pipeline.toml"
    config.write_text('model = "dscnn"\n')
    with pytest.raises(UserInputError, match=r"key model outside a table; use the tables"):
        load_config_file(config)
    config.write_text('[pipeline]\nqat = 1\n')
    with pytest.raises(UserInputError, match=r"unknown key\(s\) qat in \[pipeline\]"):
        load_config_file(config)


def test_example_config_loads():
    config = config_from_sources(load_config_file(REPO / "pipeline.example.toml"), {})
    assert config.train.model == "lenet5" and config.convert.qat_epochs == 1
    assert (config.profile.target, config.profile.kernels) == ("cortex-m4", "auto")


def test_pipeline_flags_are_the_stage_configs_options():
    """Every option of every stage config is a pipeline flag, and today's spellings work."""
    from edgeship import cli
    from edgeship.options import declared_options
    from edgeship.pipeline_config import GROUPS

    parser = cli.build_parser()
    pipeline_parser = next(action for action in parser._actions
                           if action.dest == "command").choices["pipeline"]
    dests = {action.dest for action in pipeline_parser._actions}
    for group in GROUPS:
        for item in declared_options(group.config_class):
            if item.name not in group.exclude:
                assert f"{group.key}.{item.name}" in dests, (group.key, item.name)
    flags = {flag for action in pipeline_parser._actions for flag in action.option_strings}
    assert {"--qat", "--io", "--prune", "--no-onnx", "--max-drop", "--validate-limit",
            "--bench-runs", "--bench-warmup", "--embed-samples", "--seed", "--alpha",
            "--image-size", "--test-size", "--early-stopping", "--strategy", "--split-seed",
            "--force", "--out", "--no-profile", "--profile-target", "--profile-kernels",
            "--profile-clock-mhz", "--profile-cmsis-nn"} <= flags


def test_reproduce_commands_recreate_the_same_run():
    """Generated from the command specs: parsed back they give the same configs and split."""
    import shlex
    from dataclasses import replace

    from edgeship import cli
    from edgeship.commands import get_command
    from edgeship.pipeline_config import reproduce_commands

    config = config_from_sources({}, {
        "pipeline": {"out": "runs/x", "embed_samples": 3},
        "train": {"model": "dscnn", "epochs": 3, "batch_size": 16, "learning_rate": 0.001,
                  "seed": 7, "augment": True, "batch_norm_statistics": "running",
                  "early_stopping": 2, "strategy": "mirrored"},
        "dataset": {"dataset": "digits", "split_seed": 5, "test_size": 300,
                    "image_size": (32, 32), "channels": 3},
        "model_options": {"alpha": 0.5},
        "convert": {"qat_epochs": 1, "prune_sparsity": 0.5, "prune_epochs": 1, "onnx": False,
                    "calibration_samples": 200, "io_type": "uint8",
                    "weight_granularity": "per-channel", "max_drop_pp": 1.5},
        "convert_seed": {"seed": 4},
        "validate": {"limit": 100}, "tolerances": {"max_drop_pp": 3.0},
        "bench": {"runs": 50, "warmup": 5, "threads": (1, 2)},
        "profile": {"target": "cortex-m7", "kernels": "auto", "clock_mhz": 96.0}})
    pipeline, train, convert, validate, bench, profile = reproduce_commands(config)
    parser = cli.build_parser()

    def config_of(command_line: str):
        words = shlex.split(command_line)
        spec = get_command(words[1])
        return spec.build(spec.values(parser.parse_args(words[1:])))

    assert replace(config_of(pipeline), force=False) == config
    # The stage commands give the same stage configs, so the same split and training.
    assert config_of(train) == config.train
    assert config_of(convert) == config.convert
    assert config_of(validate) == config.validate
    assert replace(config_of(bench), artifacts=config.bench.artifacts) == config.bench
    # The profile command profiles what the stage did, with the same options and defaults
    # (auto resolves to dsp on the M7 in both).
    profile_args = parser.parse_args(shlex.split(profile)[1:])
    assert (profile_args.model, profile_args.json) == ("runs/x/model_int8.tflite",
                                                       "runs/x/profile.json")
    from edgeship.profile.run import ProfileConfig

    profiled = config_of(profile)
    stage = ProfileConfig(**{name: getattr(config.profile, name)
                             for name in ProfileConfig.__dataclass_fields__})
    assert profiled == stage and profiled.variant == config.profile.variant == "dsp"
    # Turned off: --no-profile in the pipeline command and no profile command.
    off = replace(config, profile=replace(config.profile, enabled=False, kernels="portable",
                                          cmsis_nn=None))
    commands = reproduce_commands(off)
    assert len(commands) == 5 and "--no-profile" in commands[0]
    assert replace(config_of(commands[0]), force=False) == off
