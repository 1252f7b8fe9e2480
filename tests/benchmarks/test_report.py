"""benchmarks/report/: from samples to results, ratios, targets, tables, JSON and docs."""

from __future__ import annotations

import json
import re

import pytest

from benchmarks import durable_bench
from benchmarks.report import (
    docs_page,
    figures,
    json_document,
    mixed_table,
    plots,
    relay_backlog,
    relay_table,
    report,
    tables,
    targets,
    text_table,
)
from benchmarks.report.docs_page import TABLE_END, TABLE_START
from benchmarks.report.figures import Result
from benchmarks.report.samples import RELAY_BACKENDS, Sample, errors_of, job_label, one_line
from benchmarks.suite import measure, paths, plan
from benchmarks.suite.paths import DOCS_PAGE

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


SERIES = [[0.0, 2000], [0.25, 800], [1.0, 30], [2.0, 12], [3.0, 8], [4.0, 0]]


def relay(backend, wf_per_s, *, rep=1, bounded=True, backlog=12, **extra):
    """A relay_bench JSON line (the jobs table has no relay figures)."""
    out = {"backend": backend, "n": 2000, "wf_per_s": wf_per_s, "processes": 1}
    if backend != "jobs_table":
        out |= {
            "batch_size": 500,
            "published_per_s": 3 * wf_per_s,
            "backlog_max_after_warmup": backlog,
            "backlog_final": 0,
            "bounded": bounded,
            "backlog_series": SERIES,
        }
    return Sample(
        kind=f"relay_{backend}",
        system="durable-sa",
        rep=rep,
        processes=1,
        concurrency=4,
        output=out | extra,
    )


def mixed(workflow, wf_per_s, *, rep=1, system="durable-sa"):
    """A JSON line of the mixed scenario: durable-sa's (P=1 C=1) or DBOS's (C=1)."""
    ours_ = system == "durable-sa"
    out = {
        "system": system,
        "workflow": workflow,
        "n": 1000 if ours_ else 500,
        "wf_per_s": wf_per_s,
        "drain_wf_per_s": 1.5 * wf_per_s,
        "cpu_ms_per_wf": 2.0 if ours_ else 40.0,
    }
    return Sample(
        kind=workflow,
        system=system,
        rep=rep,
        processes=1 if ours_ else None,
        concurrency=1,
        output=out,
    )


def controls(mode, cpu_ms, *, rep=1):
    """A JSON line of the queue-controls scenario (P=1 C=1) in ``mode`` (off, on, limits...)."""
    out = {"system": "durable-sa", "n": 1000, "wf_per_s": 500, "cpu_ms_per_wf": cpu_ms}
    return Sample(
        kind=f"controls_{mode}",
        system="durable-sa",
        rep=rep,
        processes=1,
        concurrency=1,
        output=out | {"drain_wf_per_s": 600, "mode": mode},
    )


def tracing(mode, cpu_ms, *, rep=1):
    """A JSON line of the tracing scenario (P=1 C=1), tracing ``off`` or ``on``."""
    out = {"system": "durable-sa", "n": 1000, "wf_per_s": 500, "cpu_ms_per_wf": cpu_ms}
    return Sample(
        kind=f"tracing_{mode}",
        system="durable-sa",
        rep=rep,
        processes=1,
        concurrency=1,
        output=out | {"drain_wf_per_s": 600, "mode": mode},
    )


def fairness(jain, cold_hot=1.0, *, rep=1):
    """A JSON line of the per-key fairness scenario (one worker, C=4)."""
    out = {
        "system": "durable-sa",
        "scenario": "fairness",
        "n": 360,
        "hot": 200,
        "cold": 40,
        "jain": jain,
        "cold_hot_ratio": cold_hot,
        "period_s": 0.8,
        "counts": {"hot": 40, "cold0": 40, "cold1": 39, "cold2": 40, "cold3": 38},
    }
    return Sample(kind="fairness", system="durable-sa", rep=rep, processes=1, concurrency=4,
                  output=out)  # fmt: skip


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
            relay("jobs_table", 1500 + jitter, rep=rep),
            relay("redis", 80 + jitter, rep=rep, backlog=10 + rep),
            # Celery's third repetition is not bounded: its target fails.
            relay(
                "celery", 50 + jitter, rep=rep, bounded=rep != 3, backlog=600 if rep == 3 else 40
            ),
            mixed("mixed6", 450 + jitter, rep=rep),
            mixed("plain6", 600 + jitter, rep=rep),
            mixed("mixed6", 100 + jitter, rep=rep, system="dbos"),
            controls("off", 2.0, rep=rep),
            controls("idle", 2.1, rep=rep),
            controls("on", 2.4, rep=rep),
            controls("limits", 2.2, rep=rep),
            # limits and the rate limit together cost too much: its target fails.
            controls("both", 2.8, rep=rep),
            tracing("off", 2.0, rep=rep),
            tracing("on", 2.5, rep=rep),
            fairness(0.97 + jitter / 1000, 0.95, rep=rep),
        ]
    return samples


def by_id(found):
    return {t.id: t for t in found}


# --------------------------------------------------------------------------- metrics, aggregation


