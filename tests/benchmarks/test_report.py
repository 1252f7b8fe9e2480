"""benchmarks/report.py: from samples to results, ratios, targets, tables, JSON and docs."""

from __future__ import annotations

import json

import pytest

from benchmarks import report
from benchmarks.report import TABLE_END, TABLE_START, Result, Sample

MACHINE = {"cpu_model": "Test CPU", "cpu_count": 2, "commit": "abc1234", "date": "2026-01-01"}


def throughput(system, wf_per_s, *, rep=1, processes=None, concurrency=None, **extra):
    kind = "floor" if system == "floor" else "throughput" if processes else "peer"
    out = {"system": system, "n": 500, "wf_per_s": wf_per_s, "drain_wf_per_s": 2 * wf_per_s}
    return Sample(
        kind=kind,
        system=system,
        rep=rep,
        processes=processes,
        concurrency=concurrency,
        output=out | extra,
    )


def ours(wf_per_s, *, rep=1, processes=1, concurrency=1, **extra):
    extra = {"cpu_ms_per_wf": 0.5, "claim_p50_ms": 1.0} | extra
    return throughput(
        "durable-sa", wf_per_s, rep=rep, processes=processes, concurrency=concurrency, **extra
    )


def full_run():
    """Three repetitions of every scenario, all targets met except where noted."""
    samples = []
    for rep, jitter in ((1, 0.0), (2, 10.0), (3, -10.0)):
        samples += [
            throughput("floor", 400 + jitter, rep=rep),
            ours(500 + jitter, rep=rep),
            ours(900 + jitter, rep=rep, concurrency=16),
            ours(1100 + jitter, rep=rep, processes=4, concurrency=16),
            throughput("dbos", 100 + jitter, rep=rep, concurrency=1),
            throughput("procrastinate", 150 + jitter, rep=rep, concurrency=1),
            Sample(
                kind="latency",
                system="durable-sa",
                rep=rep,
                output={"n": 200, "p50_ms": 3.0, "p99_ms": 9.0, "first_call_p50_ms": 1.5},
            ),
            Sample(
                kind="history",
                system="durable-sa",
                rep=rep,
                output={"n": 500, "wf_per_s": 480 + jitter, "claim_p50_ms": 1.05},
            ),
            Sample(kind="memory", system="durable-sa", rep=rep, output={"growth_pct": 12.0}),
            Sample(
                kind="fanout",
                system="durable-sa",
                rep=rep,
                output={"n": 20, "entry_ms": 10, "entries": 16, "p50_ms": 25.0},
            ),
            Sample(
                kind="sqlite_floor", system="floor", rep=rep, output={"n": 500, "wf_per_s": 1000}
            ),
            Sample(kind="sqlite", system="durable-sa", rep=rep, output={"n": 500, "wf_per_s": 800}),
        ]
    return samples


def by_id(found):
    return {t.id: t for t in found}


# --------------------------------------------------------------------------- metrics, aggregation


def test_a_throughput_sample_gives_its_figures_under_config_names():
    metrics = report.metrics_from_sample(ours(500, processes=2, concurrency=4))
    assert {m.scenario: (m.value, m.unit) for m in metrics} == {
        "throughput_p2_c4": (500.0, "wf/s"),
        "drain_throughput_p2_c4": (1000.0, "wf/s"),
        "cpu_per_wf_p2_c4": (0.5, "ms"),
        "claim_p50_p2_c4": (1.0, "ms"),
    }
    assert all(m.config == {"processes": 2, "concurrency": 4} for m in metrics)
    assert all(m.n == 500 for m in metrics)


def test_peers_are_named_by_concurrency_and_absent_keys_are_skipped():
    metrics = report.metrics_from_sample(throughput("dbos", 40.0, concurrency=4))
    assert [m.scenario for m in metrics] == ["throughput_c4", "drain_throughput_c4"]


def test_a_failed_sample_gives_no_figures():
    assert report.metrics_from_sample(Sample("throughput", "durable-sa", 1, error="boom")) == []


def test_an_unknown_kind_is_a_bug():
    with pytest.raises(ValueError, match="unknown sample kind"):
        report.metrics_from_sample(Sample("nonsense", "durable-sa", 1, output={}))


def test_aggregate_takes_median_min_and_max_over_repetitions():
    samples = [ours(v, rep=i) for i, v in enumerate((300, 100, 200), start=1)]
    result = report.find(report.aggregate(samples), "durable-sa", "throughput_p1_c1")
    assert result is not None
    assert (result.median, result.min, result.max) == (200, 100, 300)
    assert result.samples == (300, 100, 200)


def test_aggregate_orders_rows_floor_first_then_ours_by_processes_and_concurrency():
    samples = [
        throughput("dbos", 1, concurrency=1),
        ours(3, processes=2, concurrency=16),
        ours(2, concurrency=4),
        ours(1),
        throughput("floor", 1),
    ]
    names = [(r.system, r.scenario) for r in report.aggregate(samples) if "drain" not in r.scenario]
    assert names[:5] == [
        ("floor", "throughput"),
        ("durable-sa", "throughput_p1_c1"),
        ("durable-sa", "throughput_p1_c4"),
        ("durable-sa", "throughput_p2_c16"),
        ("dbos", "throughput_c1"),
    ]


