"""Figures for slides: names that say what a chart shows, and plotly's SVG / 2x PNG download settings."""

import pytest

from unlearn_core.slides import MAX_NAME, PNG_SCALE, download_config, figure_filename


def test_figure_filename_names_method_data_forget_and_chart():
    assert figure_filename("embedding", method="unsc", dataset="mnist5k", forget="class:3") == \
        "unsc_mnist5k_class-3_embedding"
    assert figure_filename("spectrum", method="unsc", dataset="digits", forget="class:1,3,5", run_id=12) == \
        "unsc_run12_digits_class-1-3-5_spectrum"
    assert figure_filename("per-class shift", dataset="cifar10", forget="random:0.1") == \
        "cifar10_random-0.1_per-class-shift"


def test_figure_filename_is_safe_and_never_empty():
    name = figure_filename("map", method="../../etc/passwd", dataset="a b/c", forget="subclass:ö<x>")
    assert "/" not in name and ".." not in name and " " not in name and "<" not in name
    assert name == "etc-passwd_a-b-c_subclass-x_map"
    assert figure_filename("") == "figure"
    long = figure_filename("chart", forget="indices:" + ",".join(str(i) for i in range(500)))
    assert len(long) <= MAX_NAME and not long.endswith("-")


def test_download_config_png_at_2x_and_svg():
    png = download_config("unsc_digits_class-3_embedding")
    assert png["toImageButtonOptions"] == {"format": "png", "filename": "unsc_digits_class-3_embedding",
                                           "scale": PNG_SCALE}
    assert PNG_SCALE == 2 and png["displaylogo"] is False
    svg = download_config("x", "svg", responsive=True)
    assert svg["toImageButtonOptions"]["format"] == "svg" and svg["responsive"] is True
    with pytest.raises(ValueError, match="png, svg"):
        download_config("x", "gif")
