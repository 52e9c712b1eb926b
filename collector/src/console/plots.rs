//! The node page's charts, drawn on the server as SVG with plotters: lines of a
//! [`History`](super::series::History), a dashed forecast to full, the time axis as clock
//! times. A chart without points says so instead of drawing empty axes.

use plotters::{coord::Shift, prelude::*};

use super::series::{Forecast, Series, Window};

/// The charts' size, pixels (the page scales them to its width).
const SIZE: (u32, u32) = (720, 240);
/// Colours told apart by colour-blind viewers too (Okabe and Ito's palette).
const COLOURS: [RGBColor; 5] = [
    RGBColor(0x00, 0x72, 0xB2),
    RGBColor(0xD5, 0x5E, 0x00),
    RGBColor(0x00, 0x9E, 0x73),
    RGBColor(0xCC, 0x79, 0xA7),
    RGBColor(0xE6, 0x9F, 0x00),
];

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("drawing the chart {title:?}: {message}")]
pub struct PlotError {
    title: String,
    message: String,
}

/// What one chart shows.
pub struct Chart<'a> {
    /// Its title.
    pub title: &'a str,
    /// The unit of its values, for the axis.
    pub unit: &'a str,
    /// Its lines.
    pub lines: &'a [Series],
    /// Forecasts drawn dashed in the colour of their line.
    pub forecasts: &'a [Forecast],
    /// `Some(top)` fixes the value axis at `0..top` (percentages); `None` fits the values.
    pub top: Option<f64>,
}

/// The chart as an SVG document; `None` when it has no points.
pub fn svg(chart: &Chart<'_>, window: Window, now: i64) -> Result<Option<String>, PlotError> {
    if chart.lines.iter().all(|s| s.points.is_empty()) {
        return Ok(None);
    }
    let failed = |e: &dyn std::fmt::Display| PlotError {
        title: chart.title.to_owned(),
        message: e.to_string(),
    };
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        draw(&root, chart, window, now).map_err(|e| failed(&e))?;
        root.present().map_err(|e| failed(&e))?;
    }
    Ok(Some(out))
}

fn draw(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    chart: &Chart<'_>,
    window: Window,
    now: i64,
) -> Result<(), Box<dyn std::error::Error>> {
    root.fill(&WHITE)?;
    // Forecasts reach past the window's end, by at most a quarter of it.
    let span = window.end - window.start;
    let end = chart
        .forecasts
        .iter()
        .map(|f| f.full_at)
        .max()
        .map_or(window.end, |full| {
            full.clamp(window.end, window.end + span / 4)
        });
    let top = chart.top.unwrap_or_else(|| {
        let max = chart
            .lines
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(0.0, f64::max);
        (max * 1.15).max(1.0)
    });
    let mut c = ChartBuilder::on(root)
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(48)
        .build_cartesian_2d(window.start..end, 0f64..top)?;
    let clock = |t: &i64| {
        let (sign, minutes) = if *t > now {
            ('+', (t - now) / 60_000)
        } else {
            ('-', (now - t) / 60_000)
        };
        match minutes {
            0 => "now".to_owned(),
            m if m < 120 => format!("{sign}{m}m"),
            m => format!("{sign}{}h", m / 60),
        }
    };
    c.configure_mesh()
        .x_labels(7)
        .y_labels(5)
        .x_label_formatter(&clock)
        .y_desc(chart.unit)
        .light_line_style(RGBColor(0xEE, 0xEE, 0xEE))
        .label_style(
            ("sans-serif", 14)
                .into_font()
                .color(&RGBColor(0x33, 0x33, 0x33)),
        )
        .draw()?;
    for (i, s) in chart.lines.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        c.draw_series(LineSeries::new(
            s.points.iter().copied(),
            colour.stroke_width(2),
        ))?
        .label(s.label.as_str())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2)));
        for f in chart.forecasts.iter().filter(|f| f.label == s.label) {
            let to = f.full_at.min(end);
            // Where the straight line to 100 % is at the chart's edge.
            let at_edge = if f.full_at > f.from.0 {
                f.from.1
                    + (100.0 - f.from.1) * (to - f.from.0) as f64 / (f.full_at - f.from.0) as f64
            } else {
                100.0
            };
            c.draw_series(DashedLineSeries::new(
                [f.from, (to, at_edge.min(top))],
                6,
                4,
                colour.stroke_width(2),
            ))?;
        }
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(0xCC, 0xCC, 0xCC))
        .label_font(("sans-serif", 14))
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_draws_its_lines_and_forecast_and_none_without_points() {
        let w = Window::new(0, 3_600_000);
        let lines = [Series {
            label: "/var/lib/kubelet".into(),
            points: vec![(0, 40.0), (1_800_000, 60.0), (3_600_000, 80.0)],
        }];
        let forecasts = [Forecast {
            label: "/var/lib/kubelet".into(),
            from: (3_600_000, 80.0),
            full_at: 3_600_000 + 3_600_000,
        }];
        let chart = Chart {
            title: "Disk used",
            unit: "% used",
            lines: &lines,
            forecasts: &forecasts,
            top: Some(100.0),
        };
        let svg = svg(&chart, w, 3_600_000).unwrap().unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100]);
        assert!(
            svg.contains("/var/lib/kubelet"),
            "the legend names the line"
        );
        assert!(
            svg.matches("<polyline").count() >= 2,
            "the line and its forecast"
        );
        assert!(
            svg.contains("-60m") && svg.contains("+"),
            "clock labels, the forecast ahead: {svg}"
        );
        let empty = Chart {
            lines: &[],
            ..chart
        };
        assert!(super::svg(&empty, w, 0).unwrap().is_none());
    }
}
