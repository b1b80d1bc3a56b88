"""Result tables of the Python API: print as aligned text, render in notebooks, become DataFrames.

A `Table` is plain data (column names and rows of JSON-able values), so a result can be
printed in a terminal, shown as HTML by Jupyter (`_repr_html_`) and handed to pandas when it
is installed (`to_pandas()`), without edgeship depending on pandas.
"""

import html
import math
from dataclasses import dataclass


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:.4f}".rstrip("0").rstrip(".") if abs(value) < 100 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


@dataclass(frozen=True)
class Table:
    """Rows of one result: `columns` names the fields, each row is a tuple in that order."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple, ...]

    @classmethod
    def from_records(cls, title: str, records: list[dict], columns: tuple[str, ...]) -> "Table":
        """A table of the named keys of each record (a missing key is an empty cell)."""
        return cls(title, tuple(columns),
                   tuple(tuple(record.get(column) for column in columns) for record in records))

    def __len__(self) -> int:
        return len(self.rows)

    def records(self) -> list[dict]:
        """The rows as dicts keyed by column name."""
        return [dict(zip(self.columns, row)) for row in self.rows]

    def column(self, name: str) -> list:
        """All values of one column."""
        index = self.columns.index(name)
        return [row[index] for row in self.rows]

    def to_pandas(self):
        """A pandas DataFrame of the rows (pandas must be installed)."""
        try:
            import pandas
        except ImportError as error:
            raise ImportError("to_pandas() needs pandas: pip install pandas") from error
        return pandas.DataFrame(self.records(), columns=list(self.columns))

    def __str__(self) -> str:
        cells = [list(self.columns)] + [[_cell(value) for value in row] for row in self.rows]
        widths = [max(len(line[index]) for line in cells) for index in range(len(self.columns))]
        numeric = [all(isinstance(row[index], (int, float)) or row[index] is None
                       for row in self.rows) for index in range(len(self.columns))]

        def line(values):
            return "  ".join(value.rjust(width) if right else value.ljust(width)
                             for value, width, right in zip(values, widths, numeric)).rstrip()

        rule = "  ".join("-" * width for width in widths)
        return "\n".join([self.title, line(cells[0]), rule] + [line(row) for row in cells[1:]])

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(column)}</th>" for column in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(value))}</td>" for value in row)
                       + "</tr>" for row in self.rows)
        return (f"<p><b>{html.escape(self.title)}</b></p><table><thead><tr>{head}</tr></thead>"
                f"<tbody>{body}</tbody></table>")
