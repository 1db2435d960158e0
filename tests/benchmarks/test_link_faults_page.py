"""benchmarks/link_faults.py's page, from made-up campaigns (no simulation)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))

import link_faults  # noqa: E402


def campaign(outcome, faults, retries):
    return {"sessions": [{"faults": faults, "outcome": outcome, "error": None}], "retries": retries,
            "seconds": 12.0, "stats": {"frames": 9, "retries": 2, "error_replies": {"bad CRC": 1}}}


def test_page_has_the_session_and_fault_tables(tmp_path):
    campaigns = {"with retries": campaign("correct", [["host->board", "bit_flip"], ["board->host", "drop"]], 8),
                 "without retries": campaign("clear_error", [["board->host", "drop"]], 0)}
    path = link_faults.write_docs(tmp_path, ["--docs"], campaigns, 0.25)
    text = path.read_text()
    assert "`python benchmarks/link_faults.py --docs`" in text
    assert "| with retries | 8 | 1 | 2 | 1 | 0 | 0 | 12 s |" in text
    assert "| host->board | bit_flip | 1 | 1 | 0 | 0 |" in text
    assert "| board->host | drop | 1 | 0 | 1 | 0 |" in text          # the campaign without retries
    assert "| error replies: bad CRC | 1 |" in text
