"""The bench report's comparison with the floors: ratios from the same run."""

from bench.report import floor_rows, render


def _row(us: float) -> dict[str, float]:
    return {"cpu_us_each": us, "per_cpu_s": 1e6 / us, "rps": 1000.0, "p50_us": 1000.0}


def test_trioproxy_is_set_against_both_floors_of_its_scenario() -> None:
    sc = {
        "A": {
            "title": "small",
            "rows": {
                "trioproxy": _row(500),
                "floor": _row(40),
                "floor+h11": _row(250),
                "trioproxy h2-tls-up": _row(900),
                "floor+h11 h2-tls-up": _row(600),
            },
        },
        # no protocol floor measured: no row rather than a ratio against nothing
        "D": {"title": "sse", "rows": {"trioproxy": _row(470), "floor": _row(110)}},
    }
    rows = floor_rows(sc)
    assert rows[2] == "| A | 500 µs | 40 µs | 250 µs | 12.50x | 2.00x | +250 µs |"
    assert rows[3] == (
        "| A (h2 over TLS upstream) | 900 µs | 40 µs | 600 µs | 22.50x | 1.50x | +300 µs |"
    )
    assert len(rows) == 4


def test_the_report_carries_the_comparison_only_when_it_can_be_made() -> None:
    results = {
        "date": "2026-12-01 08:00",
        "machine": {"proxy_core": 0, "load_core": 1},
        "scenarios": {"G": {"title": "paced", "rows": {"trioproxy": {"events": 10}}}},
    }
    assert "protocol floor" not in render(results)
    results["scenarios"]["G"]["rows"] |= {
        "trioproxy": {"events": 10, "cpu_us_each": 69.0},
        "floor": {"events": 10, "cpu_us_each": 51.0},
        "floor+h11": {"events": 10, "cpu_us_each": 60.0},
    }
    assert "| G | 69 µs | 51 µs | 60 µs | 1.35x | 1.15x | +9 µs |" in render(results)
