"""The bounds an import reads a file within, and the error that refuses a file as a whole."""

from __future__ import annotations


class ImportFileError(ValueError):
    """The file cannot be imported as a whole; the message tells the person what to do."""


MB = 1024 * 1024
# The csv module refuses a cell over 128 KB by default, failing the whole file; a large cell is a
# row problem (the row checks refuse an over-long value with its line). Past this, the file.
CELL_LIMIT = 16 * MB
# A row whose cells together hold more text than this is refused (a problem of its row), in
# whichever columns, imported or ignored: no row of people's data is this large.
ROW_LIMIT = MB
MAX_COLUMNS = 200
