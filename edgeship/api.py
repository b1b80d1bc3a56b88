"""edgeship from Python: every command as a function, for models trained in a notebook.

The functions are made from the command specs (edgeship/commands/): each takes the command's
options by the flags' names in snake case (`qat`, `max_drop`, `bench_runs`; the config
fields' own names are accepted too) with the same defaults as the CLI, builds the same config
dataclass, calls the same library function, and returns a `Result` whose `table` prints as
the CLI's summary and converts to a pandas DataFrame. Errors are the CLI's one-line messages as
exceptions: `UserInputError` (bad input: exit 2 on the CLI), `CheckFailedError` (a gate failed:
exit 1; the result is attached as `error.result`), `ToolFailureError` (a converter failed:
exit 3). No function here exits the interpreter.

    from edgeship import api
    (x_train, y_train), (x_test, y_test) = api.load_data("fashion_mnist")
    ...  # build and fit a Keras model
    result = api.convert(model, data=((x_train, y_train), (x_test, y_test)), out="runs/nb")
    print(result)

`convert` also takes a model object and the notebook's arrays (data=, calibration=,
class_names=); the run folder keeps of them only what later stages need (the test split and a
2,000-image training sample unless fine-tuning reads the whole split). `edgeship.train`,
`edgeship.convert`, `edgeship.inspect` and `edgeship.profile` are the packages of those
stages: their functions are `edgeship.api.train()` and so on. TensorFlow is imported only
inside the calls (`import edgeship.api` stays light).
"""

import numpy as np

from edgeship.commands import get_command
from edgeship.commands.notebook_data import DATA_FILE, KEPT_TRAINING_IMAGES
from edgeship.commands.result import ConvertResult, Result
from edgeship.errors import UserInputError

__all__ = ["DATA_FILE", "KEPT_TRAINING_IMAGES", "ConvertResult", "Result", "bench", "codegen",
           "convert", "dataset_class_names", "embed", "inspect", "load_data", "pipeline",
           "profile", "serve_demo", "train", "tune", "validate"]


def _spec_options(spec_options: dict) -> dict:
    from dataclasses import fields

    from edgeship.train.datasets import DatasetSpec

    names = {item.name for item in fields(DatasetSpec)} - {"name"}
    unknown = sorted(set(spec_options) - names)
    if unknown:
        raise UserInputError(f"unknown dataset option(s) {', '.join(unknown)}; valid: "
                             f"{', '.join(sorted(names))}")
    return {key: tuple(value) if isinstance(value, list) else value
            for key, value in spec_options.items()}


# --- data ---------------------------------------------------------------------------------------

def load_data(name: str, **spec_options) -> tuple[tuple[np.ndarray, np.ndarray],
                                                   tuple[np.ndarray, np.ndarray]]:
    """A dataset as Keras' `load_data()` returns it, with edgeship's preprocessing applied.

    Args:
        name: any dataset `edgeship train --dataset` takes (mnist5k, fashion_mnist, digits,
            folder:PATH, npz:PATH, ...).
        **spec_options: DatasetSpec fields (seed, test_size, image_size, channels).

    Returns:
        ((x_train, y_train), (x_test, y_test)): float32 NHWC images scaled as the CLI scales
        them, int64 labels. `dataset_class_names(name)` gives the class names.

    Every image is decoded into memory (4 bytes per pixel and channel: 100,000 96x96 RGB
    images take 11 GB). A folder or npz dataset bigger than memory goes by name to
    `train(dataset=...)`, `convert` and `validate`, which stream it.
    """
    dataset = _load(name, spec_options)
    return (dataset.x_train, dataset.y_train), (dataset.x_test, dataset.y_test)


def dataset_class_names(name: str, **spec_options) -> tuple[str, ...]:
    """The class names of a dataset, in label order (a large folder's without decoding it)."""
    from edgeship.train.datasets import DatasetSpec
    from edgeship.train.stage_data import close_dataset, open_stage_dataset

    dataset = open_stage_dataset(DatasetSpec(name=name, **_spec_options(spec_options)))
    close_dataset(dataset)
    return dataset.class_names


def _load(name: str, spec_options: dict):
    from edgeship.train.datasets import DatasetSpec, load_dataset

    return load_dataset(DatasetSpec(name=name, **_spec_options(spec_options)))


# --- the commands, from their specs -------------------------------------------------------------

train = get_command("train").api_function()
convert = get_command("convert").api_function()
pipeline = get_command("pipeline").api_function()
validate = get_command("validate").api_function()
inspect = get_command("inspect").api_function()
bench = get_command("bench").api_function()
codegen = get_command("codegen").api_function()
profile = get_command("profile").api_function()
embed = get_command("embed").api_function()
serve_demo = get_command("serve-demo").api_function()
tune = get_command("tune").api_function()
