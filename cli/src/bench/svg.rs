//! Charts as inline SVG text: lines over categories (message sizes) on a logarithmic scale, and
//! grouped bars on a linear one. Nothing is fetched (no scripts, fonts or style sheets), so a
//! page made of them opens offline; a point's figures show as its tooltip (`<title>`).

use std::fmt::Write;

use crate::units::si;

const WIDTH: f64 = 880.0;
const HEIGHT: f64 = 400.0;
const LEFT: f64 = 70.0;
/// Room for the legend on the right.
const RIGHT: f64 = 210.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 44.0;
const PLOT_W: f64 = WIDTH - LEFT - RIGHT;
const PLOT_H: f64 = HEIGHT - TOP - BOTTOM;

/// How a series' line is drawn.
#[derive(Clone, Copy, Debug)]
pub enum Dash {
    Solid,
    Dashed,
    Dotted,
    LongShort,
}

impl Dash {
    fn attrs(self) -> &'static str {
        match self {
            Dash::Solid => r#"stroke-width="2.5""#,
            Dash::Dashed => r#"stroke-width="1.8" stroke-dasharray="7 4""#,
            Dash::Dotted => r#"stroke-width="1.8" stroke-dasharray="2 3""#,
            Dash::LongShort => r#"stroke-width="1.8" stroke-dasharray="7 3 2 3""#,
        }
    }
}

/// One figure of a series: its median `y` at category `x`, the range of its runs, and a note
/// for the tooltip.
#[derive(Clone, Debug)]
pub struct Point {
    pub x: usize,
    pub y: f64,
    pub lo: f64,
    pub hi: f64,
    pub note: String,
}

/// A line in a plot, with its legend entry.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub color: &'static str,
    pub dash: Dash,
    pub points: Vec<Point>,
}

/// One bar of a group.
#[derive(Clone, Debug)]
pub struct Bar {
    /// Its label under the bar.
    pub label: &'static str,
    pub value: f64,
    pub color: &'static str,
    pub opacity: f64,
    pub note: String,
}

/// Escapes text for HTML and SVG.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn open(out: &mut String, label: &str) {
    let _ = write!(
        out,
        r#"<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{}" font-family="sans-serif" font-size="12">"#,
        esc(label)
    );
    let _ = write!(
        out,
        r##"<rect x="{LEFT}" y="{TOP}" width="{PLOT_W}" height="{PLOT_H}" fill="none" stroke="#999"/>"##
    );
}

/// The y axis title, turned along the axis.
fn y_title(out: &mut String, title: &str) {
    let (x, y) = (16.0, TOP + PLOT_H / 2.0);
    let _ = write!(
        out,
        r#"<text x="{x}" y="{y}" transform="rotate(-90 {x} {y})" text-anchor="middle">{}</text>"#,
        esc(title)
    );
}

/// An axis label for `v`: three digits and an SI prefix, without trailing zeros (`1 k`, `2.5 M`).
fn tick(v: f64) -> String {
    let s = si(v);
    let (num, prefix) = s.split_once(' ').unwrap_or((&s, ""));
    let num = if num.contains('.') { num.trim_end_matches('0').trim_end_matches('.') } else { num };
    format!("{num} {prefix}").trim_end().to_string()
}

/// A horizontal grid line at `y` with its label.
fn grid(out: &mut String, y: f64, label: &str) {
    let _ = write!(
        out,
        r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
        LEFT + PLOT_W,
        LEFT - 6.0,
        y + 4.0,
        esc(label)
    );
}

/// Category labels under the plot, centred on their slots.
fn x_labels(out: &mut String, labels: &[String], title: &str) {
    let slot = PLOT_W / labels.len().max(1) as f64;
    for (i, l) in labels.iter().enumerate() {
        let x = LEFT + (i as f64 + 0.5) * slot;
        let _ = write!(
            out,
            r#"<text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"#,
            TOP + PLOT_H + 16.0,
            esc(l)
        );
    }
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        LEFT + PLOT_W / 2.0,
        HEIGHT - 6.0,
        esc(title)
    );
}