def test_a_throughput_sample_gives_its_figures_under_config_names():
    metrics = figures.metrics_from_sample(ours(500, processes=2, concurrency=4))
    assert {m.scenario: (m.value, m.unit) for m in metrics} == {
        "throughput_p2_c4": (500.0, "wf/s"),
        "drain_throughput_p2_c4": (1000.0, "wf/s"),
        "cpu_per_wf_p2_c4": (0.5, "ms"),
        "claim_p50_p2_c4": (1.0, "ms"),
    }
    assert all(m.config == {"processes": 2, "concurrency": 4} for m in metrics)
    assert all(m.n == 500 for m in metrics)


def test_peers_are_named_by_concurrency_and_absent_keys_are_skipped():
    metrics = figures.metrics_from_sample(throughput("dbos", 40.0, concurrency=4))
    assert [m.scenario for m in metrics] == ["throughput_c4", "drain_throughput_c4"]


def test_a_failed_sample_gives_no_figures():
    assert figures.metrics_from_sample(Sample("throughput", "durable-sa", 1, error="boom")) == []


def test_an_unknown_kind_is_a_bug():
    with pytest.raises(ValueError, match="unknown sample kind"):
        figures.metrics_from_sample(Sample("nonsense", "durable-sa", 1, output={}))


def test_aggregate_takes_median_min_and_max_over_repetitions():
    samples = [ours(v, rep=i) for i, v in enumerate((300, 100, 200), start=1)]
    result = figures.find(figures.aggregate(samples), "durable-sa", "throughput_p1_c1")
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
    names = [
        (r.system, r.scenario) for r in figures.aggregate(samples) if "drain" not in r.scenario
    ]
    assert names[:5] == [
        ("floor", "throughput"),
        ("durable-sa", "throughput_p1_c1"),
        ("durable-sa", "throughput_p1_c4"),
        ("durable-sa", "throughput_p2_c16"),
        ("dbos", "throughput_c1"),
    ]


# --------------------------------------------------------------------------- ratios and targets


def test_ratios_divide_one_worker_by_the_floor_and_each_peer_at_c1():
    results = figures.aggregate(full_run())
    assert targets.ratios(results) == {
        "floor_1w": pytest.approx(500 / 400),
        "dbos_1w": pytest.approx(5.0),
        "procrastinate_1w": pytest.approx(500 / 150),
    }


def test_a_missing_figure_makes_its_ratio_none():
    results = figures.aggregate([ours(500), throughput("floor", 0.0)])
    assert targets.ratios(results) == {"floor_1w": None, "dbos_1w": None, "procrastinate_1w": None}


def test_targets_pass_and_fail_on_medians():
    found = by_id(targets.targets(figures.aggregate(full_run())))
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
        "relay_redis": "PASS",
        "relay_celery": "FAIL",  # 2 of 3 repetitions bounded
        "relay_redis_speed": "FAIL",  # 80 / 1500 wf/s
        "relay_celery_speed": "FAIL",  # 50 / 1500 wf/s
        "mixed_vs_plain": "PASS",  # 450 / 600
        "controls_cpu": "PASS",  # 2.4 / 2.0 ms
        "controls_idle_cpu": "PASS",  # 2.1 / 2.0 ms
        "controls_limits_cpu": "PASS",  # 2.2 / 2.0 ms
        "controls_both_cpu": "FAIL",  # 2.8 / 2.0 ms
        "tracing_cpu": "PASS",  # 2.5 / 2.0 ms
        "fairness_jain": "PASS",  # 0.97
        "mixed_vs_dbos": "FAIL",  # 450 / 100
    }
    assert found["s2_best_under_load"].row == ("durable-sa", "throughput_p4_c16")
    assert found["s2_best_under_load"].measured == pytest.approx(1100 / 400)
    assert found["s5_memory"].detail == "12.0 % (needs < 10.0 %)"


def test_targets_without_figures_are_not_judged():
    found = targets.targets(figures.aggregate([ours(500)]))
    verdicts = {t.id: t.verdict for t in found}
    assert verdicts["s2_cpu_per_wf"] == "PASS"
    assert verdicts["s2_floor_1w"] == "n/a"
    assert verdicts["s5_memory"] == "n/a"
    assert all(t.passed is None for t in found if t.verdict == "n/a")


def test_a_threshold_is_inclusive_where_the_target_says_at_least():
    results = figures.aggregate([ours(400), throughput("floor", 400)])
    assert by_id(targets.targets(results))["s2_floor_1w"].verdict == "PASS"


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
    target = by_id(targets.targets(figures.aggregate(samples)))["s4_claim"]
    assert target.verdict == verdict
    assert target.detail.endswith(which)


def test_fanout_target_follows_the_entry_duration_the_program_reports():
    sample = Sample("fanout", "durable-sa", 1, output={"n": 20, "entry_ms": 20, "p50_ms": 50.0})
    target = by_id(targets.targets(figures.aggregate([sample])))["s6_fanout"]
    assert (target.required, target.verdict) == (60.0, "PASS")


# --------------------------------------------------------------------------- errors and tables


def test_errors_are_one_line_each_and_name_their_scenario():
    failed = Sample(
        "peer", "dbos", 2, concurrency=4, error="Traceback...\n  ...\nRuntimeError: no queue\n"
    )
    assert errors_of([failed, ours(1)]) == [
        {
            "system": "dbos",
            "scenario": "throughput_c4",
            "label": "dbos C=4",
            "rep": 2,
            "error": "RuntimeError: no queue",
        }
    ]


