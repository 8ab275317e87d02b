"""Draws the benchmark's main comparisons as one SVG (no plotting library:
the harness needs nothing beyond Python's standard library)."""

import math
from html import escape

COLORS = {
    "baseinit": "#d62728", "baseinit-before": "#ff9896", "cinit": "#7f7f7f", "tini": "#1f77b4", "dumb-init": "#17becf",
    "catatonit": "#9467bd", "runit": "#2ca02c", "s6": "#ff7f0e", "supervisord": "#8c564b",
    # The output scenario's paths (bench.OUTPUT_PATHS' labels).
    "raw pipe": "#c7c7c7", "sed": "#7f7f7f", "s6-log": "#ff7f0e", "baseinit prefix": "#d62728",
    "baseinit json": "#e377c2", "baseinit inherit": "#bcbd22",
}
PANEL_W, PANEL_H = 480, 270
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 64, 16, 36, 58


def median(summary):
    return None if not summary else summary["median"]


def nice_ticks(lo, hi, log):
    if log:
        lo_e, hi_e = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
        return [10 ** e for e in range(lo_e, hi_e + 1)]
    step = 10 ** math.floor(math.log10(max(hi, 1e-9)))
    for mult in (1, 2, 5, 10):
        if hi / (step * mult) <= 6:
            step *= mult
            break
    return [i * step for i in range(0, int(hi / step) + 2)]


def label(v):
    if v >= 1000 and v % 1000 == 0:
        return f"{v / 1000:g}k"
    return f"{v:g}"


class Panel:
    def __init__(self, x, y, title, unit, log, lo, hi):
        self.x, self.y, self.title, self.unit, self.log = x, y, title, unit, log
        ticks = nice_ticks(lo, hi, log)
        self.lo = ticks[0] if log else 0
        self.hi = ticks[-1]
        self.ticks = ticks
        self.w = PANEL_W - MARGIN_L - MARGIN_R
        self.h = PANEL_H - MARGIN_T - MARGIN_B

    def ypos(self, v):
        if self.log:
            f = (math.log10(max(v, self.lo)) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))
        else:
            f = v / self.hi if self.hi else 0
        return self.y + MARGIN_T + self.h * (1 - f)

    def frame(self):
        out = [f'<text x="{self.x + PANEL_W / 2}" y="{self.y + 20}" text-anchor="middle" font-weight="bold">{escape(self.title)}</text>']
        for t in self.ticks:
            yy = self.ypos(t)
            out.append(f'<line x1="{self.x + MARGIN_L}" x2="{self.x + MARGIN_L + self.w}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#ddd"/>')
            out.append(f'<text x="{self.x + MARGIN_L - 6}" y="{yy + 4:.1f}" text-anchor="end" font-size="11">{label(t)}</text>')
        out.append(f'<text x="{self.x + 14}" y="{self.y + MARGIN_T + self.h / 2}" font-size="11" '
                   f'transform="rotate(-90 {self.x + 14} {self.y + MARGIN_T + self.h / 2})" text-anchor="middle">'
                   f'{escape(self.unit)}{" (log)" if self.log else ""}</text>')
        return out


def bars(x, y, title, unit, values, log=False, note=None):
    """values: [(init, value or None)] in order."""
    present = [v for _, v in values if v is not None and v > 0]
    if not present:
        return []
    p = Panel(x, y, title, unit, log, min(present), max(present))
    out = p.frame()
    slot = p.w / len(values)
    base = p.y + MARGIN_T + p.h
    for k, (init, v) in enumerate(values):
        cx = p.x + MARGIN_L + slot * k + slot * 0.15
        bw = slot * 0.7
        if v is None:
            out.append(f'<text x="{cx + bw / 2:.1f}" y="{base - 4}" text-anchor="middle" font-size="10" fill="#999">n/a</text>')
        else:
            top = p.ypos(v)
            out.append(f'<rect x="{cx:.1f}" y="{top:.1f}" width="{bw:.1f}" height="{max(base - top, 1):.1f}" '
                       f'fill="{COLORS.get(init, "#333")}"><title>{escape(init)}: {v:g} {escape(unit)}</title></rect>')
            text = f"{v:.3g}" if v < 1000 else f"{v:,.0f}"
            out.append(f'<text x="{cx + bw / 2:.1f}" y="{top - 3:.1f}" text-anchor="middle" font-size="10">{text}</text>')
        out.append(f'<text x="{cx + bw / 2:.1f}" y="{base + 14}" text-anchor="middle" font-size="10" '
                   f'transform="rotate(25 {cx + bw / 2:.1f} {base + 14})">{escape(init)}</text>')
    if note:
        out.append(f'<text x="{p.x + PANEL_W / 2}" y="{p.y + PANEL_H - 4}" text-anchor="middle" font-size="10" fill="#555">{escape(note)}</text>')
    return out


