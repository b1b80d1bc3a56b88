"""edgeship tune: budgets, the front re-profiled, a killed run resumed, workers sharing a study.

Trials are tiny (a 300-image npz cut of mnist5k, 1 epoch, simple_cnn/keras_cnn) so each tune
takes tens of seconds; the reliability tests (kill and resume, two SQLite workers) run in the
default suite, PostgreSQL workers and the front's full pipeline are marked slow.
"""

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

optuna = pytest.importorskip("optuna", reason="edgeship[tune] (optuna) is not installed")

from edgeship.errors import MissingDependencyError, UserInputError
from edgeship.tune_space import SearchSpace, TuneConfig, parse_bytes

needs_profile_tools = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc is not installed")
ROOT = Path(__file__).resolve().parents[2]
EDGESHIP = [sys.executable, "-m", "edgeship.cli"]
BUDGET = {"target": "cortex-m4", "max_ram": "16KB", "max_flash": "64KB", "max_ms": 20}
BUDGET_FLAGS = ["--target", "cortex-m4", "--max-ram", "16KB", "--max-flash", "64KB",
                "--max-ms", "20"]
SPACE_TOML = """
[tune]
epochs = 1
calibration_samples = 100
front_pipeline = false

[space]
families = ["simple_cnn", "keras_cnn"]
prune_sparsities = [0.0]
qat_epochs = [0]
activations = ["int8"]
weight_granularities = ["per-channel"]
"""


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> str:
    """300 training and 100 test images of mnist5k as an npz dataset."""
    from edgeship.train.datasets import load_dataset

    dataset = load_dataset("mnist5k")
    path = tmp_path_factory.mktemp("tune_data") / "small.npz"
    np.savez(path, x_train=dataset.x_train[:300], y_train=dataset.y_train[:300],
             x_test=dataset.x_test[:100], y_test=dataset.y_test[:100],
             raw_max=np.float32(1.0))
    return f"npz:{path}"


@pytest.fixture(scope="module")
def space_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tune_config") / "tune.toml"
    path.write_text(SPACE_TOML)
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory, small_dataset, space_file):
    """One finished 3-trial tune, through the Python API."""
    import edgeship

    out = tmp_path_factory.mktemp("tune") / "study"
    result = edgeship.tune(dataset=small_dataset, out=out, config=space_file, trials=3,
                           sampler="random", **BUDGET)
    return out, result


def _study(out: Path, name: str = "edgeship-tune"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'study.db'}")


def _environment() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}


# --- options -------------------------------------------------------------------------------------

def test_sizes_and_budgets_parse_and_bad_values_are_user_errors():
    assert parse_bytes("64KB") == 65536 and parse_bytes("1MB") == 1 << 20
    assert parse_bytes("4096") == 4096
    with pytest.raises(Exception, match="64KB"):
        parse_bytes("12XB")
    with pytest.raises(UserInputError, match="min-accuracy"):
        TuneConfig(min_accuracy=95)
    with pytest.raises(UserInputError, match="trials"):
        TuneConfig(trials=0)
    with pytest.raises(UserInputError, match="unknown families"):
        SearchSpace(families=("resnet",))
    assert TuneConfig(max_ram=1024, max_ms=5).budgets() == {"ram": 1024, "ms": 5}


def test_missing_optuna_is_one_actionable_error(monkeypatch):
    from edgeship.tuning import require_optuna

    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(MissingDependencyError, match=r"edgeship\[tune\]"):
        require_optuna()