def test_one_line_shortens_long_messages():
    assert one_line("x" * 500, limit=10) == "x" * 9 + "…"
    assert one_line("") == "failed without a message"


def test_a_scenario_that_never_succeeded_shows_as_an_error_row():
    samples = [ours(500), Sample("latency", "durable-sa", 1, error="exit code 2: bad argument")]
    results = figures.aggregate(samples)
    rows = tables.rows(results, targets.targets(results), errors_of(samples))
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
    results, found, errors = report(samples)
    text = text_table.text_table(results, found, errors, MACHINE)
    p1c1 = next(line for line in text.splitlines() if line.startswith("throughput_p1_c1 "))
    assert "1.25x floor, 5.00x dbos, 3.33x procrastinate" in p1c1
    assert p1c1.rstrip().endswith("PASS")
    assert re.search(r"FAIL +s5 +worker RSS growth < 10 %", text)
    assert "dbos C=16 rep 1: error: timed out after 9 s" in text
    assert "drain_throughput" not in text
    assert "2 x Test CPU" in text


def test_the_markdown_table_has_a_row_per_result_and_the_targets():
    results, found, errors = report(full_run())
    text = tables.markdown_table(results, found, errors, MACHINE)
    lines = text.splitlines()
    assert lines[0].startswith("| scenario | system | median | min | max | unit |")
    assert "| `throughput_p1_c1` | durable-sa | 500 | 490 | 510 | wf/s |" in text
    assert "| worker RSS growth < 10 % | 12.0 % (needs < 10.0 %) | FAIL |" in text
    assert lines[-1].startswith("Measured on 2 x Test CPU")


# --------------------------------------------------------------------------- JSON


def test_json_has_exactly_the_contracted_shape():
    results, found, errors = report([*full_run(), Sample("fanout", "durable-sa", 4, error="x")])
    document = json.loads(json.dumps(json_document.to_json(MACHINE, results, found, errors)))
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
    backlog = next(e for e in document["results"] if e["scenario"] == "relay_redis_backlog_max")
    assert backlog["series"] == [SERIES] * 3
    assert (backlog["value"], backlog["unit"], backlog["batch_size"]) == (12, "rows", 500)
    with_series = {e["scenario"] for e in document["results"] if "series" in e}
    assert with_series == {"relay_redis_backlog_max", "relay_celery_backlog_max"}
    assert document["errors"] == [
        {"system": "durable-sa", "scenario": "fanout_p50", "label": "durable-sa fanout",
         "rep": 4, "error": "x"}
    ]  # fmt: skip


def test_a_document_read_back_gives_the_report_it_was_made_from():
    results, found, errors = report([*full_run(), Sample("fanout", "durable-sa", 4, error="x")])
    document = json.loads(json.dumps(json_document.to_json(MACHINE, results, found, errors)))
    again = json_document.from_json(document)
    assert again == (results, found, errors)
    assert json_document.to_json(MACHINE, *again) == document


def test_a_run_of_some_groups_writes_a_json_of_its_own():
    assert paths.results_json(["relay", "mixed", "relay"]).name == "latest-only-mixed-relay.json"
    assert paths.results_json(None) == paths.RESULTS_JSON


# --------------------------------------------------------------------------- docs and plot


PAGE = f"# Title\n\nIntro.\n\n{TABLE_START}\nold table\n{TABLE_END}\n\n## After\n\nKept.\n"


def test_the_marked_table_is_replaced_and_nothing_else():
    new = docs_page.replace_marked(PAGE, "| a |\n| - |\n")
    assert (
        new
        == f"# Title\n\nIntro.\n\n{TABLE_START}\n| a |\n| - |\n{TABLE_END}\n\n## After\n\nKept.\n"
    )
    assert docs_page.replace_marked(new, "| a |\n| - |") == new


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
        docs_page.replace_marked(text, "table")


def test_update_docs_rewrites_the_page_in_place(tmp_path):
    page = tmp_path / "performance.md"
    page.write_text(PAGE, encoding="utf-8")
    docs_page.update_docs(page, "new")
    assert page.read_text(encoding="utf-8") == PAGE.replace("old table", "new")


def test_plot_series_are_one_line_per_system_at_one_process():
    series = plots.plot_series(figures.aggregate(full_run()))
    assert {system: [c for c, _ in points] for system, points in series.items()} == {
        "durable-sa": [1, 16],
        "dbos": [1],
        "procrastinate": [1],
    }


def test_plot_writes_a_small_png(tmp_path):
    path = tmp_path / "docs" / "performance.png"
    plots.plot(figures.aggregate(full_run()), MACHINE, path)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG")
    assert len(data) < 200_000


def test_a_result_reports_its_median():
    result = Result("durable-sa", "x", "ms", 1, (1.0, 2.0, 10.0, 3.0))
    assert (result.median, result.min, result.max) == (2.5, 1.0, 10.0)


def test_a_row_with_some_targets_unmeasured_says_how_many_passed():
    results, found, errors = report([ours(500), throughput("floor", 400)])
    row = next(r for r in tables.rows(results, found, errors) if r[0] == "throughput_p1_c1")
    assert row[-1] == "PASS (1 of 3 measured)"


