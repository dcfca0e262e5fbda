"""The metric chart and the GPU timeline beneath it, mounted in a small app in our themes."""

from __future__ import annotations

import math

from textual.app import App, ComposeResult

from aiconsole.domain.chart import ChartSeries, GpuPoint
from aiconsole.ui.themes import bundled_theme_dirs, load_themes
from aiconsole.ui.widgets.metric_chart import LEFT_GUTTER, GpuTimeline, MetricChart, plot_width
from ui_helpers import has_control_chars, widget_lines

SIZE = (80, 20)
HOSTILE_LABEL = "\x1b]0;pwned\x07\x1b[31mred[/] [b]x[/b]"
HOSTILE_SHOWN = "red[/] [b]x[/b]"
NAN = float("nan")


def loss(points: int, start: float, decay: float) -> list[float]:
    return [start * math.exp(-i / decay) + 0.4 for i in range(points)]


def two_runs() -> list[ChartSeries]:
    steps = list(range(2000))
    first = loss(2000, 1.9, 500)
    first[700] = NAN
    return [ChartSeries("lora-r16", steps, first), ChartSeries("lora-r8", steps[:1500], loss(1500, 2.0, 400))]


def gpu_points(seconds: int = 600) -> list[GpuPoint]:
    return [
        GpuPoint(float(t), 50 + 20 * math.sin(t / 60), 12_000 + 10 * t, 24_564, 200 + 100 * math.sin(t / 40), 450)
        for t in range(0, seconds, 5)
    ]


class ChartApp(App[None]):
    """A chart over its GPU timeline, as the Training tab stacks them, in our own themes."""

    def __init__(self, theme: str = "aiconsole-dark") -> None:
        super().__init__()
        themes, problems = load_themes(bundled_theme_dirs())
        assert not problems
        for each in themes:
            self.register_theme(each)
        self.theme = theme
        self.chart = MetricChart(id="chart")
        self.timeline = GpuTimeline(id="timeline")

    def compose(self) -> ComposeResult:
        yield self.chart
        yield self.timeline


class CountingChart(MetricChart):
    """Counts the plots drawn: a repaint without new points must reuse the last one."""

    builds = 0

    def _build(self, width: int, height: int):
        self.builds += 1
        return super()._build(width, height)


async def test_chart_shows_title_legend_stats_and_axes() -> None:
    app = ChartApp()
    async with app.run_test(size=SIZE) as pilot:
        app.chart.show(two_runs(), title="train_loss", log_y=False, x_kind="step")
        await pilot.pause()
        lines = widget_lines(app.chart)
    text = "\n".join(lines)
    assert lines[0].startswith("train_loss  ■ lora-r16 min 0.4")
    assert "max 2.3 last 0.4" in text and "· 1 NaN/inf skipped" in text
    assert "■ lora-r8 min 0.4" in text and "max 2.4" in text
    plot_rows = [line for line in lines if line[LEFT_GUTTER - 1] in "┤│"]
    assert plot_rows[0].lstrip().startswith("2.4┤") and plot_rows[-1].lstrip().startswith("0.4")
    assert any("◂" in line for line in plot_rows)  # the last values beside the plot
    axis = next(line for line in lines if "└" in line)
    assert axis.index("└") == LEFT_GUTTER - 1 and "└0 " in axis and " step " in axis and axis.rstrip().endswith("2k")
    assert any(0x2800 <= ord(ch) <= 0x28FF for ch in text)


async def test_elapsed_time_axis_and_notes() -> None:
    app = ChartApp()
    async with app.run_test(size=SIZE) as pilot:
        seconds = [float(s) for s in range(0, 3 * 3600 + 300, 60)]
        series = ChartSeries("run", seconds, [0.0] + [1.0] * (len(seconds) - 1))
        app.chart.show([series], title="learning_rate", log_y=True, x_kind="time", note="\x1b[2Jlive")
        await pilot.pause()
        text = "\n".join(widget_lines(app.chart))
    assert "log off: values ≤ 0" in text and "live" in text and not has_control_chars(text)
    assert "└0s " in text and " elapsed " in text and "3h04m" in text


async def test_log_scale_is_named_when_applied() -> None:
    app = ChartApp()
    async with app.run_test(size=SIZE) as pilot:
        app.chart.show(two_runs(), title="perplexity", log_y=True)
        await pilot.pause()
        assert app.chart.log_applied and app.chart.last_plot is not None and app.chart.last_plot.log_y
        assert "log y" in "\n".join(widget_lines(app.chart))


