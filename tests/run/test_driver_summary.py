"""The end-of-run summary (run.driver.summary_table): one row per configuration, requests in flight included."""
from dlmark.run.driver import summary_table

import synthetic_results as synthetic


def rows(text: str) -> tuple[str, list[str]]:
    lines = text.splitlines()
    return lines[0], lines[2:]


def test_each_number_of_requests_in_flight_is_a_configuration_of_its_own():
    records = [synthetic.int8_record("SqueezeNet-1.1", "openvino", batch, in_flight=n)
               for n in (1, 2) for batch in (1, 32)]
    header, lines = rows(summary_table(records))
    assert "in flight" in header and len(lines) == 2
    flight = header.index("in flight") + len("in flight")
    by_count = {line[:flight].split()[-1]: line for line in lines}
    assert set(by_count) == {"1", "2"}
    # Each row's best is its own: two requests in flight measured faster here (synthetic), one does not take it.
    best = {n: max(r["throughput"] for r in records if (r.get("in_flight") or 1) == n) for n in (1, 2)}
    assert f"{best[1]:.1f}" in by_count["1"] and f"{best[2]:.1f}" in by_count["2"]


def test_one_request_at_a_time_needs_no_in_flight_column():
    records = [synthetic.throughput_record("AlexNet", synthetic.CPU, batch) for batch in (1, 2)]
    header, lines = rows(summary_table(records))
    assert "in flight" not in header and len(lines) == 1