# --------------------------------------------------------------------------- relay scenario


def test_a_relay_sample_gives_its_figures_under_its_backend():
    metrics = figures.metrics_from_sample(relay("redis", 80.0))
    assert {m.scenario: (m.value, m.unit) for m in metrics} == {
        "relay_redis_throughput": (80.0, "wf/s"),
        "relay_redis_published": (240.0, "msg/s"),
        "relay_redis_backlog_max": (12.0, "rows"),
        "relay_redis_backlog_final": (0.0, "rows"),
        "relay_redis_bounded": (1.0, "1=yes"),
    }
    assert all(m.config == {"processes": 1, "concurrency": 4, "batch_size": 500} for m in metrics)
    series = {m.scenario: m.series for m in metrics if m.series}
    assert series == {"relay_redis_backlog_max": tuple(tuple(p) for p in SERIES)}


def test_the_jobs_table_has_only_its_throughput_and_an_unjudged_drain_no_verdict():
    assert [m.scenario for m in figures.metrics_from_sample(relay("jobs_table", 1500.0))] == [
        "relay_jobs_table_throughput"
    ]
    short = figures.metrics_from_sample(relay("celery", 50.0, bounded=None))
    assert "relay_celery_bounded" not in {m.scenario for m in short}


def test_bad_series_points_are_dropped():
    sample = relay("redis", 80.0, backlog_series=[[0, 5], "x", [1], [2, True], [3, 1.5]])
    backlog = next(m for m in figures.metrics_from_sample(sample) if m.series)
    assert backlog.series == ((0.0, 5.0), (3.0, 1.5))


def test_relay_measurements_are_named_by_backend_in_progress_and_errors():
    assert job_label("relay_celery", "durable-sa", 1, 4) == "durable-sa relay celery P=1 C=4"
    failed = Sample("relay_celery", "durable-sa", 2, processes=1, concurrency=4, error="boom")
    assert errors_of([failed])[0] | {"error": ""} == {
        "system": "durable-sa",
        "scenario": "relay_celery_throughput",
        "label": "durable-sa relay celery P=1 C=4",
        "rep": 2,
        "error": "",
    }


def steady(level, *, until=10.0, start=2000, step=0.25):
    """A drain's samples: ``start`` rows at t=0, then ``level(t)`` every ``step``, then 0."""
    points = [(0.0, start)]
    t = step
    while t < until:
        points.append((t, level(t)))
        t += step
    return [*points, (until, 0)]


def test_a_backlog_that_stays_small_after_warmup_is_bounded():
    verdict = relay_backlog.backlog_verdict(
        steady(lambda t: 20 + 5 * (t % 1)), drain_s=10, batch_size=500
    )
    assert verdict["bounded"] is True
    assert all(verdict["checks"].values())
    assert verdict["warmup_s"] == 2.0
    assert verdict["backlog_max"] == 2000
    assert verdict["backlog_max_after_warmup"] == pytest.approx(23.75)
    assert verdict["backlog_final"] == 0
    assert verdict["backlog_first_half_max"] == 2000


def test_a_backlog_rising_over_the_second_half_is_not_bounded():
    verdict = relay_backlog.backlog_verdict(steady(lambda t: 40 * t), drain_s=10, batch_size=500)
    assert verdict["bounded"] is False
    assert verdict["checks"]["second_half_not_rising"] is False
    assert verdict["backlog_second_half_slope"] > 0


def test_a_second_half_above_the_first_is_not_bounded_even_when_flat_at_the_end():
    def level(t):
        return 10 if t < 5 else 3000

    verdict = relay_backlog.backlog_verdict(steady(level), drain_s=10, batch_size=500)
    assert verdict["checks"]["second_half_within_first"] is False
    assert verdict["bounded"] is False


def test_a_backlog_left_at_the_end_above_one_batch_is_not_bounded():
    points = [*steady(lambda t: 5, until=9.75)[:-1], (10.0, 501)]
    verdict = relay_backlog.backlog_verdict(points, drain_s=10, batch_size=500)
    assert verdict["checks"]["final_within_batch"] is False
    assert verdict["bounded"] is False


def test_a_rise_within_a_tenth_of_a_batch_over_the_second_half_is_tolerated():
    # 9 rows per second over the second half's 5 s: 45 rows, under 50 (a tenth of 500).
    verdict = relay_backlog.backlog_verdict(steady(lambda t: 9 * t), drain_s=10, batch_size=500)
    assert verdict["backlog_second_half_slope"] < 10
    assert verdict["checks"]["second_half_not_rising"] is True


def test_the_warmup_is_the_longer_of_two_seconds_and_a_tenth_but_at_most_half():
    def warmup(drain_s):
        series = [(0.0, 1), (drain_s, 0)]
        return relay_backlog.backlog_verdict(series, drain_s=drain_s, batch_size=500)["warmup_s"]

    assert warmup(40.0) == 4.0
    assert warmup(10.0) == 2.0
    assert warmup(3.0) == 1.5


def test_a_drain_too_short_to_have_a_trend_is_not_judged():
    verdict = relay_backlog.backlog_verdict(
        [(0.0, 300), (0.25, 0), (0.4, 0)], drain_s=0.4, batch_size=500
    )
    assert verdict["bounded"] is None
    assert relay_backlog.backlog_verdict([], drain_s=1.0, batch_size=500)["bounded"] is None


