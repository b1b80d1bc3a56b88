"""`edgeship train`: a zoo model on a dataset -> a run directory."""

from pathlib import Path

from edgeship.commands import Command, OptionGroup
from edgeship.commands.dataset import DatasetOptions
from edgeship.train.fit import TrainConfig
from edgeship.train.models import ModelOptions

GROUPS = (OptionGroup(TrainConfig), OptionGroup(DatasetOptions),
          OptionGroup(ModelOptions))


def build(values: dict) -> TrainConfig:
    from edgeship.errors import UserInputError

    dataset = DatasetOptions.from_values(values)
    if not dataset.dataset:
        raise UserInputError("edgeship train needs --dataset (e.g. mnist5k)")
    return TrainConfig(**{item.name: values[item.name] for item in GROUPS[0].options()},
                       dataset=dataset.spec(),
                       model_options=ModelOptions(**{item.name: values[item.name]
                                                     for item in GROUPS[2].options()}))


def execute(config: TrainConfig, values: dict):
    from edgeship.train.fit import train

    return train(config)


def render(result, values: dict) -> int:
    print(f"test accuracy: {result.test_accuracy:.4f} ({result.epochs_run} epochs, "
          f"{result.seconds:.1f} s) -> {result.run_dir}")
    return 0


def result(outcome, values: dict):
    from edgeship.commands.result import Result
    from edgeship.tables import Table

    record = {"run_dir": str(outcome.run_dir), "test_accuracy": outcome.test_accuracy,
              "test_loss": outcome.test_loss, "epochs_run": outcome.epochs_run,
              "seconds": outcome.seconds}
    return Result(Table.from_records(f"edgeship train {values['model']} on {values['dataset']}",
                                     [record], tuple(record)),
                  {"run_dir": Path(outcome.run_dir)}, record)


COMMAND = Command("train", "train a zoo model and write a run directory", GROUPS, build,
                  execute, render, result)
