"""How the result CSV is written for the spreadsheet that opens it: the input's delimiter and decimal mark, and a
UTF-8 byte order mark when the input had one or Excel was asked for (issue 14 item 5).

Excel reads a CSV without a BOM in the machine's ANSI code page (é becomes Ã©) and splits it on the list
separator of its locale (`;` where the decimal mark is a comma): a file that came in as `;` with decimal commas
goes back out the same way, and one that came in with a BOM keeps it.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: The byte order mark as text: written first, it is the three bytes EF BB BF of UTF-8.
BOM = codecs.BOM_UTF8.decode("utf-8")


@dataclass(frozen=True)
class OutputDialect:
    delimiter: str = ","
    decimal: str = "."
    bom: bool = False


def begins_with_bom(sample: bytes) -> bool:
    """Whether a file's first bytes are the UTF-8 byte order mark."""
    return sample.startswith(codecs.BOM_UTF8)


def number_texts(values: np.ndarray, decimal: str = ".") -> list[str]:
    """Values as the shortest text that reads back as the same number ("45", "0.4", "13.5"; "" for missing),
    with `decimal` as the decimal mark: the value the engine used, exactly, whatever its digits. Each
    distinct value is formatted once."""
    x = np.asarray(values, dtype=np.float64)
    out = np.full(x.shape, "", dtype=object)
    given = np.flatnonzero(np.isfinite(x))
    if given.size:
        codes, uniques = pd.factorize(x[given])
        texts = np.asarray(uniques, dtype=np.float64).astype(str)  # the shortest text that reads back ("45.0")
        whole = np.strings.endswith(texts, ".0")
        texts[whole] = np.strings.rstrip(np.strings.rstrip(texts[whole], "0"), ".")
        if decimal != ".":
            texts = np.strings.replace(texts, ".", decimal)
        written = texts.astype(object)
        for i in np.flatnonzero(np.strings.find(texts, "e") >= 0).tolist():  # 1e-05: never exponent notation
            written[i] = np.format_float_positional(uniques[i], trim="-").replace(".", decimal)
        out[given] = written[codes]
    return out.tolist()