def test_thin_keeps_the_ends_and_at_most_the_limit():
    points = [[float(i), float(i * i)] for i in range(1000)]
    thinned = relay_backlog.thin(points, 200)
    assert len(thinned) == 200
    assert (thinned[0], thinned[-1]) == (points[0], points[-1])
    assert relay_backlog.thin(points[:3], 200) == points[:3]
    with pytest.raises(ValueError, match="at least 2"):
        relay_backlog.thin(points, 1)


def test_slope_is_the_least_squares_line():
    assert relay_backlog.slope([(0, 1), (1, 3), (2, 5)]) == pytest.approx(2.0)
    assert relay_backlog.slope([(0, 0), (1, 2), (2, 0), (3, 2)]) == pytest.approx(0.4)
    assert relay_backlog.slope([(1, 5)]) == 0.0
    assert relay_backlog.slope([(1, 5), (1, 7)]) == 0.0


def test_the_relay_target_needs_every_judged_repetition_bounded():
    found = by_id(targets.targets(figures.aggregate(full_run())))
    assert found["relay_redis"].detail == (
        "3 of 3 repetitions bounded; backlog after warm-up ≤ 13 rows (batch 500)"
    )
    assert found["relay_redis"].row == ("durable-sa", "relay_redis_bounded")
    assert found["relay_celery"].measured == pytest.approx(2 / 3)
    assert found["relay_celery"].detail.startswith("2 of 3 repetitions bounded")
    unmeasured = by_id(targets.targets(figures.aggregate([ours(500)])))
    assert (unmeasured["relay_redis"].verdict, unmeasured["relay_redis"].detail) == ("n/a", "")


def test_the_relay_table_has_a_row_per_backend_and_leaves_the_main_table():
    results, found, errors = report(full_run())
    assert relay_table.relay_rows(results, found, errors) == [
        ["jobs_table", "1500", "1490", "1510", "-", "-", "-", "",
         "no relay: workers read the jobs table"],
        ["redis", "80.0", "70.0", "90.0", "240", "13", "0", "PASS", ""],
        ["celery", "50.0", "40.0", "60.0", "150", "600", "0", "FAIL", ""],
    ]  # fmt: skip
    assert not [row for row in tables.rows(results, found, errors) if row[0].startswith("relay")]


def test_a_relay_backend_that_failed_shows_its_error_in_the_relay_table():
    failed = Sample("relay_celery", "durable-sa", 1, processes=1, concurrency=4, error="no Redis")
    samples = [relay("redis", 80.0), relay("redis", 90.0, rep=2), failed]
    results, found, errors = report(samples)
    table = relay_table.relay_rows(results, found, errors)
    assert [row[0] for row in table] == ["redis", "celery"]
    assert table[1] == ["celery", "-", "-", "-", "-", "-", "-", "n/a", "error: no Redis"]
    assert not any("relay" in row[0] for row in tables.rows(results, found, errors))
    partly = report([*samples, relay("celery", 50.0, rep=2)])
    assert relay_table.relay_rows(*partly)[1][-1] == "1 rep(s) failed"


def test_the_text_table_of_a_relay_only_run_has_the_relay_table_alone():
    results, found, errors = report([relay(b, 80.0) for b in RELAY_BACKENDS])
    text = text_table.text_table(results, found, errors, MACHINE)
    assert "scenario  system" not in text
    assert "Relay: 2000 bench3 runs started up front, then drained by P=1 C=4" in text
    assert re.search(r"redis +80\.0 +80\.0 +80\.0 +240 +12 +0 +PASS", text)
    assert re.search(r"PASS +relay +relay keeps up \(redis\)", text)


def test_the_markdown_relay_table_and_its_markers():
    results, found, errors = report(full_run())
    text = relay_table.markdown_relay_table(results, found, errors, MACHINE)
    assert text.splitlines()[0].startswith("| backend | wf/s (drain) | min | max |")
    assert "| celery | 50.0 | 40.0 | 60.0 | 150 | 600 | 0 | FAIL |  |" in text
    assert text.splitlines()[-1].startswith("Measured on 2 x Test CPU")
    page = f"{PAGE}\n{docs_page.RELAY_START}\nold relay\n{docs_page.RELAY_END}\n"
    new = docs_page.replace_marked(page, "relay table", docs_page.RELAY_START, docs_page.RELAY_END)
    assert new == page.replace("old relay", "relay table")
    assert docs_page.replace_marked(new, "| a |") == new.replace("old table", "| a |")
    with pytest.raises(ValueError, match="bench:relay"):
        docs_page.replace_marked(PAGE, "relay table", docs_page.RELAY_START, docs_page.RELAY_END)


def test_the_docs_page_has_each_pair_of_markers_once():
    text = DOCS_PAGE.read_text(encoding="utf-8")
    for start, end in (
        (TABLE_START, TABLE_END),
        (docs_page.RELAY_START, docs_page.RELAY_END),
        (docs_page.MIXED_START, docs_page.MIXED_END),
    ):
        assert docs_page.replace_marked(text, "x", start, end).count("\nx\n") == 1