async def test_hostile_labels_show_inert() -> None:
    app = ChartApp()
    async with app.run_test(size=SIZE) as pilot:
        series = ChartSeries(HOSTILE_LABEL, [0, 1, 2], [3.0, 2.0, 1.0])
        app.chart.show([series], title="[bold]loss[/bold]\x1b[31m", log_y=False)
        await pilot.pause()
        text = "\n".join(widget_lines(app.chart))
        svg = app.export_screenshot()
    assert HOSTILE_SHOWN in text and "[bold]loss[/bold]" in text
    assert not has_control_chars(text) and "pwned" not in text
    assert "\x1b" not in svg and "pwned" not in svg
    assert "red[/]&#160;[b]x[/b]" in svg.replace(" ", "&#160;")


async def test_empty_chart_says_no_points_yet() -> None:
    app = ChartApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "no points yet" in widget_lines(app.chart)[0]
        app.chart.show([ChartSeries("run", [], [])], title="eval_loss", log_y=False)
        await pilot.pause()
        assert widget_lines(app.chart)[0].startswith("eval_loss  no points yet")


async def test_resize_replots_and_a_repaint_without_new_points_does_not() -> None:
    app = ChartApp()
    app.chart = CountingChart(id="chart")
    async with app.run_test(size=SIZE) as pilot:
        series = two_runs()
        app.chart.show(series, title="train_loss", log_y=False)
        await pilot.pause()
        first = app.chart.last_plot
        assert first is not None and len(first.rows[0]) == plot_width(80)
        builds = app.chart.builds
        app.chart.show(series, title="train_loss", log_y=False)  # the same points again
        app.chart.refresh()
        await pilot.pause()
        assert app.chart.last_plot is first and app.chart.builds == builds

        await pilot.resize_terminal(100, 24)
        await pilot.pause()
        resized = app.chart.last_plot
        assert resized is not first and len(resized.rows[0]) == plot_width(100)
        assert max(len(line.rstrip()) for line in widget_lines(app.chart)) > 80

        grown = [ChartSeries(s.label, [*s.xs, len(s.xs)], [*s.ys, 0.1]) for s in series]
        app.chart.show(grown, title="train_loss", log_y=False)
        await pilot.pause()
        assert app.chart.last_plot is not resized and app.chart.last_plot.y_min == 0.1


async def test_timeline_lines_up_under_the_chart() -> None:
    app = ChartApp()
    async with app.run_test(size=SIZE) as pilot:
        seconds = [float(t) for t in range(0, 600, 2)]
        app.chart.show([ChartSeries("run", seconds, loss(300, 2.0, 100))], title="loss", log_y=False, x_kind="time")
        app.timeline.show(gpu_points(), 0.0, seconds[-1])
        await pilot.pause()
        lines = widget_lines(app.timeline)
        plot = app.chart.last_plot
    assert [line.split()[0] for line in lines] == ["temp", "VRAM", "power"]
    strip_cells = set("▁▂▃▄▅▆▇█ ")
    for line in lines:
        body = line[LEFT_GUTTER : LEFT_GUTTER + len(plot.rows[0])]
        assert set(body) <= strip_cells and body.strip()
        assert line[LEFT_GUTTER + len(plot.rows[0])] == " "  # the strip ends where the plot ends
    assert lines[0].rstrip().endswith("30–70°C")
    assert lines[1].rstrip().endswith("≤17.5/24G") and lines[2].rstrip().endswith("≤300W")


async def test_timeline_without_samples_in_the_span() -> None:
    app = ChartApp()
    async with app.run_test(size=SIZE) as pilot:
        app.timeline.show(gpu_points(), 5000.0, 6000.0)
        await pilot.pause()
        lines = widget_lines(app.timeline)
        assert lines[0].startswith("no GPU samples for this span: the console records them while it runs")
        app.timeline.show([GpuPoint(10.0), GpuPoint(20.0, temp_c=60.0)], 0.0, 30.0, width_hint=30)
        await pilot.pause()
        lines = widget_lines(app.timeline)
    assert len(lines[0]) >= LEFT_GUTTER + 30 and lines[0].rstrip().endswith("60–60°C")
    assert lines[1].rstrip().endswith("—") and lines[2].rstrip().endswith("—")


async def test_series_colours_come_from_the_theme() -> None:
    for theme in ("aiconsole-dark", "aiconsole-light"):
        app = ChartApp(theme)
        async with app.run_test(size=SIZE) as pilot:
            app.chart.show(two_runs(), title="train_loss", log_y=False)
            await pilot.pause()
            colours = [app.chart.get_visual_style(f"metric-chart--series-{i}", partial=True).foreground for i in (0, 1)]
            variables = app.theme_variables
        assert colours[0] is not None and colours[1] is not None and colours[0] != colours[1]
        assert colours[0].hex.lower() == variables["accent"].lower()
