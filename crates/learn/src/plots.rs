//! The pictures of `triage eval`: precision-recall curves per language and a language x label
//! F1 heat map, as SVG (no font files needed).

use std::path::Path;

use crate::metrics::ThresholdPoint;
use anyhow::{anyhow, Result};
use plotters::prelude::*;

/// One curve per language (pooled over labels).
pub fn pr_curves(path: &Path, curves: &[(String, Vec<ThresholdPoint>)]) -> Result<()> {
    let root = SVGBackend::new(path, (900, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Precision-recall by language (all labels pooled)",
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(54)
        .build_cartesian_2d(0f64..1f64, 0f64..1.02f64)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("recall")
        .y_desc("precision")
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for (i, (lang, points)) in curves.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let mut pts: Vec<(f64, f64)> = vec![(0.0, points.first().map_or(1.0, |p| p.precision))];
        pts.extend(points.iter().map(|p| (p.recall, p.precision)));
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(|e| anyhow!("{e}"))?
            .label(lang.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// Cells coloured from red (F1 0) to green (F1 1), with the value written in each.
pub fn f1_heatmap(
    path: &Path,
    langs: &[String],
    labels: &[String],
    f1: &[Vec<Option<f64>>],
) -> Result<()> {
    let (cell_w, cell_h, left, top) = (96i32, 30i32, 70i32, 150i32);
    let width = (left + cell_w * labels.len() as i32 + 20) as u32;
    let height = (top + cell_h * langs.len() as i32 + 20) as u32;
    let root = SVGBackend::new(path, (width.max(400), height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let font = ("sans-serif", 14).into_font();
    root.draw(&Text::new(
        "F1 by language and label",
        (10, 10),
        ("sans-serif", 20).into_font(),
    ))
    .map_err(|e| anyhow!("{e}"))?;
    for (j, label) in labels.iter().enumerate() {
        let x = left + cell_w * j as i32 + cell_w / 2;
        let style = font
            .clone()
            .transform(FontTransform::Rotate270)
            .color(&BLACK);
        root.draw(&Text::new(label.clone(), (x - 6, top - 6), style))
            .map_err(|e| anyhow!("{e}"))?;
    }
    for (i, lang) in langs.iter().enumerate() {
        let y = top + cell_h * i as i32;
        root.draw(&Text::new(lang.clone(), (10, y + 8), font.clone()))
            .map_err(|e| anyhow!("{e}"))?;
        for (j, v) in f1[i].iter().enumerate() {
            let x = left + cell_w * j as i32;
            let fill = match v {
                Some(v) => RGBColor((255.0 * (1.0 - v)) as u8, (200.0 * v + 40.0) as u8, 60),
                None => RGBColor(220, 220, 220),
            };
            root.draw(&Rectangle::new(
                [(x, y), (x + cell_w - 2, y + cell_h - 2)],
                fill.filled(),
            ))
            .map_err(|e| anyhow!("{e}"))?;
            let text = v.map_or("-".to_string(), |v| format!("{v:.2}"));
            root.draw(&Text::new(
                text,
                (x + cell_w / 2 - 14, y + 8),
                font.clone().color(&WHITE),
            ))
            .map_err(|e| anyhow!("{e}"))?;
        }
    }
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