def test_the_relay_plot_draws_the_backlog_series_or_nothing(tmp_path):
    path = tmp_path / "relay.png"
    results = figures.aggregate(full_run())
    assert set(plots.relay_series(results)) == {"redis", "celery"}
    assert plots.plot_relay(results, MACHINE, path) is True
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG")
    assert len(data) < 200_000
    other = tmp_path / "none.png"
    assert plots.plot_relay(figures.aggregate([ours(500)]), MACHINE, other) is False
    assert not other.exists()


def test_the_relay_group_plans_one_measurement_per_backend():
    jobs = plan.plan(plan.QUICK, ["relay"])
    assert [(j.kind, j.broker, j.label) for j in jobs] == [
        ("relay_jobs_table", False, "durable-sa relay jobs_table P=1 C=4"),
        ("relay_redis", True, "durable-sa relay redis P=1 C=4"),
        ("relay_celery", True, "durable-sa relay celery P=1 C=4"),
    ]
    assert all(j.args[2:4] == ("--n", "300") for j in jobs)
    assert {j.kind for j in plan.plan(plan.FULL)} >= {"relay_redis", "relay_celery"}
    line = measure.headline(relay("redis", 80.0))
    assert (
        line == "80.0 wf/s, 240 msg/s published, backlog after warm-up ≤ 12, bounded (relay_redis)"
    )


def test_the_warmup_lasts_until_the_burst_has_drained():
    series = [[0.0, 2000], [1.0, 1500], [4.0, 490], [6.0, 581], [7.0, 40], [9.0, 5], [30, 6]]
    verdict = relay_backlog.backlog_verdict(series, drain_s=40.0, batch_size=500, caught_up_s=5.0)
    assert (verdict["warmup_s"], verdict["backlog_max_after_warmup"]) == (7.0, 40)


def test_the_warmup_lasts_until_the_runs_started_up_front_are_published():
    series = [(0.0, 2000), (2.5, 900), (5.0, 300), (5.5, 3), (30.0, 2), (40.0, 0)]
    verdict = relay_backlog.backlog_verdict(series, drain_s=40.0, batch_size=500, caught_up_s=5.5)
    assert (verdict["warmup_s"], verdict["backlog_max_after_warmup"]) == (5.5, 3)
    # Without the counter, the warm-up ends when the backlog first falls to 50 rows.
    assert relay_backlog.backlog_verdict(series, drain_s=40.0, batch_size=500)["warmup_s"] == 5.5
    late = relay_backlog.backlog_verdict(series, drain_s=40.0, batch_size=500, caught_up_s=35.0)
    assert late["warmup_s"] == 20.0


# --------------------------------------------------------------------------- mixed scenario


def test_a_mixed_sample_gives_its_figures_under_its_workflow():
    metrics = figures.metrics_from_sample(mixed("mixed6", 40.0))
    assert {m.scenario: (m.value, m.unit) for m in metrics} == {
        "mixed6_throughput": (40.0, "wf/s"),
        "mixed6_drain_throughput": (60.0, "wf/s"),
        "mixed6_cpu_per_wf": (2.0, "ms"),
    }
    assert all(m.config == {"processes": 1, "concurrency": 1} for m in metrics)
    peer = figures.metrics_from_sample(mixed("mixed6", 15.0, system="dbos"))
    assert {(m.system, m.scenario) for m in peer} >= {("dbos", "mixed6_throughput")}


def test_mixed_targets_compare_mixed6_with_plain6_and_with_dbos():
    found = by_id(targets.targets(figures.aggregate(full_run())))
    assert found["mixed_vs_plain"].row == ("durable-sa", "mixed6_throughput")
    assert found["mixed_vs_plain"].detail == "0.75x (needs ≥ 0.70x plain6)"
    assert found["mixed_vs_dbos"].detail == "4.50x (needs ≥ 5.00x dbos)"
    unmeasured = by_id(targets.targets(figures.aggregate([mixed("mixed6", 40.0)])))
    assert unmeasured["mixed_vs_plain"].verdict == "n/a"


def test_the_mixed_table_has_a_row_per_workflow_and_system_and_leaves_the_main_table():
    results, found, errors = report(full_run())
    assert mixed_table.mixed_rows(results, found, errors) == [
        ["plain6", "durable-sa", "600", "590", "610", "900", "2.00", "", ""],
        ["mixed6", "durable-sa", "450", "440", "460", "675", "2.00",
         "0.75x plain6, 4.50x dbos; needs ≥ 0.70x plain6, ≥ 5.00x dbos", "FAIL"],
        ["mixed6", "dbos", "100", "90.0", "110", "150", "40.0", "", ""],
    ]  # fmt: skip
    main = tables.rows(results, found, errors)
    assert not [row for row in main if row[0].startswith(("mixed6", "plain6"))]


def test_a_mixed_program_that_failed_shows_its_error_in_the_mixed_table():
    failed = Sample("mixed6", "dbos", 1, concurrency=1, error="exit code 1: no datasource")
    samples = [mixed("mixed6", 40.0), mixed("plain6", 600.0), failed]
    results, found, errors = report(samples)
    assert errors[0]["scenario"] == "mixed6_throughput"
    assert errors[0]["label"] == "dbos mixed6 C=1"
    table = mixed_table.mixed_rows(results, found, errors)
    assert table[2] == [
        "mixed6", "dbos", "-", "-", "-", "-", "-", "error: exit code 1: no datasource", ""
    ]  # fmt: skip
    assert table[1][-1] == "FAIL"  # 40 / 600 is below 0.7; DBOS's target is not judged
    assert not tables.rows(results, found, errors)


