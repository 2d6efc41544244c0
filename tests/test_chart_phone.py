"""Charts sized for the phone (issue 26, item 5): the layout's sizes in CSS px at the width a phone
shows the image, the unit on the value axis, the columns named by their labels. The browser's
measurement of the same is in tests/test_inbox_phone.py."""

from __future__ import annotations

import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from dispatcher.config.rich import ChartSpec
from dispatcher.render.chart import DISPLAY_WIDTH, DPI, HEIGHT, SCALE, WIDTH, chart_figure, tick, value_unit

DAYS = [f"2026-11-{d:02}" for d in range(14, 28)]


def frame(**columns: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"day": DAYS, **columns})


def test_one_point_is_one_css_pixel_at_the_width_a_phone_shows_the_image() -> None:
    assert (WIDTH, HEIGHT) == (600, 400) and WIDTH == DISPLAY_WIDTH * SCALE and DPI == 72 * SCALE
    assert 280 <= DISPLAY_WIDTH <= 340, "a 375 px phone less the chat's margins and the bubble's padding"


@pytest.mark.parametrize("kind", ["line", "bar", "barh"])
def test_tick_labels_are_11_css_px_and_the_title_14_on_the_phone(kind: str) -> None:
    fig = chart_figure(
        frame(sales=[float(i * 1000) for i in range(14)]), ChartSpec(x="day", y=["sales"], kind=kind), "t"
    )
    ax = fig.axes[0]
    css = DISPLAY_WIDTH / WIDTH  # CSS px per image px
    for label in [*ax.get_xticklabels(), *ax.get_yticklabels()]:
        assert label.get_fontsize() * DPI / 72 * css == pytest.approx(11)
    assert ax.title.get_fontsize() * DPI / 72 * css == pytest.approx(14)
    renderer = FigureCanvasAgg(fig).get_renderer()
    heights = [t.get_window_extent(renderer).height * css for t in ax.get_yticklabels() if t.get_text()]
    assert heights and min(heights) >= 11, "a line of 11 px text is at least 11 px tall"
    if kind == "line":
        assert ax.lines[0].get_linewidth() * DPI / 72 * css == pytest.approx(2)


def test_a_category_axis_prints_at_most_six_labels_across_the_phone() -> None:
    fig = chart_figure(frame(sales=[1.0] * 14), ChartSpec(x="day", y=["sales"], kind="bar"), "t")
    shown = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert 1 < len(shown) <= 6 and shown[0] == "11-14"


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (120000, "¥", "¥12万"),
        (85000, "¥", "¥8.5万"),
        (-30000, "¥", "-¥3万"),
        (3210, "", "3,210"),
        (0, "¥", "¥0"),
        (150_000_000, "", "1.5亿"),
        (0.045, "%", "4.5%"),
        (0.5, "%", "50%"),
        (1.5e20, "", "1.5e+20"),
    ],
)
def test_value_axis_labels_carry_the_unit_and_count_in_wan_and_yi(value: float, unit: str, text: str) -> None:
    assert tick(value, unit) == text


def test_the_unit_comes_from_the_formats_of_the_y_columns() -> None:
    df = frame(sales=[1.0] * 14, rate=[0.1] * 14, orders=[3.0] * 14)
    spec = ChartSpec(x="day", y=["sales"])
    assert value_unit(df, spec, {"sales": "currency"}, "¥") == "¥"
    assert value_unit(df, ChartSpec(x="day", y=["rate"]), {"rate": "percent"}, "¥") == "%"
    assert value_unit(df, spec, {}, "¥") == "", "no format: no unit"
    both = ChartSpec(x="day", y=["sales", "orders"])
    assert value_unit(df, both, {"sales": "currency"}, "¥") == "", "one axis, two units: none"


def test_the_value_axis_shows_the_unit_and_the_columns_label() -> None:
    df = frame(sales=[80000 + 1000.0 * i for i in range(14)])
    fig = chart_figure(df, ChartSpec(x="day", y=["sales"]), "t", {"sales": "currency"}, {"sales": "销售额"})
    ax = fig.axes[0]
    values = [t.get_text() for t in ax.get_yticklabels()]
    assert values and all(v.startswith("¥") and v.endswith("万") for v in values), values
    assert ax.get_ylabel() == "销售额"


def test_a_legend_names_several_columns_by_label_or_as_words() -> None:
    df = frame(gross_sales=[1.0] * 14, net=[2.0] * 14)
    fig = chart_figure(
        df, ChartSpec(x="day", y=["gross_sales", "net"], kind="bar"), "t", None, {"net": "净额"}
    )
    legend = fig.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["gross sales", "净额"]


def test_a_barh_chart_lists_the_first_row_at_the_top() -> None:
    df = pd.DataFrame({"region": ["华东", "华南", "华北"], "rate": [0.03, 0.05, 0.02]})
    fig = chart_figure(df, ChartSpec(x="region", y=["rate"], kind="barh"), "t", {"rate": "percent"})
    ax = fig.axes[0]
    tops = {t.get_text(): t.get_position()[1] for t in ax.get_yticklabels()}
    low, high = ax.get_ylim()
    assert low > high, "the y axis runs downwards"
    assert tops["华东"] < tops["华南"] < tops["华北"]
    assert all(t.get_text().endswith("%") for t in ax.get_xticklabels())