# --------------------------------------------------------------------------- ratios and targets


def test_ratios_divide_one_worker_by_the_floor_and_each_peer_at_c1():
    results = report.aggregate(full_run())
    assert report.ratios(results) == {
        "floor_1w": pytest.approx(500 / 400),
        "dbos_1w": pytest.approx(5.0),
        "procrastinate_1w": pytest.approx(500 / 150),
    }


def test_a_missing_figure_makes_its_ratio_none():
    results = report.aggregate([ours(500), throughput("floor", 0.0)])
    assert report.ratios(results) == {"floor_1w": None, "dbos_1w": None, "procrastinate_1w": None}


def test_targets_pass_and_fail_on_medians():
    found = by_id(report.targets(report.aggregate(full_run())))
    assert {key: t.verdict for key, t in found.items()} == {
        "s2_floor_1w": "PASS",
        "s2_dbos_1w": "PASS",
        "s2_procrastinate_1w": "PASS",
        "s2_best_under_load": "PASS",  # 1100 / 400 with P=4
        "s2_cpu_per_wf": "PASS",
        "s3_latency_p50": "PASS",
        "s3_first_call_p50": "PASS",
        "s4_throughput": "PASS",  # 480 / 500
        "s4_claim": "PASS",  # 1.05 / 1.0
        "s5_memory": "FAIL",  # 12 % growth
        "s6_fanout": "PASS",  # 25 ms <= 30 ms
        "s7_sqlite": "PASS",  # 800 / 1000
    }
    assert found["s2_best_under_load"].row == ("durable-sa", "throughput_p4_c16")
    assert found["s2_best_under_load"].measured == pytest.approx(1100 / 400)
    assert found["s5_memory"].detail == "12.0 % (needs < 10.0 %)"


def test_targets_without_figures_are_not_judged():
    found = report.targets(report.aggregate([ours(500)]))
    verdicts = {t.id: t.verdict for t in found}
    assert verdicts["s2_cpu_per_wf"] == "PASS"
    assert verdicts["s2_floor_1w"] == "n/a"
    assert verdicts["s5_memory"] == "n/a"
    assert all(t.passed is None for t in found if t.verdict == "n/a")


def test_a_threshold_is_inclusive_where_the_target_says_at_least():
    results = report.aggregate([ours(400), throughput("floor", 400)])
    assert by_id(report.targets(results))["s2_floor_1w"].verdict == "PASS"


@pytest.mark.parametrize(
    ("base", "history", "verdict", "which"),
    [
        (1.00, 1.09, "PASS", "within 10 %"),
        (0.50, 0.59, "PASS", "within 0.1 ms absolute"),
        (1.00, 1.20, "FAIL", "beyond 10 % and 0.1 ms"),
        (1.00, 0.50, "PASS", "within 10 %"),
    ],
)
def test_history_claim_is_within_ten_percent_or_a_tenth_of_a_millisecond(
    base, history, verdict, which
):
    samples = [
        ours(500, claim_p50_ms=base),
        Sample("history", "durable-sa", 1, output={"n": 500, "claim_p50_ms": history}),
    ]
    target = by_id(report.targets(report.aggregate(samples)))["s4_claim"]
    assert target.verdict == verdict
    assert target.detail.endswith(which)


def test_fanout_target_follows_the_entry_duration_the_program_reports():
    sample = Sample("fanout", "durable-sa", 1, output={"n": 20, "entry_ms": 20, "p50_ms": 50.0})
    target = by_id(report.targets(report.aggregate([sample])))["s6_fanout"]
    assert (target.required, target.verdict) == (60.0, "PASS")


# --------------------------------------------------------------------------- errors and tables


def test_errors_are_one_line_each_and_name_their_scenario():
    failed = Sample(
        "peer", "dbos", 2, concurrency=4, error="Traceback...\n  ...\nRuntimeError: no queue\n"
    )
    assert report.errors_of([failed, ours(1)]) == [
        {
            "system": "dbos",
            "scenario": "throughput_c4",
            "label": "dbos C=4",
            "rep": 2,
            "error": "RuntimeError: no queue",
        }
    ]


def test_one_line_shortens_long_messages():
    assert report.one_line("x" * 500, limit=10) == "x" * 9 + "…"
    assert report.one_line("") == "failed without a message"


def test_a_scenario_that_never_succeeded_shows_as_an_error_row():
    samples = [ours(500), Sample("latency", "durable-sa", 1, error="exit code 2: bad argument")]
    results = report.aggregate(samples)
    rows = report.rows(results, report.targets(results), report.errors_of(samples))
    assert [
        "latency_p50",
        "durable-sa",
        "-",
        "-",
        "-",
        "",
        "error: exit code 2: bad argument",
        "",
    ] in rows