/// A line plot of `series` over the categories `x` (evenly spaced, in order), with a
/// logarithmic y axis; whiskers span each point's `lo..hi`.
pub fn lines(label: &str, x: &[String], x_title: &str, y: &str, series: &[Series]) -> String {
    let mut out = String::new();
    open(&mut out, label);
    y_title(&mut out, y);
    x_labels(&mut out, x, x_title);
    let values = series.iter().flat_map(|s| &s.points).flat_map(|p| [p.y, p.lo, p.hi]);
    let (min, max) = values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if max == 0.0 {
        let _ = write!(out, r#"<text x="{}" y="{}">no figures</text></svg>"#, LEFT + 20.0, TOP + 30.0);
        return out;
    }
    let lo_exp = min.log10().floor();
    let hi_exp = max.log10().ceil().max(lo_exp + 1.0);
    let py = |v: f64| TOP + (hi_exp - v.log10()) / (hi_exp - lo_exp) * PLOT_H;
    // Decades, and 2x and 5x between them when there are few decades to show.
    let steps: &[f64] = if hi_exp - lo_exp <= 2.0 { &[1.0, 2.0, 5.0] } else { &[1.0] };
    for e in lo_exp as i32..=hi_exp as i32 {
        for m in steps {
            let v = m * 10f64.powi(e);
            if v <= 10f64.powf(hi_exp) * 1.0001 {
                grid(&mut out, py(v), &tick(v));
            }
        }
    }
    let slot = PLOT_W / x.len().max(1) as f64;
    let px = |i: usize| LEFT + (i as f64 + 0.5) * slot;
    for s in series {
        let points: Vec<&Point> = s.points.iter().filter(|p| p.y.is_finite() && p.y > 0.0).collect();
        let path: Vec<String> = points.iter().map(|p| format!("{:.1},{:.1}", px(p.x), py(p.y))).collect();
        let _ = write!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{}" {}/>"#,
            path.join(" "),
            s.color,
            s.dash.attrs()
        );
        for p in points {
            let (x, y) = (px(p.x), py(p.y));
            if p.lo > 0.0 && p.hi > p.lo {
                let _ = write!(
                    out,
                    r#"<line x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{:.1}" stroke="{}"/>"#,
                    py(p.lo),
                    py(p.hi),
                    s.color
                );
            }
            let _ = write!(
                out,
                r#"<circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="{}"><title>{}</title></circle>"#,
                s.color,
                esc(&p.note)
            );
        }
    }
    // The legend: one line sample per series.
    let lx = LEFT + PLOT_W + 14.0;
    for (i, s) in series.iter().enumerate() {
        let y = TOP + 8.0 + i as f64 * 17.0;
        let _ = write!(
            out,
            r#"<line x1="{lx}" x2="{}" y1="{y}" y2="{y}" stroke="{}" {}/><text x="{}" y="{}">{}</text>"#,
            lx + 28.0,
            s.color,
            s.dash.attrs(),
            lx + 34.0,
            y + 4.0,
            esc(&s.name)
        );
    }
    out.push_str("</svg>");
    out
}

/// The smallest 1, 2 or 5 times a power of ten at or above `x`.
fn nice(x: f64) -> f64 {
    let p = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * p).find(|v| *v >= x).unwrap_or(10.0 * p)
}

/// Groups of bars on a linear y axis from zero, one group per label in `groups`.
pub fn bars(label: &str, groups: &[(String, Vec<Bar>)], x_title: &str, y: &str) -> String {
    let mut out = String::new();
    open(&mut out, label);
    y_title(&mut out, y);
    let names: Vec<String> = groups.iter().map(|(g, _)| g.clone()).collect();
    x_labels(&mut out, &names, x_title);
    let max =
        groups.iter().flat_map(|(_, b)| b).map(|b| b.value).filter(|v| v.is_finite()).fold(0.0, f64::max);
    if max <= 0.0 {
        let _ = write!(out, r#"<text x="{}" y="{}">no figures</text></svg>"#, LEFT + 20.0, TOP + 30.0);
        return out;
    }
    let step = nice(max / 5.0);
    let top = (max / step).ceil() * step;
    let py = |v: f64| TOP + (1.0 - v / top) * PLOT_H;
    let mut v = 0.0;
    while v <= top * 1.0001 {
        grid(&mut out, py(v), &tick(v));
        v += step;
    }
    let slot = PLOT_W / groups.len().max(1) as f64;
    for (g, (_, group)) in groups.iter().enumerate() {
        let w = (slot * 0.8) / group.len().max(1) as f64;
        for (i, b) in group.iter().enumerate().filter(|(_, b)| b.value.is_finite() && b.value > 0.0) {
            let x = LEFT + g as f64 * slot + slot * 0.1 + i as f64 * w;
            let y = py(b.value);
            let _ = write!(
                out,
                r#"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}" fill-opacity="{}"><title>{}</title></rect>"#,
                x + 1.0,
                w - 2.0,
                TOP + PLOT_H - y,
                b.color,
                b.opacity,
                esc(&b.note)
            );
            let _ = write!(
                out,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{}</text>"#,
                x + w / 2.0,
                y - 4.0,
                b.label
            );
        }
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks() {
        assert_eq!(tick(1000.0), "1 k");
        assert_eq!(tick(2.5e6), "2.5 M");
        assert_eq!(tick(10.0), "10");
        assert_eq!(tick(0.5), "0.5");
        assert_eq!(tick(0.0), "0");
    }

    #[test]
    fn nice_steps() {
        assert_eq!(nice(0.8), 1.0);
        assert_eq!(nice(3.0), 5.0);
        assert_eq!(nice(1200.0), 2000.0);
        assert_eq!(nice(50_000.0), 50_000.0);
    }

    #[test]
    fn a_line_plot_has_a_point_per_figure_and_a_legend_entry_per_series() {
        let point = |x, y: f64| Point { x, y, lo: y * 0.9, hi: y * 1.1, note: format!("<{y}>") };
        let series = [
            Series {
                name: "unix procwire".into(),
                color: "#000",
                dash: Dash::Solid,
                points: vec![point(0, 10.0), point(1, 2e5)],
            },
            Series {
                name: "unix raw".into(),
                color: "#000",
                dash: Dash::Dashed,
                points: vec![point(0, 12.0)],
            },
        ];
        let svg = lines("t", &["16 B".into(), "1 KiB".into()], "size", "rate", &series);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<circle").count(), 3);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("&lt;10&gt;"), "tooltips are escaped");
        // Log scale from 10 to 10^6: a grid line per decade.
        for label in [">10<", ">100<", ">1 k<", ">1 M<"] {
            assert!(svg.contains(label), "{label}: {svg}");
        }
    }

    #[test]
    fn a_plot_without_figures_says_so() {
        assert!(lines("t", &["x".into()], "", "", &[]).contains("no figures"));
        assert!(bars("t", &[("tcp".into(), vec![])], "", "").contains("no figures"));
    }
}
