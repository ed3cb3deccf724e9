"""The view a link keeps beside the shared choice: eps, delta, run, sweep, cell, evidence; each value checked."""

from __future__ import annotations

import pytest

from unlearn_app.urlstate import EPS_RANGE, VIEW_KEYS, delta_range, url_params, view_from_query


def test_good_view_values_are_read_and_written_back():
    values, warnings = view_from_query({"eps": "0.95", "delta": "0.1", "run": "12", "sweep": "ga-grid_1",
                                        "cell": "0123456789ab", "evidence": "probe,cka"})
    assert warnings == []
    assert values == {"eps": 0.95, "delta": 0.1, "run": 12, "sweep": "ga-grid_1", "cell": "0123456789ab",
                      "evidence": ("probe", "cka")}
    params = url_params({"dataset": "digits", "model": "mlp", "forget": "class:3", "seed": 0}, values)
    assert params["eps"] == "0.95" and params["evidence"] == "probe,cka" and params["run"] == "12"
    assert view_from_query(params)[0] == values  # what the address bar keeps reads back the same


@pytest.mark.parametrize("key,bad", [("eps", "0,5"), ("eps", "1.5"), ("eps", "nan"), ("delta", "9"),
                                     ("run", "-3"), ("run", "1e3"), ("run", "٣"), ("cell", "<script>"),
                                     ("sweep", "../x"), ("evidence", "probe,rm -rf"), ("evidence", " , ")])
def test_a_bad_view_value_is_dropped_with_a_warning_that_does_not_repeat_it(key, bad):
    values, warnings = view_from_query({key: bad, "eps": "0.9"} if key != "eps" else {key: bad})
    assert key not in values
    assert len(warnings) == 1 and warnings[0].startswith(f"The link's {key} was ignored") and bad not in warnings[0]


def test_ranges_match_the_sliders():
    assert EPS_RANGE == (0.80, 1.0)
    low, high = delta_range()
    assert low < 0 < high
    assert set(VIEW_KEYS) == {"eps", "delta", "run", "sweep", "cell", "evidence"}
