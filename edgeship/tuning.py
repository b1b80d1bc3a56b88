"""`edgeship tune`: the most accurate model that fits a device's RAM, flash and latency budgets.

A multi-objective Optuna study (int8 validation accuracy up, estimated ms and RAM down) over
the zoo's families, widths, depths, input resolutions (folder datasets), pruning, QAT, weight
granularity, activation precision and kernel variant, under hard budgets (Optuna constraints). Every candidate is first built untrained,
converted and profiled (edgeship/tune_check.py): one over budget is discarded in seconds and
recorded with the budgets it broke. The others are trained and converted into their own run
directory (DIR/trials/trial_NNNN, what `edgeship pipeline` makes, with its reproduce command),
and the delivered int8 file is profiled again. The Pareto front of the trials that meet every
budget then gets the full pipeline (validate, bench, embed, profile, report), and
tune_report.html/.json are written (edgeship/tune_report.py).

A training whose validation accuracy after an epoch is below the median of the fully trained
trials' at that epoch is stopped there (the rule of Optuna's MedianPruner; Optuna's pruners
themselves read `Trial.report`, which multi-objective studies do not support) and recorded as
pruned. A candidate with the same parameters as an earlier trained or pruned trial is not
trained again: training is seeded and deterministic, so it gets that trial's numbers.

The study lives in Optuna's RDB storage: by default DIR/study.db (SQLite), so a killed tune
resumes (its killed trial is retried with the same parameters); `--storage postgresql://...`
lets workers on several machines share one study. Each worker runs trials until the study
holds `trials` of them.
"""

import os
import socket
import time
import warnings
from pathlib import Path

import numpy as np

from edgeship.console import say
from edgeship.errors import CheckFailedError, EdgeshipError, MissingDependencyError, UserInputError
from edgeship.records import TuneTrialRecord
from edgeship.tune_check import Footprint, check_candidate, constraint_values, over_budget
from edgeship.tune_report import TuneOutcome
from edgeship.tune_space import Candidate, SearchSpace, TuneConfig, suggest

REUSED_ATTRS = ("status", "exceeded", "measured", "constraints", "estimate", "run_dir",
                "epoch_accuracy", "pruned_at_epoch")

STUDY_FILE = "study.db"
TRIALS_FOLDER = "trials"
HEARTBEAT_SECONDS = 20  # a worker on another machine that stops beating for GRACE is failed
GRACE_SECONDS = 120
DIRECTIONS = ("maximize", "minimize", "minimize")  # validation accuracy, ms, RAM
UNMEASURED_MS = 1e6  # objective value of a candidate discarded before its ms was estimated
INSTALL_HINT = "pip install 'edgeship[tune]'"


def require_optuna():
    try:
        import optuna
    except ImportError as error:
        raise MissingDependencyError(f"edgeship tune needs Optuna ({error}); install it with: "
                                     f"{INSTALL_HINT}") from error
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # heartbeats, constraints and the multivariate TPE are marked experimental by Optuna
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def _worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- storage and study -----------------------------------------------------------------------

def storage_url(config: TuneConfig) -> str:
    return config.storage or f"sqlite:///{(Path(config.out) / STUDY_FILE).resolve()}"


def open_storage(url: str):
    """Optuna's RDB storage with heartbeats (a worker that died elsewhere is failed and its
    trial retried); bad URLs, missing drivers and unreachable servers are the user's to fix."""
    require_optuna()
    import sqlalchemy.exc
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    try:
        return RDBStorage(_with_driver(url), engine_kwargs=engine, heartbeat_interval=HEARTBEAT_SECONDS,
                          grace_period=GRACE_SECONDS,
                          heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                              max_retry=1))
    except ImportError as error:
        raise MissingDependencyError(f"storage {_safe_url(url)} needs a database driver "
                                     f"({error}); install it with: {INSTALL_HINT}") from error
    except (sqlalchemy.exc.SQLAlchemyError, ValueError) as error:  # bad URL, no server
        raise UserInputError(f"cannot open storage {_safe_url(url)}: "
                             f"{str(error).splitlines()[0]}") from error


def _with_driver(url: str) -> str:
    """postgresql:// names psycopg (3) in SQLAlchemy 2.1; edgeship[tune] installs psycopg2."""
    import importlib.util

    if (url.startswith(("postgresql://", "postgres://"))
            and importlib.util.find_spec("psycopg") is None
            and importlib.util.find_spec("psycopg2") is not None):
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def _safe_url(url: str) -> str:
    """The URL without its password, for messages and reports."""
    if "://" in url and "@" in url.split("://", 1)[1]:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        return f"{scheme}://{credentials.split(':', 1)[0]}@{host}"
    return url


