"""The fleet's spend today and this month against the budget, as two bars, and a line
beneath: the burn now, when a budget is reached at that burn, and who enforces."""

from __future__ import annotations

from functools import partial

from textual.content import Content
from textual.widget import Widget

from aiconsole.domain.fleet import BudgetLevel, BudgetSnapshot
from aiconsole.domain.format import format_usd
from aiconsole.ui.widgets.bars import bar_pieces, bar_track

_LEVEL_STYLE = {
    BudgetLevel.OK: "$success",
    BudgetLevel.WARNING: "$warning",
    BudgetLevel.ALERT: "$warning bold",
    BudgetLevel.EXCEEDED: "$error bold",
}
_LABEL_WIDTH = 7


def budget_figures(spent: float, limit: float) -> str:
    return f" {format_usd(spent)} of {format_usd(limit)}"


def budget_line(
    label: str,
    spent: float,
    limit: float,
    level: BudgetLevel,
    width: int,
    *,
    figures_width: int = 0,
    track_style: str = "$panel-lighten-2",
) -> Content:
    """One bar; `figures_width` pads the figures so that bars drawn one above the other end together."""
    figures = budget_figures(spent, limit).ljust(figures_width)
    share = spent / limit if limit > 0 else 0.0
    percent = f" {share:4.0%}" if limit > 0 else "  no budget"
    bar_width = max(4, width - _LABEL_WIDTH - len(figures) - len(percent) - 2)
    style = _LEVEL_STYLE[level]
    return Content.assemble(
        (label.ljust(_LABEL_WIDTH), "$foreground-muted"),
        *bar_pieces([(share, style)], bar_width, track_style),
        (percent, style),
        figures,
    )


class BudgetBars(Widget):
    """Today against the daily budget, this month against the monthly one, and the outlook."""

    DEFAULT_CSS = """
    BudgetBars {
        height: 3;
        padding: 0 1;
    }
    """

    def __init__(self, budget: BudgetSnapshot, note: str = "", *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.budget = budget
        self.note = note

    def show(self, budget: BudgetSnapshot, note: str = "") -> None:
        if (budget, note) != (self.budget, self.note):
            self.budget, self.note = budget, note
            self.refresh()

    def render(self) -> Content:
        width = self.content_size.width or 78
        b = self.budget
        figures_width = max(
            len(budget_figures(b.spent_today_usd, b.daily_usd)),
            len(budget_figures(b.spent_month_usd, b.monthly_usd)),
        )
        track = bar_track(self.app.current_theme.dark)
        line = partial(budget_line, width=width, figures_width=figures_width, track_style=track)
        return Content.assemble(
            line("Today", b.spent_today_usd, b.daily_usd, b.day_level),
            "\n",
            line("Month", b.spent_month_usd, b.monthly_usd, b.month_level),
            "\n",
            (" " * _LABEL_WIDTH + self.note, "$foreground-muted"),
        )