def lines(x, y, title, unit, series, xlabel):
    """series: {init: [(x, y)]}, drawn on log-log axes."""
    xs = sorted({pt[0] for pts in series.values() for pt in pts})
    ys = [pt[1] for pts in series.values() for pt in pts if pt[1] and pt[1] > 0]
    if not xs or not ys:
        return []
    p = Panel(x, y, title, unit, True, min(ys), max(ys))
    out = p.frame()
    x_lo, x_hi = math.log10(xs[0]), math.log10(xs[-1])

    def xpos(v):
        return p.x + MARGIN_L + p.w * ((math.log10(v) - x_lo) / (x_hi - x_lo) if x_hi > x_lo else 0.5)

    base = p.y + MARGIN_T + p.h
    for v in xs:
        out.append(f'<text x="{xpos(v):.1f}" y="{base + 14}" text-anchor="middle" font-size="10">{v}</text>')
    out.append(f'<text x="{p.x + MARGIN_L + p.w / 2}" y="{base + 30}" text-anchor="middle" font-size="11">{escape(xlabel)}</text>')
    # The legend flows left to right by each name's width (about 6.2 px a
    # character at 10 px), two rows for the eight inits or nine with a
    # baseline, where a grid of four to a row left the ninth below the panel.
    lx, ly = p.x + MARGIN_L, base + 46
    for init, pts in series.items():
        pts = [(a, b) for a, b in pts if b and b > 0]
        color = COLORS.get(init, "#333")
        width = 3 if init in ("baseinit", "baseinit-before") else 1.5
        dash = ' stroke-dasharray="6,3"' if init == "baseinit-before" else ""
        if len(pts) > 1:
            path = " ".join(f"{'M' if i == 0 else 'L'}{xpos(a):.1f},{p.ypos(b):.1f}" for i, (a, b) in enumerate(pts))
            out.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="{width}"{dash}/>')
        for a, b in pts:
            out.append(f'<circle cx="{xpos(a):.1f}" cy="{p.ypos(b):.1f}" r="2.5" fill="{color}"><title>{escape(init)}: {a} → {b:g} {escape(unit)}</title></circle>')
        step = 13 + 6.2 * len(init) + 8
        if lx + step > p.x + MARGIN_L + p.w + 8 and lx > p.x + MARGIN_L:
            lx, ly = p.x + MARGIN_L, ly + 12
        out.append(f'<rect x="{lx:.1f}" y="{ly - 8}" width="10" height="3" fill="{color}"/>')
        out.append(f'<text x="{lx + 13:.1f}" y="{ly - 4}" font-size="10">{escape(init)}</text>')
        lx += step
    return out


def svg(report):
    r = report["inits"]
    inits = list(r)

    def col(fn):
        out = []
        for i in inits:
            try:
                out.append((i, fn(r[i])))
            except (KeyError, TypeError):
                out.append((i, None))
        return out

    # Each panel drawn at (x, y), two to a row in this order.
    panels = []
    if inits:
        sizes = sorted(int(n) for n in r[inits[0]]["scale"])
        small = 3 if 3 in sizes else sizes[0]
        mid = 20 if 20 in sizes else sizes[len(sizes) // 2]
        panels += [
            lambda x, y: bars(x, y, "Orphan burst: 1,000 exit at once, time to reap all", "ms",
                              col(lambda v: median(v["burst"]["reap_all_ms"])), log=True),
            lambda x, y: bars(x, y, "Orphan storm: unreaped zombies 5 s after the start", "zombies",
                              col(lambda v: median(v["storm"]["zombies_at_5s"])), note="0 for every init that reaps at once"),
            lambda x, y: bars(x, y, f"Memory: supervision tree PSS, {small} services", "kB",
                              col(lambda v: median(v["scale"][small]["pss_kb"])), log=True),
            lambda x, y: bars(x, y, "Stop: SIGTERM to PID 1 until the namespace is gone, 3 services", "ms",
                              col(lambda v: median(v["stop"]["stop_ms"])), log=True,
                              note="runit: runsvdir exits at once and the kernel kills the services"),
            lambda x, y: bars(x, y, f"Startup: unshare + exec of PID 1 until {mid} services run", "ms",
                              col(lambda v: median(v["scale"][mid]["startup_ms"])), log=True),
            lambda x, y: lines(x, y, "Scale: supervision tree PSS by service count", "kB",
                               {i: [(n, median(r[i]["scale"][n]["pss_kb"])) for n in sizes] for i in inits}, "services"),
            lambda x, y: lines(x, y, "Scale: startup time by service count", "ms",
                               {i: [(n, median(r[i]["scale"][n]["startup_ms"])) for n in sizes] for i in inits}, "services"),
            lambda x, y: bars(x, y, "Restart: a service up 2 s exits 1, time to its next start", "ms",
                              col(lambda v: median(v["restart"]["first_restart_ms"])), log=True,
                              note="n/a: single-child inits restart nothing"),
        ]
    o = report.get("output")
    if o:
        labels = o.get("labels", {})
        one = o["workloads"]["one"]

        def path_col(fn):
            out = []
            for path, v in o["paths"].items():
                try:
                    out.append((labels.get(path, path), fn(v)))
                except (KeyError, TypeError):
                    out.append((labels.get(path, path), None))
            return out

        panels += [
            lambda x, y: bars(x, y, f"Service output: MB/s, one service, {one['line_bytes']}-byte lines", "MB/s",
                              path_col(lambda v: median(v["one"]["mb_s"])), log=True,
                              note="from the service's stdout to a pipe read as fast as possible"),
            lambda x, y: bars(x, y, "Service output: a lone line's latency, median", "ms",
                              path_col(lambda v: median(v["latency"]["median_ms"])), log=True,
                              note="write to arrival; sed: sed -u"),
        ]
    rows = (len(panels) + 1) // 2
    w, h = 2 * PANEL_W, rows * PANEL_H + 24
    body = [x for k, panel in enumerate(panels) for x in panel((k % 2) * PANEL_W, (k // 2) * PANEL_H)]
    foot = (f'<text x="{w / 2}" y="{h - 8}" text-anchor="middle" font-size="11" fill="#555">'
            f'{escape(report["date"])} · {escape(report["machine"])} · median of {report["runs"]} runs · bench/run</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
            f'font-family="sans-serif" font-size="12">\n<rect width="100%" height="100%" fill="white"/>\n'
            + "\n".join(body) + "\n" + foot + "\n</svg>\n")