def test_the_text_table_shows_ratios_verdicts_and_errors():
    samples = [*full_run(), Sample("peer", "dbos", 1, concurrency=16, error="timed out after 9 s")]
    results, found, errors = report.report(samples)
    text = report.text_table(results, found, errors, MACHINE)
    p1c1 = next(line for line in text.splitlines() if line.startswith("throughput_p1_c1 "))
    assert "1.25x floor, 5.00x dbos, 3.33x procrastinate" in p1c1
    assert p1c1.rstrip().endswith("PASS")
    assert "FAIL  s5  worker RSS growth < 10 %" in text
    assert "dbos C=16 rep 1: error: timed out after 9 s" in text
    assert "drain_throughput" not in text
    assert "2 x Test CPU" in text


def test_the_markdown_table_has_a_row_per_result_and_the_targets():
    results, found, errors = report.report(full_run())
    text = report.markdown_table(results, found, errors, MACHINE)
    lines = text.splitlines()
    assert lines[0].startswith("| scenario | system | median | min | max | unit |")
    assert "| `throughput_p1_c1` | durable-sa | 500 | 490 | 510 | wf/s |" in text
    assert "| worker RSS growth < 10 % | 12.0 % (needs < 10.0 %) | FAIL |" in text
    assert lines[-1].startswith("Measured on 2 x Test CPU")


# --------------------------------------------------------------------------- JSON


def test_json_has_exactly_the_contracted_shape():
    results, found, errors = report.report(
        [*full_run(), Sample("fanout", "durable-sa", 4, error="x")]
    )
    document = json.loads(json.dumps(report.to_json(MACHINE, results, found, errors)))
    assert set(document) == {"machine", "results", "ratios", "targets", "errors"}
    assert document["machine"] == MACHINE
    assert set(document["ratios"]) == {"floor_1w", "dbos_1w", "procrastinate_1w"}
    assert all(isinstance(v, float) for v in document["ratios"].values())
    for entry in document["results"]:
        assert entry["system"] in {"durable-sa", "floor", "dbos", "procrastinate"}
        assert isinstance(entry["scenario"], str)
        assert isinstance(entry["value"], float)
        assert isinstance(entry["unit"], str)
        assert isinstance(entry["n"], int)
    one = next(e for e in document["results"] if e["scenario"] == "throughput_p4_c16")
    assert (one["value"], one["min"], one["max"], one["reps"]) == (1100, 1090, 1110, 3)
    assert (one["processes"], one["concurrency"]) == (4, 16)
    assert {t["verdict"] for t in document["targets"]} == {"PASS", "FAIL"}
    assert document["errors"] == [
        {"system": "durable-sa", "scenario": "fanout_p50", "label": "durable-sa fanout",
         "rep": 4, "error": "x"}
    ]  # fmt: skip


# --------------------------------------------------------------------------- docs and plot


PAGE = f"# Title\n\nIntro.\n\n{TABLE_START}\nold table\n{TABLE_END}\n\n## After\n\nKept.\n"


def test_the_marked_table_is_replaced_and_nothing_else():
    new = report.replace_marked(PAGE, "| a |\n| - |\n")
    assert (
        new
        == f"# Title\n\nIntro.\n\n{TABLE_START}\n| a |\n| - |\n{TABLE_END}\n\n## After\n\nKept.\n"
    )
    assert report.replace_marked(new, "| a |\n| - |") == new


@pytest.mark.parametrize(
    "text",
    [
        "no markers",
        f"{TABLE_START} only the start",
        f"{TABLE_END} end before start {TABLE_START}",
        f"{TABLE_START}{TABLE_END}{TABLE_START}{TABLE_END}",
    ],
)
def test_missing_or_muddled_markers_are_refused(text):
    with pytest.raises(ValueError, match="bench:table"):
        report.replace_marked(text, "table")


def test_update_docs_rewrites_the_page_in_place(tmp_path):
    page = tmp_path / "performance.md"
    page.write_text(PAGE, encoding="utf-8")
    report.update_docs(page, "new")
    assert page.read_text(encoding="utf-8") == PAGE.replace("old table", "new")


def test_plot_series_are_one_line_per_system_at_one_process():
    series = report.plot_series(report.aggregate(full_run()))
    assert {system: [c for c, _ in points] for system, points in series.items()} == {
        "durable-sa": [1, 16],
        "dbos": [1],
        "procrastinate": [1],
    }


def test_plot_writes_a_small_png(tmp_path):
    path = tmp_path / "docs" / "performance.png"
    report.plot(report.aggregate(full_run()), MACHINE, path)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG")
    assert len(data) < 200_000


def test_a_result_reports_its_median():
    result = Result("durable-sa", "x", "ms", 1, (1.0, 2.0, 10.0, 3.0))
    assert (result.median, result.min, result.max) == (2.5, 1.0, 10.0)


def test_a_row_with_some_targets_unmeasured_says_how_many_passed():
    results, found, errors = report.report([ours(500), throughput("floor", 400)])
    row = next(r for r in report.rows(results, found, errors) if r[0] == "throughput_p1_c1")
    assert row[-1] == "PASS (1 of 3 measured)"
