"""Cost and wall time against worker count: a sweep, drawn as SVG, HTML or PNG.

:func:`sweep` prices the job at worker counts around the chosen one (the estimate, and
with ``runs`` the simulated p50 and p90 of spot first with fallback). :func:`svg` draws
it as a self-contained SVG with no dependency (``.html`` wraps it in a page); ``.png``
needs matplotlib, imported only then.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

from pipelines.config import JobConfig
from pipelines.cost import capacity, model
from pipelines.cost.model import Settings
from pipelines.cost.pricing import PriceBook
from pipelines.cost.workload import Workload
from pipelines.errors import ConfigError
from pipelines.kube.capacity.profiles import Profile

#: worker counts as multiples of the chosen one
SWEEP_FACTORS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)
MAX_RUNS = 20


@dataclass(frozen=True)
class Point:
    workers: int
    wall_seconds: float
    spot_first_usd: float
    on_demand_usd: float
    p50_usd: float | None = None
    p90_usd: float | None = None
    p90_wall_seconds: float | None = None


def sweep(job: JobConfig, profile: Profile, book: PriceBook, workload: Workload,
          settings: Settings, workers: int, runs: int = 0,
          source: str | None = None) -> list[Point]:
    counts = sorted({max(1, round(workers * f)) for f in SWEEP_FACTORS})
    points = []
    for n in counts:
        fleet = capacity.fleet(job, profile, book, workers=n, source=source)
        est = model.estimate(workload, fleet, settings)
        p50 = p90 = p90_wall = None
        if runs:
            summary, _ = model.simulate_runs(
                workload, fleet, settings, "spot-first",
                model.budgeted_runs(runs, workload.units, MAX_RUNS))
            p50, p90, p90_wall = summary.p50_usd, summary.p90_usd, summary.p90_wall_seconds
        points.append(Point(fleet.pods, est["spot-first"].wall_seconds, est["spot-first"].usd,
                            est["on-demand"].usd, p50, p90, p90_wall))
    return points


def _panel(x0: float, title: str, unit: str, series: list[tuple[str, str, list[tuple[int, float]]]],
           width: float, height: float) -> list[str]:
    values = [v for _, _, pts in series for _, v in pts]
    xs = [x for _, _, pts in series for x, _ in pts]
    top = max(values) * 1.1 if values and max(values) > 0 else 1.0
    lo_x, hi_x = min(xs), max(xs)
    left, bottom, inner_w, inner_h = x0 + 60, height - 40, width - 80, height - 80

    def px(x: float) -> float:
        return left + (0 if hi_x == lo_x else (x - lo_x) / (hi_x - lo_x) * inner_w)

    def py(v: float) -> float:
        return bottom - v / top * inner_h

    out = [f'<text x="{left}" y="24" font-size="14" font-weight="bold">{html.escape(title)}</text>',
           f'<line x1="{left}" y1="{bottom}" x2="{left + inner_w}" y2="{bottom}" stroke="#333"/>',
           f'<line x1="{left}" y1="{bottom}" x2="{left}" y2="{bottom - inner_h}" stroke="#333"/>']
    for i in range(5):
        v = top * i / 4
        out.append(f'<text x="{left - 6}" y="{py(v) + 4:.1f}" font-size="10" '
                   f'text-anchor="end">{v:,.3g}{html.escape(unit)}</text>')
    for x in sorted(set(xs)):
        out.append(f'<text x="{px(x):.1f}" y="{bottom + 14}" font-size="10" '
                   f'text-anchor="middle">{x}</text>')
    out.append(f'<text x="{left + inner_w / 2}" y="{height - 6}" font-size="11" '
               'text-anchor="middle">workers</text>')
    for i, (name, color, pts) in enumerate(series):
        path = " ".join(f"{px(x):.1f},{py(v):.1f}" for x, v in pts)
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{path}"/>')
        out.extend(f'<circle cx="{px(x):.1f}" cy="{py(v):.1f}" r="3" fill="{color}"/>'
                   for x, v in pts)
        out.append(f'<text x="{left + 10}" y="{44 + 14 * i}" font-size="11" '
                   f'fill="{color}">{html.escape(name)}</text>')
    return out


def svg(points: list[Point], title: str) -> str:
    width, height = 900, 380
    half = width / 2
    cost = [("spot first, fallback (estimate)", "#1f77b4",
             [(p.workers, p.spot_first_usd) for p in points]),
            ("on-demand only (estimate)", "#d62728",
             [(p.workers, p.on_demand_usd) for p in points])]
    time = [("spot first (estimate)", "#1f77b4",
             [(p.workers, p.wall_seconds / 3600) for p in points])]
    if all(p.p90_usd is not None for p in points):
        cost.append(("spot first, simulated p90", "#ff7f0e",
                     [(p.workers, p.p90_usd or 0.0) for p in points]))
        time.append(("spot first, simulated p90", "#ff7f0e",
                     [(p.workers, (p.p90_wall_seconds or 0.0) / 3600) for p in points]))
    body = (_panel(0, "$ per run", "", cost, half, height)
            + _panel(half, "wall time (hours)", "", time, half, height))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 20}" '
            f'font-family="sans-serif"><title>{html.escape(title)}</title>'
            f'<text x="10" y="{height + 14}" font-size="11">{html.escape(title)}</text>'
            + "".join(body) + "</svg>\n")


def write(points: list[Point], path: str | Path, title: str) -> None:
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".png":
        _png(points, path, title)
        return
    if suffix not in (".svg", ".html", ".htm"):
        raise ConfigError(f"--chart {path}: the name must end in .svg, .html or .png.")
    text = svg(points, title)
    if suffix != ".svg":
        text = (f"<!doctype html><html><head><meta charset='utf-8'><title>"
                f"{html.escape(title)}</title></head><body>{text}</body></html>\n")
    path.write_text(text, encoding="utf-8")


def _png(points: list[Point], path: Path, title: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError(f"--chart {path}: a PNG needs matplotlib, which is not installed.",
                          hint="pip install 'tokenyard[charts]', or name the chart .svg or "
                               ".html (no dependency).") from None
    workers = [p.workers for p in points]
    fig, (cost, wall) = plt.subplots(1, 2, figsize=(11, 4))
    cost.plot(workers, [p.spot_first_usd for p in points], "o-", label="spot first (estimate)")
    cost.plot(workers, [p.on_demand_usd for p in points], "o-", label="on-demand (estimate)")
    wall.plot(workers, [p.wall_seconds / 3600 for p in points], "o-", label="estimate")
    if all(p.p90_usd is not None for p in points):
        cost.plot(workers, [p.p90_usd for p in points], "o--", label="spot first, p90")
        wall.plot(workers, [(p.p90_wall_seconds or 0) / 3600 for p in points], "o--",
                  label="spot first, p90")
    cost.set(xlabel="workers", ylabel="$ per run")
    wall.set(xlabel="workers", ylabel="wall time (hours)")
    cost.legend()
    wall.legend()
    fig.suptitle(title)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
