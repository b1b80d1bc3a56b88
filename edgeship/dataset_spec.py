"""DatasetSpec: which dataset and how it is split and shaped, as every run's manifest records
it. Part of the core (edgeship.run_dir reads it back) so that the core imports no stage;
train/datasets.py loads what it names."""

from dataclasses import asdict, dataclass

from edgeship.errors import UserInputError

__all__ = ["DatasetSpec"]


@dataclass(frozen=True)
class DatasetSpec:
    """What to load and how to split and shape it; stored with every model.

    Attributes:
        name: dataset name (see BUILTIN_DATASETS) or "folder:PATH" / "npz:PATH".
        seed: seed of the stratified train/test split (datasets that ship no split).
        test_size: fraction (0-1) or count of test images for datasets split here;
            None uses the dataset's default (1,000 for mnist5k, 0.2 otherwise).
        image_size: (height, width) to resize to; None keeps the dataset's size
            (folder datasets then default to 28x28).
        channels: 1 or 3; None keeps the dataset's channels (folder datasets: 1).
    """

    name: str
    seed: int = 0
    test_size: float | int | None = None
    image_size: tuple[int, int] | None = None
    channels: int | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise UserInputError("dataset name must be a non-empty string")
        if self.channels not in (None, 1, 3):
            raise UserInputError(f"channels must be 1 or 3, got {self.channels}")
        if self.image_size is not None:
            size = tuple(int(side) for side in self.image_size)
            if len(size) != 2 or min(size) < 1:
                raise UserInputError(f"image_size must be two positive sides, got {self.image_size}")
            object.__setattr__(self, "image_size", size)
        if self.test_size is not None and not (0 < self.test_size):
            raise UserInputError(f"test_size must be positive, got {self.test_size}")

    def to_dict(self) -> dict:
        """Plain JSON form, as stored in manifest.json."""
        return asdict(self) | {"image_size": list(self.image_size) if self.image_size else None}

    @classmethod
    def from_dict(cls, payload: dict) -> "DatasetSpec":
        """Inverse of to_dict; ignores keys this version does not know."""
        known = {key: payload[key] for key in ("name", "seed", "test_size", "image_size", "channels")
                 if key in payload}
        if known.get("image_size") is not None:
            known["image_size"] = tuple(known["image_size"])
        return cls(**known)
