"""What an API call returns: a table that prints as the CLI's summary, the paths written and
the raw report."""

from dataclasses import dataclass, field
from pathlib import Path

from edgeship.errors import CheckFailedError
from edgeship.tables import Table


@dataclass(frozen=True)
class Result:
    """What a call measured: `table` (prints as the CLI's summary), `paths` and the raw report."""

    table: Table
    paths: dict[str, Path] = field(default_factory=dict)
    report: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return str(self.table)

    def _repr_html_(self) -> str:
        return self.table._repr_html_()

    def to_pandas(self):
        return self.table.to_pandas()


@dataclass(frozen=True)
class ConvertResult(Result):
    """`drop_pp`: the delivered int8 TFLite's accuracy drop in points (None without int8)."""

    out_dir: Path | None = None

    @property
    def drop_pp(self) -> float | None:
        from edgeship.run_dir import ArtifactKind

        for row in self.report.get("artifacts", []):
            if row["file"] == ArtifactKind.INT8_TFLITE.file_name:
                return row["drop_pp"]
        return None


def raise_failed(message: str, result: Result) -> None:
    """The API's exit 1: CheckFailedError with the result attached as `error.result`."""
    error = CheckFailedError(message)
    error.result = result
    raise error