def test_the_text_table_of_a_mixed_only_run_has_the_mixed_table_alone():
    samples = [mixed("mixed6", 40.0), mixed("plain6", 600.0), mixed("mixed6", 15.0, system="dbos")]
    results, found, errors = report(samples)
    text = text_table.text_table(results, found, errors, MACHINE)
    assert "scenario  system" not in text
    assert "Mixed: 1000 runs of mixed6 and of plain6 started up front" in text
    assert "DBOS: 500 runs of its mixed6" in text
    assert re.search(r"mixed6 +durable-sa +40\.0 +40\.0 +40\.0 +60\.0 +2\.00 +0\.07x plain6", text)
    assert re.search(r"FAIL +mixed +mixed6 ≥ 0\.7x plain6", text)
    assert re.search(r"FAIL +mixed +durable-sa mixed6 ≥ 5x DBOS mixed6 \(C=1\) +2\.67x", text)


def test_the_markdown_mixed_table():
    results, found, errors = report(full_run())
    text = mixed_table.markdown_table(results, found, errors, MACHINE)
    lines = text.splitlines()
    assert lines[0] == (
        "| workflow | system | wf/s | min | max | drain wf/s | CPU ms/wf | ratio / target "
        "| PASS/FAIL |"
    )
    assert "| plain6 | durable-sa | 600 | 590 | 610 | 900 | 2.00 |  |  |" in lines
    assert (
        "| mixed6 ≥ 0.7x plain6 (one worker, P=1 C=1) | 0.75x (needs ≥ 0.70x plain6) | PASS |"
        in lines
    )
    assert "| worker RSS growth < 10 % |" not in text
    assert lines[-1].startswith("Measured on 2 x Test CPU")


def test_the_mixed_plot_draws_three_bars_or_nothing(tmp_path):
    results = figures.aggregate(full_run())
    assert [label for label, _ in plots.mixed_bars(results)] == [
        "durable-sa plain6",
        "durable-sa mixed6",
        "dbos mixed6",
    ]
    path = tmp_path / "mixed.png"
    assert plots.plot_mixed(results, MACHINE, path) is True
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG")
    assert len(data) < 200_000
    other = tmp_path / "none.png"
    assert plots.plot_mixed(figures.aggregate([ours(500)]), MACHINE, other) is False
    assert not other.exists()


def test_the_mixed_group_plans_both_workflows_and_the_dbos_peer():
    jobs = plan.plan(plan.QUICK, ["mixed"])
    assert [(j.kind, j.system, j.module, j.label) for j in jobs] == [
        ("mixed6", "durable-sa", "benchmarks.durable_bench", "durable-sa mixed6 P=1 C=1"),
        ("plain6", "durable-sa", "benchmarks.durable_bench", "durable-sa plain6 P=1 C=1"),
        ("mixed6", "dbos", "benchmarks.peers.dbos_mixed_peer", "dbos mixed6 C=1"),
    ]
    assert jobs[0].args == ("mixed", "--workflow", "mixed6", "--n", "200")
    assert jobs[2].args == ("--n", "100", "--polling-interval", "0.01", "--concurrency", "1")
    assert next(j for j in plan.plan(plan.FULL) if j.group == "mixed").args[-1] == "1000"
    assert measure.headline(mixed("mixed6", 40.0)) == "40.0 wf/s (mixed6_throughput)"


def test_the_relay_speed_targets_compare_each_backend_with_the_jobs_table():
    samples = [
        relay("jobs_table", 1500.0),
        relay("redis", 760.0),  # 0.51x
        relay("celery", 440.0),  # 0.29x
    ]
    found = by_id(targets.targets(figures.aggregate(samples)))
    redis, celery = found["relay_redis_speed"], found["relay_celery_speed"]
    assert (redis.verdict, celery.verdict) == ("PASS", "FAIL")
    assert redis.measured == pytest.approx(760 / 1500)
    assert redis.detail == "0.51x (needs ≥ 0.50x jobs_table)"


# --------------------------------------------------------------------------- controls and fairness


def test_the_controls_group_plans_five_modes_at_one_worker():
    jobs = plan.plan(plan.QUICK, ["controls"])
    assert [(j.kind, j.label) for j in jobs] == [
        (f"controls_{mode}", f"durable-sa controls_{mode} P=1 C=1")
        for mode in ("off", "idle", "on", "limits", "both")
    ]
    assert jobs[3].args == ("controls", "--mode", "limits", "--n", "200")


def test_the_fairness_group_plans_one_worker_of_four_with_a_hot_key_and_cold_ones():
    (quick,) = plan.plan(plan.QUICK, ["fairness"])
    assert (quick.kind, quick.module, quick.label) == (
        "fairness", "benchmarks.durable_bench", "durable-sa fairness P=1 C=4"
    )  # fmt: skip
    assert quick.args == ("fairness", "--hot", "100", "--cold", "20")
    (full,) = plan.plan(plan.FULL, ["fairness"])
    assert full.args == ("fairness", "--hot", "200", "--cold", "40")


