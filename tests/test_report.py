"""The run report: every stage's metrics, per stage, zero per-reason counts left out."""

from __future__ import annotations

from pipeline.report import format_report


def test_report_lists_stages_in_order_and_hides_zero_breakdowns() -> None:
    metrics = {
        "preprocess": {"rejected_rows": 0, "rejected/empty": 0, "rejected/xy_mismatch": 3},
        "evaluate": {"val/map3": 0.912345, "val/drawings": 12000, "time_s": 123.456},
    }
    assert format_report(metrics).splitlines() == [
        "preprocess",
        "  rejected/xy_mismatch         3",
        "  rejected_rows                0",
        "evaluate",
        "  time_s                       123.5",
        "  val/drawings                 12,000",
        "  val/map3                     0.9123",
    ]
    assert "rejected/empty" in format_report(metrics, show_all=True)
