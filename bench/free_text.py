"""`python -m bench.free_text [--quick] [--markdown]`: how fast `redact_text` masks free text.

Two texts, each about 1 MB of support notes, masked value by value as the data path masks a text
column (one call per row):

* dense: the labelled corpus of the tests (tests/sdk/free_text_corpus.py), where every note holds
  one to four pieces of personal data and one to three look-alikes: the worst case;
* clean: notes of the same length without digits, `@` or secret labels, as most support notes
  are: what a column costs when it holds little to find.

Each is compared, interleaved round by round, with a baseline that does far less: one `re.sub`
of a single email pattern over the same values (what a hand-written "strip emails" step costs),
and `str.replace` of one word (about what touching every value costs at all). Figures are MB/s
of UTF-8 text; the ratio is redact_text's time over the baseline's.
"""

from __future__ import annotations

import re
import sys

from veil_sdk.algorithms import compile

from bench.timing import measure_many, ratio, table
from tests.sdk.free_text_corpus import corpus

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
CLEAN_NOTE = (
    "Customer called about a refund and says the app crashes at checkout when the coupon is "
    "applied; escalated to tier two, follow up next week with the product team about it."
)


def texts(size_bytes: int) -> dict[str, list[str]]:
    dense: list[str] = []
    total = 0
    for note in corpus(size_bytes // 150):
        dense.append(note.text)
        total += len(note.text)
        if total >= size_bytes:
            break
    clean = [CLEAN_NOTE] * (size_bytes // len(CLEAN_NOTE))
    return {"dense": dense, "clean": clean}


def main(argv: list[str]) -> None:
    quick = "--quick" in argv
    markdown = "--markdown" in argv
    redact = compile({"type": "redact_text"})
    pseudonym = compile(
        {"type": "redact_text", "replace": "pseudonym", "key_id": "bench"}, keys={"bench": b"bench key"}
    )
    rows = []
    for name, values in texts(200_000 if quick else 1_000_000).items():
        megabytes = sum(len(v.encode()) for v in values) / 1e6
        timings = measure_many(
            {
                "redact_text": lambda values=values: [redact(v) for v in values],
                "redact_text pseudonym": lambda values=values: [pseudonym(v) for v in values],
                "re.sub email": lambda values=values: [EMAIL.sub("<EMAIL>", v) for v in values],
                "str.replace": lambda values=values: [v.replace("refund", "<X>") for v in values],
            },
            target_s=0.1 if quick else 0.5,
            rounds=3 if quick else 7,
        )
        for label, timing in timings.items():
            rows.append(
                (
                    name,
                    label,
                    f"{megabytes / timing.median:.1f}",
                    f"{ratio(timing, timings['re.sub email']):.1f}x",
                    f"{ratio(timing, timings['str.replace']):.1f}x",
                )
            )
    print(
        table(
            ["text", "masker", "MB/s", "time vs re.sub email", "time vs str.replace"], rows, markdown=markdown
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