def test_a_fairness_sample_gives_its_index_ratio_and_period():
    metrics = figures.metrics_from_sample(fairness(0.97, 0.9))
    assert {m.scenario: (m.value, m.unit) for m in metrics} == {
        "fairness_jain": (0.97, "index"),
        "fairness_cold_hot": (0.9, "x"),
        "fairness_period": (0.8, "s"),
    }
    assert metrics[0].config == {"processes": 1, "concurrency": 4, "hot_runs": 200, "cold_runs": 40}
    assert measure.headline(fairness(0.97)) == "0.97 index (fairness_jain)"
    assert (
        errors_of([Sample("fairness", "durable-sa", 2, 1, 4, error="boom")])[0]["scenario"]
        == "fairness_jain"
    )


@pytest.mark.parametrize(("jain", "verdict"), [(0.9, "PASS"), (0.89, "FAIL"), (1.0, "PASS")])
def test_the_fairness_target_needs_a_jain_index_of_at_least_nine_tenths(jain, verdict):
    target = by_id(targets.targets(figures.aggregate([fairness(jain)])))["fairness_jain"]
    assert target.verdict == verdict
    assert target.row == ("durable-sa", "fairness_jain")
    assert target.detail.endswith("(needs ≥ 0.90 index)")


def test_the_limits_targets_compare_cpu_per_workflow_with_controls_off():
    samples = [controls("off", 2.0), controls("limits", 2.6), controls("both", 2.62)]
    found = by_id(targets.targets(figures.aggregate(samples)))
    limits, both = found["controls_limits_cpu"], found["controls_both_cpu"]
    assert (limits.verdict, both.verdict) == ("PASS", "FAIL")  # 1.3x is allowed, 1.31x not
    assert limits.measured == pytest.approx(1.3)
    assert limits.row == ("durable-sa", "controls_limits_cpu_per_wf")
    assert both.detail == "1.31x (needs ≤ 1.30x controls_off)"


def test_the_main_table_shows_the_limits_and_fairness_rows_with_their_verdicts():
    results, found, errors = report(full_run())
    text = tables.markdown_table(results, found, errors, MACHINE)
    assert "| `controls_limits_cpu_per_wf` | durable-sa | 2.20 | 2.20 | 2.20 | ms |" in text
    assert "| `fairness_jain` | durable-sa | 0.97 | 0.96 | 0.98 | index |" in text
    assert "| `fairness_cold_hot` | durable-sa | 0.95 |" in text
    both = next(line for line in text.splitlines() if "`controls_both_cpu_per_wf`" in line)
    assert both.endswith("1.40x (needs ≤ 1.30x controls_off) | FAIL |")


def test_jain_index_is_one_when_equal_and_one_over_k_when_one_key_has_all():
    assert durable_bench.jain_index([5.0, 5.0, 5.0, 5.0]) == pytest.approx(1.0)
    assert durable_bench.jain_index([8.0, 0.0, 0.0, 0.0]) == pytest.approx(0.25)
    assert durable_bench.jain_index([2.0, 1.0]) == pytest.approx(9 / 10)


def test_fairness_counts_completions_until_the_first_key_runs_out():
    done = {
        "hot": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8],
        "cold0": [0.15, 0.35],  # its last run ends the period at 0.35 s
        "cold1": [0.12, 0.25, 0.4],
    }
    out = durable_bench.fairness_figures(done)
    assert out["counts"] == {"cold0": 2, "cold1": 2, "hot": 3}
    assert out["period_s"] == pytest.approx(0.25)
    assert out["jain"] == pytest.approx(49 / (3 * 17))
    assert out["cold_hot_ratio"] == pytest.approx(2 / 3)


# --------------------------------------------------------------------------- tracing


def test_the_tracing_group_plans_off_and_on_at_one_worker():
    jobs = plan.plan(plan.QUICK, ["tracing"])
    assert [(j.kind, j.label) for j in jobs] == [
        ("tracing_off", "durable-sa tracing_off P=1 C=1"),
        ("tracing_on", "durable-sa tracing_on P=1 C=1"),
    ]
    assert jobs[1].args == ("tracing", "--mode", "on", "--n", "200")


def test_a_tracing_sample_gives_its_cpu_per_workflow():
    metrics = figures.metrics_from_sample(tracing("on", 2.5))
    assert {m.scenario: m.value for m in metrics}["tracing_on_cpu_per_wf"] == 2.5
    assert measure.headline(tracing("on", 2.5)) == "500 wf/s (tracing_on_throughput)"


@pytest.mark.parametrize(("on", "verdict"), [(2.6, "PASS"), (2.62, "FAIL"), (2.0, "PASS")])
def test_the_tracing_target_allows_at_most_1_3_times_the_cpu_of_tracing_off(on, verdict):
    samples = [tracing("off", 2.0), tracing("on", on)]
    target = by_id(targets.targets(figures.aggregate(samples)))["tracing_cpu"]
    assert target.verdict == verdict
    assert target.row == ("durable-sa", "tracing_on_cpu_per_wf")
    assert target.detail.endswith("(needs ≤ 1.30x tracing_off)")