def test_cli_bad_input_exits_2_on_one_line(tmp_path, capsys):
    from edgeship.cli import main

    assert main(["tune", "--dataset", "mnist5k", "--trials", "0", "--out", str(tmp_path)]) == 2
    assert main(["tune", "--show", "--out", str(tmp_path / "none")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(line.startswith("edgeship tune: error:") for line in errors)


@needs_profile_tools
def test_no_model_within_budget_exits_1_and_records_why(tmp_path, small_dataset, space_file):
    """A 1 KB RAM budget: every candidate is discarded from the Keras lower bound, untrained."""
    from edgeship.cli import main

    out = tmp_path / "tiny"
    code = main(["tune", "--dataset", small_dataset, "--max-ram", "1KB", "--trials", "2",
                 "--config", str(space_file), "--out", str(out)])
    assert code == 1
    report = json.loads((out / "tune_report.json").read_text())
    assert report["front"] == [] and report["counts"]["discarded"] == 2
    assert report["discarded_by"]["ram"]["untrained"] == 2
    # recorded, not bounded here: the 10 s target is a benchmark (benchmarks/bench_tune.py),
    # and wall time depends on the machine
    assert report["seconds_per_discarded_candidate"]["max"] >= 0
    assert not (out / "trials").exists()  # nothing trained


@needs_profile_tools
@pytest.mark.parametrize("model, kernels", [("dscnn", "dsp"), ("dscnn", "portable"),
                                            ("simple_cnn", "portable")])
def test_the_keras_lower_bound_never_exceeds_the_profiled_footprint(small_dataset, model,
                                                                       kernels):
    """The bound discards untrained: were it above what the generated C needs (it once
    counted a layer's input and output, which in-place ops do not hold at once: 25,088 B
    for the default dscnn, whose plan is 22,556 B), it would discard models that fit."""
    from edgeship.train.datasets import load_dataset
    from edgeship.tune_check import lower_bound, profile_untrained, untrained_model
    from edgeship.tune_space import Candidate

    config = TuneConfig(out="unused")
    data = load_dataset("mnist5k")
    candidate = Candidate(model, kernels=kernels)
    network = untrained_model(candidate, config, data.x_train.shape[1:], 10)
    bound = lower_bound(network, candidate)
    profiled = profile_untrained(network, candidate, config, data.x_train[:16])
    assert 0 < bound.ram <= profiled.ram and 0 < bound.flash <= profiled.flash
    if model == "dscnn":  # the largest tensor, 14x14x64 int8, not that plus its neighbour
        assert bound.ram == 14 * 14 * 64


@needs_profile_tools
def test_the_cheap_check_stops_the_emulation_past_the_ms_budget():
    """A candidate far over the latency budget is not emulated to its end: the estimate
    stops once it passes the budget, and the footprint says so."""
    from edgeship.train.datasets import load_dataset
    from edgeship.tune_check import over_budget, profile_untrained, untrained_model
    from edgeship.tune_space import Candidate

    data = load_dataset("mnist5k")
    candidate = Candidate("dscnn", kernels="portable")
    full = profile_untrained(untrained_model(candidate, TuneConfig(out="x"),
                                             data.x_train.shape[1:], 10),
                             candidate, TuneConfig(out="x"), data.x_train[:16])
    budget = TuneConfig(out="x", max_ms=full.ms / 10)
    stopped = profile_untrained(untrained_model(candidate, budget, data.x_train.shape[1:], 10),
                                candidate, budget, data.x_train[:16])
    assert "stopped" in stopped.source and "stopped" not in full.source
    # a lower bound of the whole run, just past the budget, far below the full estimate
    assert budget.max_ms < stopped.ms < full.ms / 5
    assert over_budget(stopped, budget) == ["ms"]
    assert stopped.flash == full.flash and 0 < stopped.ram <= full.ram


# --- depth, input resolution, the pruner ----------------------------------------------------------

def test_dscnn_blocks_set_its_depth_and_the_default_model_is_unchanged():
    from edgeship.train.models import ModelOptions, build_model

    default = build_model("dscnn", (28, 28, 1), 10)
    # stem 3x3x64 + BN, 4 x (3x3 depthwise + BN + 64x64 pointwise + BN), dense 64x10 + bias
    assert default.count_params() == 576 + 256 + 4 * (576 + 256 + 4096 + 256) + 650
    shallow = build_model("dscnn", (28, 28, 1), 10, ModelOptions(width=16, blocks=2))
    names = {layer.name for layer in shallow.layers}
    assert {"dw1", "pw1", "dw2", "pw2"} <= names and "dw3" not in names
    assert shallow.count_params() == 144 + 64 + 2 * (144 + 64 + 256 + 64) + 170
    with pytest.raises(UserInputError, match="blocks"):
        ModelOptions(blocks=0)


def test_space_reads_depths_and_image_sizes_from_toml_and_rejects_bad_ones(tmp_path):
    from edgeship.tune_space import load_config_file

    path = tmp_path / "space.toml"
    path.write_text("[tune]\npruner = 'none'\n[space]\nblocks = [2, 3]\nimage-sizes = [32, 48]\n"
                    "widths = [16, 20]\n")
    tune, space = load_config_file(path)
    searched = SearchSpace(**space)
    assert searched.blocks == (2, 3) and searched.image_sizes == (32, 48)
    assert searched.widths == (16, 20) and TuneConfig(**tune).pruner == "none"
    assert SearchSpace().image_sizes == () and SearchSpace().blocks == (1, 2, 3, 4)
    with pytest.raises(UserInputError, match="blocks"):
        SearchSpace(blocks=(0, 2))
    with pytest.raises(UserInputError, match="image sizes"):
        SearchSpace(image_sizes=(0,))
    with pytest.raises(UserInputError, match="pruner"):
        TuneConfig(pruner="hyperband")
    with pytest.raises(UserInputError, match="pruner-warmup-epochs"):
        TuneConfig(pruner_warmup_epochs=-1)


def test_suggest_draws_depth_and_only_the_sizes_a_family_takes(tmp_path):
    from edgeship.pipeline_config import reproduce_commands
    from edgeship.train.datasets import DatasetSpec
    from edgeship.tune_space import Candidate, suggest

    space = SearchSpace(families=("dscnn", "mobilenet_v2"), widths=(16,), blocks=(2, 3),
                        image_sizes=(24, 48))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = []
    for _ in range(16):
        trial = study.ask()
        candidate = suggest(trial, space, (96, 96, 3), "cortex-m4")
        assert Candidate.from_params(trial.params) == candidate
        drawn.append((candidate, set(trial.params)))
        study.tell(trial, 0.0)
    dscnns = [candidate for candidate, _ in drawn if candidate.model == "dscnn"]
    mobilenets = [(candidate, names) for candidate, names in drawn
                  if candidate.model == "mobilenet_v2"]
    assert dscnns and mobilenets
    assert {candidate.blocks for candidate in dscnns} == {2, 3}
    assert {candidate.image_size for candidate in dscnns} == {24, 48}
    # mobilenet_v2 needs 32x32: its own parameter, whose only choice is 48
    assert all(candidate.image_size == 48 and "image_size_mobilenet_v2" in names
               and "image_size" not in names for candidate, names in mobilenets)

    config = TuneConfig(out=str(tmp_path), dataset=DatasetSpec(f"folder:{tmp_path}"))
    candidate = Candidate("dscnn", width=16, blocks=2, image_size=48)
    pipeline = candidate.pipeline_config(config, tmp_path / "run")
    assert pipeline.train.dataset.image_size == (48, 48)
    assert (pipeline.train.model_options.width, pipeline.train.model_options.blocks) == (16, 2)
    command = reproduce_commands(pipeline)[0]
    assert "--blocks 2" in command and "--image-size 48" in command
    keys = {candidate.footprint_key(), Candidate("dscnn", width=16, blocks=3, image_size=48)
            .footprint_key(), Candidate("dscnn", width=16, blocks=2, image_size=24).footprint_key()}
    assert len(keys) == 3


def test_image_sizes_are_searched_on_folder_datasets_only(tmp_path):
    from edgeship.train.datasets import DatasetSpec
    from edgeship.tuning import run_tune

    with pytest.raises(UserInputError, match="folder datasets only"):
        run_tune(TuneConfig(out=str(tmp_path), dataset=DatasetSpec("mnist5k")),
                 SearchSpace(image_sizes=(32,)))


def test_median_to_beat_is_the_median_pruner_rule():
    from dataclasses import replace

    from edgeship.tuning import median_to_beat

    config = TuneConfig(epochs=4, pruner_startup_trials=2, pruner_warmup_epochs=1)
    trained = [[0.5, 0.7, 0.8, 0.9], [0.3, 0.5, 0.6, 0.7], [0.4, 0.9, 0.9, 0.95]]
    assert median_to_beat(trained, 0, config) is None  # warm-up epoch
    assert median_to_beat(trained, 1, config) == pytest.approx(0.7)
    assert median_to_beat(trained, 2, config) == pytest.approx(0.8)
    assert median_to_beat(trained, 3, config) is None  # the last epoch: finish the training
    assert median_to_beat(trained[:1], 1, config) is None  # fewer than the startup trials
    assert median_to_beat(trained, 1, replace(config, pruner="none")) is None


def test_a_training_that_ties_the_median_goes_on():
    from edgeship.tuning import stops

    # Keras reports float32 accuracies; the median is of the recorded (rounded) ones
    assert not stops(float(np.float32(0.8825)), 0.8825)
    assert not stops(0.88249999, 0.8825)
    assert stops(0.8824, 0.8825)
    assert not stops(0.5, None)


_PARAMS = {"model": "simple_cnn", "prune": 0.0, "qat": 0, "weight_granularity": "per-channel",
           "activations": "int8", "kernels": "dsp"}
_ONE_CHOICE = {"prune_sparsities": (0.0,), "qat_epochs": (0,), "activations": ("int8",),
               "weight_granularities": ("per-channel",), "kernels": ("dsp",)}


def _run_enqueued(config: TuneConfig, space: SearchSpace, params: list[dict]):
    """The trials of params, in order, through tune's objective on an in-memory study."""
    from edgeship.train.datasets import load_dataset
    from edgeship.tuning import DIRECTIONS, _Objective

    study = optuna.create_study(directions=list(DIRECTIONS))
    for values in params:
        study.enqueue_trial(values)
    study.optimize(_Objective(config, space, load_dataset(config.dataset)),
                   n_trials=len(params))
    return study


@needs_profile_tools
def test_a_poor_training_is_pruned_and_a_repeated_candidate_is_not_trained_again(
        tmp_path, small_dataset):
    from edgeship.train.datasets import DatasetSpec
    from edgeship.tune_report import _counts, pareto_front, trial_records

    config = TuneConfig(out=str(tmp_path), dataset=DatasetSpec(small_dataset), epochs=2,
                        calibration_samples=100, pruner_startup_trials=1,
                        pruner_warmup_epochs=0, max_ram=parse_bytes("16KB"))
    space = SearchSpace(families=("simple_cnn", "dscnn"), widths=(8,), blocks=(1,),
                        **_ONE_CHOICE)
    poor = {**_PARAMS, "model": "dscnn", "width": 8, "blocks": 1}
    study = _run_enqueued(config, space, [_PARAMS, poor, _PARAMS])
    first, pruned, repeated = study.trials
    assert first.user_attrs["status"] == "trained" and len(first.user_attrs["epoch_accuracy"]) == 2
    assert pruned.user_attrs["status"] == "pruned" and pruned.user_attrs["pruned_at_epoch"] == 1
    assert pruned.user_attrs["epoch_accuracy"][0] < first.user_attrs["epoch_accuracy"][0]
    assert pruned.values[0] == pruned.user_attrs["epoch_accuracy"][0]
    assert not (Path(pruned.user_attrs["run_dir"]) / "model_int8.tflite").exists()  # no convert
    assert repeated.user_attrs["same_as"] == 0 and repeated.values == first.values
    assert repeated.user_attrs["run_dir"] == first.user_attrs["run_dir"]
    records = trial_records(study)
    assert _counts(records) | {"trials": 3, "trained": 2, "pruned": 1} == _counts(records)
    assert [record["pruned_at_epoch"] for record in records] == [None, 1, None]
    assert [entry["trial"] for entry in pareto_front(records)] == [0]


@needs_profile_tools
def test_each_trial_trains_and_is_checked_at_its_image_size(tmp_path):
    from PIL import Image

    from edgeship.run_dir import RunDir
    from edgeship.train.datasets import DatasetSpec

    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / "images" / label).mkdir(parents=True)
        for index in range(12):
            pixels = rng.integers(0, 255, (20, 20), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "images" / label / f"{index}.png")
    config = TuneConfig(out=str(tmp_path / "tune"), epochs=1, calibration_samples=8,
                        dataset=DatasetSpec(f"folder:{tmp_path / 'images'}"))
    space = SearchSpace(families=("simple_cnn",), image_sizes=(8, 16), **_ONE_CHOICE)
    study = _run_enqueued(config, space, [{**_PARAMS, "image_size": side} for side in (8, 16)])
    shapes = [RunDir(trial.user_attrs["run_dir"]).manifest()["train"]["dataset"]["input_shape"]
              for trial in study.trials]
    assert shapes == [[8, 8, 1], [16, 16, 1]]
    small, large = (trial.user_attrs["estimate"] for trial in study.trials)
    assert small["ram"] < large["ram"] and small["flash"] < large["flash"]
    assert "at 16x16" in study.trials[1].user_attrs["candidate"]


# --- a finished tune -----------------------------------------------------------------------------

@needs_profile_tools
def test_front_models_meet_every_budget_when_profiled_again(finished):
    from edgeship.profile.run import ProfileConfig, profile_model
    from edgeship.run_dir import RunDir

    out, result = finished
    report = json.loads((out / "tune_report.json").read_text())
    assert report["front"], report["counts"]
    assert report["counts"]["trials"] == 3
    for entry in report["front"]:
        assert set(entry) >= {"run_dir", "accuracy", "ms", "ram", "flash", "reproduce"}
        profiled = profile_model(ProfileConfig(model=entry["model"], target="cortex-m4",
                                               kernels=entry["kernels"]))
        assert profiled.ram["total"] == entry["ram"] <= parse_bytes("16KB")
        assert profiled.flash["total"] == entry["flash"] <= parse_bytes("64KB")
        assert profiled.to_dict()["total"]["ms"] == pytest.approx(entry["ms"]) and entry["ms"] <= 20
        manifest = RunDir(entry["run_dir"]).manifest()
        assert {"train", "convert", "tune"} <= set(manifest)
        assert entry["reproduce"].startswith("edgeship pipeline ") and " --model " in entry["reproduce"]
        assert f"--out {entry['run_dir']}" in entry["reproduce"]
    for record in report["trials"]:  # every keras_cnn is over 16 KB of RAM before training
        if record["params"]["model"] == "keras_cnn":
            assert record["status"] == "discarded" and "ram" in record["exceeded"]
    html = (out / "tune_report.html").read_text()
    assert "Pareto front" in html and "data:image/png;base64," in html
    assert result.table.rows and len(result.table.rows) == len(report["front"])


@needs_profile_tools
def test_show_and_resume_on_a_finished_study_run_no_trial(finished, capsys):
    from edgeship.cli import main

    out, _ = finished
    before = len(_study(out).trials)
    assert main(["tune", "--show", "--out", str(out)]) == 0
    assert main(["tune", "--resume", "--out", str(out)]) == 0
    assert len(_study(out).trials) == before
    assert "Pareto front" in capsys.readouterr().out


@needs_profile_tools
def test_rerun_with_other_budgets_is_refused(finished, small_dataset, space_file):
    import edgeship

    out, _ = finished
    with pytest.raises(UserInputError, match="other settings"):
        edgeship.tune(dataset=small_dataset, out=out, config=space_file, trials=3,
                      sampler="random", **{**BUDGET, "max_ms": 5})


# --- reliability -----------------------------------------------------------------------------------

def _tune_process(out: Path, dataset: str, space_file: Path, trials: int,
                  extra: tuple[str, ...] = ()) -> subprocess.Popen:
    return subprocess.Popen(
        [*EDGESHIP, "tune", "--dataset", dataset, *BUDGET_FLAGS, "--trials", str(trials),
         "--config", str(space_file), "--sampler", "random", "--out", str(out), *extra],
        env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@needs_profile_tools
def test_a_killed_tune_resumes_and_retries_its_killed_trial(tmp_path, small_dataset, space_file):
    import edgeship

    out = tmp_path / "killed"
    worker = _tune_process(out, small_dataset, space_file, trials=2,
                           extra=("--config", str(_simple_cnn_only(tmp_path, space_file))))
    deadline = time.monotonic() + 240
    trained = out / "trials" / "trial_0000" / "manifest.json"  # train done, convert under way
    while not trained.exists() and worker.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert worker.poll() is None, worker.stdout.read()
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    killed = _study(out).trials[0]
    assert killed.state == optuna.trial.TrialState.RUNNING  # as the kill left it

    result = edgeship.tune(out=out, resume=True)
    trials = _study(out).trials
    assert trials[0].state == optuna.trial.TrialState.FAIL
    retry = next(trial for trial in trials if trial.user_attrs.get("retry_of") == 0)
    assert retry.state == optuna.trial.TrialState.COMPLETE and retry.params == killed.params
    complete = [trial for trial in trials if trial.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 2
    assert result.report["counts"]["trials"] == 3  # two complete and the killed one
    assert result.report["front"]


def _simple_cnn_only(tmp_path: Path, space_file: Path) -> Path:
    path = tmp_path / "simple.toml"
    path.write_text(space_file.read_text().replace('["simple_cnn", "keras_cnn"]',
                                                   '["simple_cnn"]'))
    return path


@needs_profile_tools
def test_two_workers_share_one_sqlite_study(tmp_path, small_dataset, space_file):
    out = tmp_path / "shared"
    simple = ("--config", str(_simple_cnn_only(tmp_path, space_file)))
    workers = [_tune_process(out, small_dataset, space_file, trials=3, extra=simple)]
    while not (out / "study.db").exists() and workers[0].poll() is None:
        time.sleep(0.2)
    workers.append(_tune_process(out, small_dataset, space_file, trials=3, extra=simple))
    outputs = [worker.communicate(timeout=400)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    _check_shared(_study(out))


def _check_shared(study) -> None:
    complete = [trial for trial in study.trials if trial.state == optuna.trial.TrialState.COMPLETE
                and not trial.user_attrs.get("surplus")]
    assert len(complete) == 3
    assert len({trial.user_attrs["run_dir"] for trial in complete}) == 3
    assert len({trial.user_attrs["worker"] for trial in complete}) == 2  # both worked


# --- slow: PostgreSQL workers and the front's full pipeline -----------------------------------------

def _postgres_user() -> str | None:
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    return None


@pytest.fixture
def postgres_url():
    """A PostgreSQL server from Debian's package on a free localhost port, as a non-root user
    (its folder outside pytest's root-only tmp_path, so that user can reach it)."""
    import tempfile

    pg_bin = next((Path(path) for path in sorted(Path("/usr/lib/postgresql").glob("*/bin"))),
                  None) if Path("/usr/lib/postgresql").is_dir() else None
    initdb = shutil.which("initdb") or (pg_bin and str(pg_bin / "initdb"))
    pg_ctl = shutil.which("pg_ctl") or (pg_bin and str(pg_bin / "pg_ctl"))
    user = _postgres_user()
    if not initdb or not pg_ctl or not Path(initdb).exists() or user is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; scripts/setup.sh "
                    "does it as root)")
    pytest.importorskip("psycopg2", reason="psycopg2-binary (edgeship[tune]) is not installed")
    folder = Path(tempfile.mkdtemp(prefix="edgeship-pg-"))
    data = folder / "pgdata"
    data.mkdir()
    as_user = ["runuser", "-u", user, "--"] if os.geteuid() == 0 else []
    if os.geteuid() == 0:
        folder.chmod(0o755)
        shutil.chown(data, user)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = subprocess.run([*as_user, initdb, "-D", str(data), "-U", user, "--auth=trust"],
                             check=False, capture_output=True, text=True)
    if started.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"initdb failed here: {started.stderr.strip().splitlines()[-1:]}")
    subprocess.run([*as_user, pg_ctl, "-D", str(data), "-l", str(data / "log"), "-w", "-o",
                    f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql://{user}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
                       check=False, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
@needs_profile_tools
def test_two_workers_share_one_postgresql_study(tmp_path, small_dataset, space_file,
                                                postgres_url):
    extra = ("--storage", postgres_url, "--config", str(_simple_cnn_only(tmp_path, space_file)))
    workers = [_tune_process(tmp_path / "a", small_dataset, space_file, 3, extra)]
    time.sleep(8)
    workers.append(_tune_process(tmp_path / "b", small_dataset, space_file, 3, extra))
    outputs = [worker.communicate(timeout=400)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    from edgeship.tuning import open_storage

    _check_shared(optuna.load_study(study_name="edgeship-tune",
                                    storage=open_storage(postgres_url)))


@pytest.mark.slow
@needs_profile_tools
def test_front_gets_the_full_pipeline_and_reproduces(tmp_path, small_dataset, space_file):
    import edgeship

    out = tmp_path / "front"
    result = edgeship.tune(dataset=small_dataset, out=out, config=space_file, trials=2,
                           sampler="random", front_pipeline=True, **BUDGET)
    for entry in result.report["front"]:
        assert Path(entry["pipeline"]["report"]).is_file()
        assert entry["pipeline"]["reproduced"], entry["pipeline"]
        assert entry["pipeline"]["failures"] == []
