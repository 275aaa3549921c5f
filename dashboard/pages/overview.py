"""Overview: every KPM of a dataset on main at a glance."""

from __future__ import annotations

from dash import html
from dash.development.base_component import Component

from specwatch.dashboard.registry import PageRequest, page
from specwatch.dashboard.ui import page_header


@page("overview", "", title="Overview", in_menu=True)
async def overview(request: PageRequest) -> Component:
    return html.Div([page_header("Overview", "placeholder")])
