"""The dataset options several commands share (train, convert, inspect, tune, the pipeline)."""

from dataclasses import dataclass

from edgeship.options import format_image_size, image_size, option


def _test_size(text: str) -> float | int:
    value = float(text)
    return int(value) if value >= 1 else value


@dataclass(frozen=True)
class DatasetOptions:
    """train/datasets.py's DatasetSpec as options (name -> --dataset, seed -> --split-seed);
    tests/edgeship/test_cli.py checks they cover every DatasetSpec field."""

    dataset: str | None = option(None, help="mnist, fashion_mnist, digits, mnist5k, "
                                 "folder:PATH or npz:PATH")
    split_seed: int = option(0, help="seed of the stratified train/test split")
    test_size: float | None = option(None, parse=_test_size,
                                     help="test fraction (<1) or count for datasets split here")
    image_size: tuple[int, int] | None = option(None, parse=image_size, format=format_image_size,
                                                metavar="HxW", help="resize images, e.g. 32 or 96x96")
    channels: int | None = option(None, choices=(1, 3), help="1 or 3 channels")

    def spec(self):
        """The DatasetSpec these options describe."""
        from edgeship.dataset_spec import DatasetSpec

        return DatasetSpec(name=self.dataset, seed=self.split_seed, test_size=self.test_size,
                           image_size=self.image_size, channels=self.channels)

    @classmethod
    def from_spec(cls, spec) -> "DatasetOptions":
        return cls(dataset=spec.name, split_seed=spec.seed, test_size=spec.test_size,
                   image_size=spec.image_size, channels=spec.channels)

    @classmethod
    def from_values(cls, values: dict) -> "DatasetOptions":
        """The options among a command's values (keys: the field names)."""
        from dataclasses import fields

        return cls(**{item.name: values[item.name] for item in fields(cls) if item.name in values})


def dataset_spec_or_none(values: dict):
    """The DatasetSpec of a command's dataset options, None when --dataset is not given."""
    options = DatasetOptions.from_values(values)
    return options.spec() if options.dataset else None