def _sampler(config: TuneConfig, seed: int):
    optuna = require_optuna()

    def constraints(trial) -> list[float]:
        return trial.user_attrs.get("constraints", [1.0])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's ExperimentalWarning for these options
        if config.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if config.sampler == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, constraints_func=constraints)
        return optuna.samplers.TPESampler(seed=seed, constraints_func=constraints,
                                          multivariate=True, group=True,
                                          n_startup_trials=min(10, max(4, config.trials // 3)))


def open_study(config: TuneConfig, space: SearchSpace | None, create: bool):
    """The study of config's storage and name; a new one records the settings and space, an
    existing one must have been made with the same (only --trials may change)."""
    optuna = require_optuna()
    storage = open_storage(storage_url(config))
    names = [summary.study_name for summary in optuna.get_all_study_summaries(storage)]
    exists = config.study_name in names
    if not exists and not create:
        raise UserInputError(f"no study {config.study_name!r} in {_safe_url(storage_url(config))}"
                             "; run `edgeship tune` with budgets first")
    seed = config.seed
    if exists:  # another worker or an earlier run: a seed of its own, so draws differ
        seed += len(optuna.load_study(study_name=config.study_name, storage=storage).trials)
    study = optuna.create_study(storage=storage, study_name=config.study_name,
                                directions=list(DIRECTIONS), load_if_exists=True,
                                sampler=_sampler(config, seed))
    if "settings" not in study.user_attrs:
        study.set_user_attr("settings", config.study_settings())
        study.set_user_attr("space", (space or SearchSpace()).to_dict())
        study.set_user_attr("config", config.to_dict())
    elif study.user_attrs["settings"] != config.study_settings():
        stored = study.user_attrs["settings"]
        differ = sorted(key for key in set(stored) | set(config.study_settings())
                        if stored.get(key) != config.study_settings().get(key))
        raise UserInputError(f"{config.out} holds a study made with other settings "
                             f"({', '.join(differ)}); use another --out, or --resume to go on "
                             "with its own")
    elif space is not None and study.user_attrs["space"] != space.to_dict():
        raise UserInputError(f"{config.out} holds a study over another search space; use "
                             "another --out, or --resume to go on with its own")
    return study, storage


def stored_config(config: TuneConfig, overrides: dict | None = None
                  ) -> tuple[TuneConfig, SearchSpace]:
    """The settings and space a study was made with (for --resume and --show), with `out`,
    `storage`, `study_name` from config and `trials`/`front_pipeline` from overrides."""
    optuna = require_optuna()
    storage = open_storage(storage_url(config))
    try:
        study = optuna.load_study(study_name=config.study_name, storage=storage)
    except KeyError as error:
        raise UserInputError(f"no study {config.study_name!r} in "
                             f"{_safe_url(storage_url(config))}: nothing to resume or show"
                             ) from error
    payload = dict(study.user_attrs["config"])
    payload.update(out=config.out, storage=config.storage, study_name=config.study_name)
    payload.update({key: value for key, value in (overrides or {}).items()
                    if key in ("trials", "front_pipeline") and value is not None})
    space = SearchSpace(**{key: tuple(value) for key, value in study.user_attrs["space"].items()})
    return TuneConfig.from_dict(payload), space


def _fail_dead_local_trials(study, storage) -> list[int]:
    """Trials left RUNNING by a killed worker on this machine: failed, and queued again with
    the same parameters (other machines' are failed by the heartbeat's grace period)."""
    from optuna.trial import TrialState

    host = socket.gethostname()
    retried = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker_host, _, pid = trial.user_attrs.get("worker", "").rpartition(":")
        if worker_host == host and pid.isdigit() and not _process_alive(int(pid)):
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number})
            retried.append(trial.number)
    return retried


def counted_trials(study, before: int | None = None) -> int:
    """Trials that count toward --trials: finished (not surplus) or running."""
    from optuna.trial import TrialState

    return sum(1 for trial in study.get_trials(deepcopy=False)
               if (before is None or trial.number < before)
               and (trial.state == TrialState.RUNNING
                    or (trial.state == TrialState.COMPLETE
                        and not trial.user_attrs.get("surplus"))))


# --- one trial -------------------------------------------------------------------------------

class _Objective:
    """Optuna's objective: cheap check, then train, convert and profile."""

    def __init__(self, config: TuneConfig, space: SearchSpace, dataset):
        self.config, self.space, self.dataset = config, space, dataset
        self.trials_dir = Path(config.out) / TRIALS_FOLDER
        self.datasets = {None: dataset}  # image side -> the dataset loaded at it

    def dataset_for(self, candidate: Candidate):
        """The dataset at the candidate's input resolution (loaded once per side)."""
        if candidate.image_size not in self.datasets:
            from edgeship.train.datasets import load_dataset

            self.datasets[candidate.image_size] = load_dataset(
                candidate.dataset_spec(self.config.dataset))
        return self.datasets[candidate.image_size]

    def __call__(self, trial):
        import optuna

        if counted_trials(trial.study, before=trial.number) >= self.config.trials:
            trial.set_user_attr("surplus", True)  # another worker filled the study first
            raise optuna.TrialPruned(f"the study already holds {self.config.trials} trials")
        trial.set_user_attr("worker", _worker())
        candidate = suggest(trial, self.space, self.dataset.input_shape, self.config.target)
        earlier = _same_params(trial)
        if earlier is not None:
            return self._reuse(trial, candidate, earlier)
        dataset = self.dataset_for(candidate)
        run_dir = self.trials_dir / f"trial_{trial.number:04d}"
        trial.set_user_attr("run_dir", str(run_dir.resolve()))
        trial.set_user_attr("candidate", candidate.describe())
        try:
            footprint, exceeded = self._footprint(trial, candidate, dataset)
        except MissingDependencyError:
            raise
        except Exception as error:  # one candidate's failure, not the study's
            return self._failed(trial, candidate, error, 0.0)
        trial.set_user_attr("estimate", footprint.to_dict())
        if exceeded:
            return self._discard(trial, candidate, footprint, exceeded)
        pruning = pruning_callback(trial, self.config)
        try:
            measured = train_and_measure(candidate, self.config, run_dir, dataset,
                                         callbacks=(pruning,))
        except MissingDependencyError:
            raise
        except Exception as error:  # one candidate's failure, not the study's
            return self._failed(trial, candidate, error, float(footprint.ram))
        if measured is None:
            return self._pruned(trial, candidate, footprint, pruning)
        constraints = constraint_values(measured, self.config, measured["validation_accuracy"])
        exceeded = over_budget(Footprint(measured["ram"], measured["flash"], measured["ms"], ""),
                               self.config)
        if self.config.min_accuracy is not None and (
                measured["validation_accuracy"] < self.config.min_accuracy):
            exceeded.append("min_accuracy")
        trial.set_user_attr("measured", measured)
        trial.set_user_attr("constraints", constraints)
        trial.set_user_attr("status", "trained")
        trial.set_user_attr("exceeded", exceeded)
        verdict = "meets every budget" if not exceeded else f"over {', '.join(exceeded)}"
        say(f"trial {trial.number}: {candidate.describe()}: validation accuracy "
            f"{measured['validation_accuracy']:.4f}, test {measured['accuracy']:.4f}, "
            f"{measured['ms']:.2f} ms, RAM {measured['ram']:,} B, flash {measured['flash']:,} B: "
            f"{verdict} ({measured['seconds']:.0f} s)")
        return measured["validation_accuracy"], measured["ms"], float(measured["ram"])

    def _failed(self, trial, candidate: Candidate, error: Exception, ram: float):
        """A candidate that could not be checked, trained or converted: recorded (with the
        traceback in the log when it is edgeship's own failure), and the study goes on."""
        import traceback

        internal = not isinstance(error, EdgeshipError)
        message = (f"{type(error).__name__}: " if internal else "") + " ".join(str(error).split())
        trial.set_user_attr("status", "failed")
        trial.set_user_attr("error", message)
        trial.set_user_attr("constraints",
                            [1.0] * len(constraint_values({}, self.config, None)) or [1.0])
        say(f"trial {trial.number}: {candidate.describe()}: failed: {message}")
        if internal:
            say(traceback.format_exc())
        return 0.0, UNMEASURED_MS, ram

    def _pruned(self, trial, candidate: Candidate, footprint: Footprint, pruning):
        """A training the pruner stopped: its last validation accuracy (float model) and the
        untrained footprint are its objective values; it is never on the front."""
        accuracy = pruning.accuracies[-1]
        trial.set_user_attr("status", "pruned")
        trial.set_user_attr("exceeded", [])
        trial.set_user_attr("constraints", constraint_values(
            {"ram": footprint.ram, "flash": footprint.flash, "ms": footprint.ms}, self.config,
            accuracy))
        say(f"trial {trial.number}: {candidate.describe()}: pruned after epoch "
            f"{pruning.pruned_at} of {self.config.epochs} (validation accuracy {accuracy:.4f} "
            f"< median {pruning.median:.4f} of the trained trials)")
        return accuracy, footprint.ms, float(footprint.ram)

    def _reuse(self, trial, candidate: Candidate, earlier):
        """An earlier trial with the same parameters: its numbers, not a second training."""
        for name in REUSED_ATTRS:
            if name in earlier.user_attrs:
                trial.set_user_attr(name, earlier.user_attrs[name])
        trial.set_user_attr("same_as", earlier.number)
        say(f"trial {trial.number}: {candidate.describe()}: the parameters of trial "
            f"{earlier.number}: its result, not trained again")
        return tuple(earlier.values)

    def _footprint(self, trial, candidate: Candidate, dataset) -> tuple[Footprint, list[str]]:
        """The cheap check, or its result for the same graph from an earlier trial."""
        key = candidate.footprint_key()
        trial.set_user_attr("footprint_key", key)
        for earlier in trial.study.get_trials(deepcopy=False):
            estimate = earlier.user_attrs.get("estimate")
            if (earlier.user_attrs.get("footprint_key") == key and estimate
                    and estimate["source"] == "profile of the untrained model"):
                footprint = Footprint(estimate["ram"], estimate["flash"], estimate["ms"],
                                      f"{estimate['source']} (trial {earlier.number}'s)", 0.0)
                return footprint, over_budget(footprint, self.config)
        return check_candidate(candidate, self.config, dataset.input_shape,
                               dataset.num_classes, dataset.x_train[:64])

    def _discard(self, trial, candidate: Candidate, footprint: Footprint, exceeded: list[str]):
        measured = {"ram": footprint.ram, "flash": footprint.flash, "ms": footprint.ms}
        trial.set_user_attr("status", "discarded")
        trial.set_user_attr("exceeded", exceeded)
        trial.set_user_attr("constraints", constraint_values(measured, self.config, None))
        limits = self.config.budgets()
        details = ", ".join(f"{name} {measured[name]:,.6g} > {limits[name]:,.6g}"
                            for name in exceeded)
        say(f"trial {trial.number}: {candidate.describe()}: discarded untrained ({details}; "
            f"{footprint.source}) in {footprint.seconds:.1f} s")
        return (0.0, footprint.ms if footprint.ms is not None else UNMEASURED_MS,
                float(footprint.ram))


def _same_params(trial):
    """The earliest complete trial (trained or pruned, not failed) with trial's parameters."""
    from optuna.trial import TrialState

    for earlier in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if (earlier.number < trial.number and earlier.params == trial.params
                and earlier.user_attrs.get("status") in ("trained", "pruned")):
            return earlier
    return None


def median_to_beat(trained: list[list[float]], epoch: int, config: TuneConfig) -> float | None:
    """The validation accuracy a training must reach after `epoch` (0-based) to go on: the
    median of the fully trained trials' at that epoch (MedianPruner's rule), or None where
    the pruner does not judge (off, warm-up epochs, the last epoch, too few trained trials)."""
    if (config.pruner == "none" or epoch + 1 <= config.pruner_warmup_epochs
            or epoch + 1 >= config.epochs):
        return None
    at_epoch = [history[epoch] for history in trained if len(history) > epoch]
    if not at_epoch or len(at_epoch) < max(1, config.pruner_startup_trials):
        return None
    return float(np.median(at_epoch))


def stops(accuracy: float, median: float | None) -> bool:
    """Whether a training at `accuracy` stops below `median` (median_to_beat's). Compared as
    recorded (6 decimals): a training that ties the median, as a retraining of the same
    graph with the same seed does, goes on."""
    return median is not None and round(float(accuracy), 6) < median


def pruning_callback(trial, config: TuneConfig):
    """A Keras callback that records the validation accuracy of each epoch in the trial and
    stops the training when it falls below `median_to_beat`."""
    from optuna.trial import TrialState

    from edgeship.deps import import_tf_keras

    _, tf_keras = import_tf_keras()

    class MedianPruning(tf_keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.accuracies: list[float] = []
            self.pruned_at: int | None = None
            self.median: float | None = None

        def on_epoch_end(self, epoch, logs=None):
            accuracy = (logs or {}).get("val_accuracy")
            if accuracy is None:  # no validation hold-out: nothing to judge by
                return
            self.accuracies.append(round(float(accuracy), 6))
            trial.set_user_attr("epoch_accuracy", self.accuracies)
            trained = [earlier.user_attrs["epoch_accuracy"] for earlier in trial.study.get_trials(
                deepcopy=False, states=(TrialState.COMPLETE,))
                if earlier.user_attrs.get("status") == "trained"
                and "same_as" not in earlier.user_attrs
                and earlier.user_attrs.get("epoch_accuracy")]
            median = median_to_beat(trained, epoch, config)
            if stops(accuracy, median):
                self.pruned_at, self.median = epoch + 1, median
                trial.set_user_attr("pruned_at_epoch", epoch + 1)
                self.model.stop_training = True

    return MedianPruning()


def validation_rows(train_images: int, seed: int) -> np.ndarray:
    """The training split's rows `edgeship train` held out (never fitted): the search ranks
    candidates on them, so the test split stays unseen by the search."""
    from edgeship.train.fit import TrainConfig, _validation_rows

    fraction = TrainConfig.__dataclass_fields__["validation_split"].default
    return _validation_rows(train_images, fraction, seed)[1]


def train_and_measure(candidate: Candidate, config: TuneConfig, run_dir: Path, dataset,
                      callbacks: tuple = ()) -> dict | None:
    """Train and convert the candidate into run_dir (as `edgeship pipeline` would), then
    profile the delivered file; its int8 accuracy on the validation hold-out and the test split.
    None when a callback (the pruner) stopped the training: nothing is converted."""
    from dataclasses import replace

    from edgeship.artifacts import write_json_atomic
    from edgeship.commands import OptionGroup, get_command, option_values_of
    from edgeship.convert.report import predict
    from edgeship.convert.run import run_convert
    from edgeship.deps import import_tf_keras
    from edgeship.pipeline_config import reproduce_commands
    from edgeship.profile.run import ProfileConfig, profile_model
    from edgeship.run_dir import ArtifactKind, RunDir
    from edgeship.train.fit import train

    started = time.perf_counter()
    pipeline = candidate.pipeline_config(config, run_dir)
    _, tf_keras = import_tf_keras()
    tf_keras.backend.clear_session()
    train(pipeline.train, dataset=dataset, callbacks=callbacks)
    if any(getattr(callback, "pruned_at", None) for callback in callbacks):
        tf_keras.backend.clear_session()
        return None
    # ONNX files and the XNNPACK rewrite do not change the MCU file: the front's pipeline makes them.
    converted = run_convert(replace(pipeline.convert, onnx=False, xnnpack="off"))
    kind = (ArtifactKind.INT16_TFLITE if candidate.activations == "int16"
            and RunDir(run_dir).has(ArtifactKind.INT16_TFLITE) else ArtifactKind.INT8_TFLITE)
    model_path = RunDir(run_dir).path_of(kind)
    accuracy = next(row["accuracy"] for row in converted.report["artifacts"]
                    if row["file"] == kind.file_name)
    rows = validation_rows(len(dataset.y_train), config.seed)
    predicted = np.argmax(predict(model_path, dataset.x_train[rows]), axis=1)
    validation_accuracy = float(np.mean(predicted == dataset.y_train[rows]))
    report = profile_model(ProfileConfig(model=str(model_path), target=config.target,
                                         clock_mhz=config.clock_mhz, kernels=candidate.kernels))
    profile = report.to_dict()
    profile_path = write_json_atomic(run_dir / "tune_profile.json", profile)
    profile_command = get_command("profile").command_line({
        **option_values_of(pipeline.profile, OptionGroup(ProfileConfig)),
        "model": str(model_path), "json": str(profile_path)})
    measured = {"model": str(model_path.resolve()), "accuracy": float(accuracy),
                "validation_accuracy": round(validation_accuracy, 6),
                "ms": float(profile["total"]["ms"]), "ram": int(report.ram["total"]),
                "flash": int(report.flash["total"]), "kernels": report.kernels,
                "reproduce": reproduce_commands(pipeline)[0],
                "profile_command": profile_command,
                "seconds": round(time.perf_counter() - started, 1)}
    RunDir(run_dir).write(TuneTrialRecord(candidate=candidate.describe(), measured=measured,
                                          target=config.target),
                          artifacts={profile_path.name: profile_path})
    tf_keras.backend.clear_session()
    return measured


# --- the study -------------------------------------------------------------------------------

def check_tools() -> None:
    """The profile needs the Arm compiler and the emulator: one error naming both fixes."""
    import importlib.util
    import shutil

    from edgeship.pipeline import ARM_TOOLCHAIN_INSTALL

    if shutil.which("arm-none-eabi-gcc") is None:
        raise MissingDependencyError("edgeship tune profiles every candidate with "
                                     f"arm-none-eabi-gcc, which is not installed: "
                                     f"`{ARM_TOOLCHAIN_INSTALL}`")
    missing = [package for module, package in (("unicorn", "unicorn"), ("capstone", "capstone"),
                                               ("elftools", "pyelftools"))
               if importlib.util.find_spec(module) is None]
    if missing:
        raise MissingDependencyError(f"edgeship tune needs the emulator: pip install "
                                     f"{' '.join(missing)}")


def run_tune(config: TuneConfig, space: SearchSpace | None = None) -> TuneOutcome:
    """Run trials until the study holds config.trials, then pipeline the front and report.

    Raises:
        UserInputError: bad options, a study made with other settings, a bad storage URL.
        CheckFailedError: no trained candidate met every budget (the report is written).
    """
    from edgeship.train.datasets import load_dataset

    if config.out is None or config.dataset is None:
        raise UserInputError("edgeship tune needs --dataset and --out")
    space = space or SearchSpace()
    if space.image_sizes and not config.dataset.name.startswith("folder:"):
        raise UserInputError(f"search space: image_sizes are searched on folder datasets only, "
                             f"not {config.dataset.name}")
    require_optuna()
    check_tools()
    Path(config.out).mkdir(parents=True, exist_ok=True)
    study, storage = open_study(config, space, create=True)
    retried = _fail_dead_local_trials(study, storage)
    if retried:
        say(f"tune: trial(s) {', '.join(map(str, retried))} of a killed run failed; "
            "queued again with the same parameters")
    dataset = load_dataset(config.dataset)
    from edgeship.deps import import_tf_keras

    import_tf_keras()  # once, before the trials: not a cost of the first candidate's check
    objective = _Objective(config, space, dataset)
    done = counted_trials(study)
    say(f"tune: study {config.study_name!r} in {_safe_url(storage_url(config))}: {done} of "
        f"{config.trials} trials done")
    while counted_trials(study) < config.trials:
        study.optimize(objective, n_trials=1)
    return finish(config, study, pipeline_front=config.front_pipeline)


def show_tune(config: TuneConfig) -> TuneOutcome:
    """The report of a study as it stands: no trials run, no pipelines."""
    config, _ = stored_config(config)
    study, _ = open_study(config, None, create=False)
    return finish(config, study, pipeline_front=False)


def resume_tune(config: TuneConfig, overrides: dict | None = None) -> TuneOutcome:
    """Go on with a study's own settings and space (up to overrides' `trials` if given)."""
    stored, space = stored_config(config, overrides)
    return run_tune(stored, space)


def finish(config: TuneConfig, study, pipeline_front: bool) -> TuneOutcome:
    from edgeship.tune_report import pareto_front, trial_records, write_report

    records = trial_records(study)
    front = pareto_front(records)
    if pipeline_front:
        for record in front:
            record["pipeline"] = run_front_pipeline(record, config)
    else:
        from edgeship.tune_report import recorded_pipeline

        for record in front:
            record["pipeline"] = recorded_pipeline(record)
    outcome = write_report(config, study, records, front, _safe_url(storage_url(config)))
    if not front:
        error = CheckFailedError(f"no trained model of {len(records)} trials met every budget "
                                 f"({outcome.report['counts']}); see {outcome.html_path}")
        error.outcome = outcome
        raise error
    return outcome


def run_front_pipeline(record: dict, config: TuneConfig) -> dict:
    """The full pipeline on a front model's run directory (its train and convert are redone,
    from the same seed: the accuracy it reaches says whether the trial reproduces)."""
    from edgeship.pipeline import run_pipeline
    from edgeship.tune_report import recorded_pipeline

    run_dir = Path(record["run_dir"])
    if not run_dir.is_dir():
        return {"note": f"{run_dir} is on another worker's machine"}
    candidate = Candidate.from_params(record["params"])
    say(f"tune: full pipeline on trial {record['trial']} ({candidate.describe()}) in {run_dir}")
    try:
        result = run_pipeline(candidate.pipeline_config(config, run_dir), log=say)
    except UserInputError as error:  # another worker holds its lock, or the run cannot redo
        return {"note": " ".join(str(error).split())}
    summary = recorded_pipeline(record)
    summary["failures"] = list(result.failures)
    return summary
