"""Presentation mode: the page as a projector at 1280 x 720 shows it.

One stylesheet (:data:`PRESENT_CSS`) hides the sidebar (the app puts the
page links in the header instead) and every input control, widens the page
to the window and enlarges the text; :func:`enlarge` gives a plotly figure projector-sized fonts. The
controls are hidden with CSS, not left out of the script, so each widget
keeps its value and a page keeps its state when presentation mode is
toggled. Elements inside a container whose key starts with ``keep_`` (a
``st-key-keep_...`` class) stay visible: the presentation toggle itself and a
page's own navigation (the Tour's screen buttons).
"""

from __future__ import annotations

# Streamlit's text sizes are in rem: a larger root size enlarges every text, heading and caption together.
ROOT_FONT_PX = 18
CHART_FONT_PX = 15

# Input controls by their data-testid (Streamlit 1.67); tabs, expanders and page links are content, not controls.
CONTROLS = ("stSelectbox", "stMultiSelect", "stNumberInput", "stTextInput", "stTextArea", "stSlider",
            "stSelectSlider", "stRadio", "stCheckbox", "stButton", "stDownloadButton", "stFormSubmitButton",
            "stFileUploader", "stPopover", "stSegmentedControl", "stButtonGroup", "stToggle")
_KEEP = '[class*="st-key-keep_"]'


def _hide_controls() -> str:
    return ",\n".join(f'[data-testid="stMain"] [data-testid="{testid}"]:not({_KEEP} *)' for testid in CONTROLS) \
        + ' { display: none !important; }'


PRESENT_CSS = f"""
html {{ font-size: {ROOT_FONT_PX}px; }}
section[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"], [data-testid="stExpandSidebarButton"],
[data-testid="stDecoration"] {{ display: none !important; }}
[data-testid="stMainBlockContainer"], .block-container {{ max-width: 100% !important; padding: 3.6rem 1.6rem 2rem
  1.6rem !important; }}
[data-testid="stMain"] h1 {{ padding-top: 0.2rem !important; padding-bottom: 0.4rem !important; }}
/* The toggle sits in the header bar, right of the page links, so it takes no row of the page. */
.st-key-keep_present_toggle {{ position: fixed !important; top: 0.55rem; right: 3.2rem; width: auto !important;
  z-index: 1000000; }}
{_hide_controls()}
[data-testid="stMain"] [data-testid="stForm"]:not({_KEEP} *) {{ border: none; padding: 0; }}
/* Chart text a projector can show: plotly writes its font sizes inline, so only !important reaches them (tick
   labels, legend and axis titles; plotly places them by their anchors, so a few pixels more still fit). */
[data-testid="stPlotlyChart"] .main-svg :is(.xtick, .ytick) text,
[data-testid="stPlotlyChart"] .main-svg .legendtext {{ font-size: {CHART_FONT_PX - 1}px !important; }}
[data-testid="stPlotlyChart"] .main-svg :is(.xtitle, .ytitle) {{ font-size: {CHART_FONT_PX}px !important; }}
[data-testid="stPlotlyChart"] .main-svg .gtitle {{ font-size: {CHART_FONT_PX + 3}px !important; }}
"""


def enlarge(fig, font_px: int = CHART_FONT_PX):
    """``fig`` with projector-sized fonts (base ``font_px``, titles 2 px more); returns the same figure."""
    fig.update_layout(font=dict(size=font_px), title_font=dict(size=font_px + 2),
                      legend_font=dict(size=font_px - 1))
    return fig
