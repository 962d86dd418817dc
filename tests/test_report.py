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


def test_each_member_is_its_own_train_section_between_preprocess_and_blend(tmp_path) -> None:
    import json

    from pipeline.common.paths import Paths
    from pipeline.report import read_metrics

    paths = Paths.under(tmp_path)
    files = {
        paths.metrics_path("preprocess"): {"train/drawings": 10},
        paths.for_member("gru").metrics_path("train"): {"val/map3": 0.9},
        paths.for_member("cnn").metrics_path("train"): {"val/map3": 0.8},
        paths.metrics_path("blend"): {"blend/drawings": 4},
    }
    for path, values in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    metrics = read_metrics(paths)
    assert list(metrics) == ["preprocess", "train@cnn", "train@gru", "blend"]
    assert metrics["train@gru"] == {"val/map3": 0.9}
