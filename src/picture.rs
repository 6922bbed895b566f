//! Pictures of tensors: grids of enlarged maps (kernels, activations, matrices) under a title,
//! laid out in panels and encoded as PNG. Used by `cnn-gpu filters`, `featuremaps` and
//! `convolve`; `cnn-gpu plot` shares the font.
//!
//! Text is drawn with plotters through ab_glyph from the DejaVu Sans file compiled into the
//! binary (assets/fonts), so no system font lookup is needed.

use std::io::Cursor;
use std::sync::Once;

use image::{Rgb, RgbImage};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::{Error, Result};

/// DejaVu Sans (Bitstream Vera licence, see assets/fonts/DejaVuSans-LICENSE.txt).
static FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

/// The font family every picture and plot uses.
pub const FONT_FAMILY: &str = "sans-serif";

/// Registers the compiled-in font as [`FONT_FAMILY`] (once per process).
pub fn ensure_font() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        if register_font(FONT_FAMILY, FontStyle::Normal, FONT).is_err() {
            log::error!("the compiled-in DejaVu Sans font could not be parsed");
        }
    });
}

/// The page behind the panels.
pub const BACKGROUND: Rgb<u8> = Rgb([235, 235, 235]);
/// Pixels between a panel and the picture's edge, and between panels.
pub const MARGIN: u32 = 8;
/// Pixels between the cells of a grid.
pub const GAP: u32 = 3;
/// Height of a panel's title line.
pub const TITLE_H: u32 = 22;
const TITLE_PX: u32 = 15;

/// How values become colours.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Colours {
    /// Linear grey: `lo` black … `hi` white (clamped; all mid-grey when lo == hi).
    Grey { lo: f32, hi: f32 },
    /// Blue (−max) … white (0) … red (+max), clamped: a diverging map for signed values.
    Diverging { max: f32 },
}

impl Colours {
    pub fn colour(&self, v: f32) -> Rgb<u8> {
        match *self {
            Colours::Grey { lo, hi } => {
                let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
                let g = (t.clamp(0.0, 1.0) * 255.0).round() as u8;
                Rgb([g, g, g])
            }
            Colours::Diverging { max } => {
                let t = if max > 0.0 {
                    (v / max).clamp(-1.0, 1.0)
                } else {
                    0.0
                };
                // Fade the other two channels towards the saturated end.
                let fade = (255.0 * (1.0 - t.abs())).round() as u8;
                if t >= 0.0 {
                    Rgb([255, fade, fade])
                } else {
                    Rgb([fade, fade, 255])
                }
            }
        }
    }
}

/// `count` maps of `h`×`w` values (row-major, one after another) drawn as a grid of `cols`
/// columns, each value a `scale`×`scale` square, under `title`.
#[derive(Clone, Debug)]
pub struct Panel<'a> {
    pub title: String,
    pub maps: &'a [f32],
    pub count: usize,
    pub h: usize,
    pub w: usize,
    pub cols: usize,
    pub scale: u32,
    pub colours: Colours,
}

impl Panel<'_> {
    fn grid_cols(&self) -> u32 {
        self.cols.clamp(1, self.count.max(1)) as u32
    }
    fn grid_rows(&self) -> u32 {
        self.count.div_ceil(self.grid_cols() as usize) as u32
    }
    fn cell(&self) -> (u32, u32) {
        (self.w as u32 * self.scale, self.h as u32 * self.scale)
    }
    /// Pixel size (width, height) including the title line: as wide as the grid or the title,
    /// whichever is wider.
    pub fn size(&self) -> (u32, u32) {
        let (cw, ch) = self.cell();
        let (c, r) = (self.grid_cols(), self.grid_rows());
        (
            (c * cw + (c - 1) * GAP).max(title_width(&self.title)),
            TITLE_H + r * ch + r.saturating_sub(1) * GAP,
        )
    }
    /// The top-left pixel of map `i`'s cell, relative to the panel's top-left corner.
    pub fn cell_origin(&self, i: usize) -> (u32, u32) {
        let (cw, ch) = self.cell();
        let c = self.grid_cols() as usize;
        let (col, row) = ((i % c) as u32, (i / c) as u32);
        (col * (cw + GAP), TITLE_H + row * (ch + GAP))
    }
    fn draw(&self, img: &mut RgbImage, x0: u32, y0: u32) {
        let plane = self.h * self.w;
        for i in 0..self.count {
            let (ox, oy) = self.cell_origin(i);
            let map = &self.maps[i * plane..(i + 1) * plane];
            for (j, &v) in map.iter().enumerate() {
                let colour = self.colours.colour(v);
                let (px, py) = ((j % self.w) as u32, (j / self.w) as u32);
                for dy in 0..self.scale {
                    for dx in 0..self.scale {
                        img.put_pixel(
                            x0 + ox + px * self.scale + dx,
                            y0 + oy + py * self.scale + dy,
                            colour,
                        );
                    }
                }
            }
        }
    }
}

/// How panels are placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrange {
    /// One under the other.
    Column,
    /// Side by side.
    Row,
}

/// The panels on one picture, each at its top-left corner (returned with the picture, for
/// callers and tests that look at single cells).
pub fn compose(panels: &[Panel], arrange: Arrange) -> (RgbImage, Vec<(u32, u32)>) {
    let mut origins = Vec::new();
    let (mut w, mut h) = (MARGIN, MARGIN);
    for p in panels {
        let (pw, ph) = p.size();
        match arrange {
            Arrange::Column => {
                origins.push((MARGIN, h));
                h += ph + MARGIN;
                w = w.max(MARGIN + pw + MARGIN);
            }
            Arrange::Row => {
                origins.push((w, MARGIN));
                w += pw + MARGIN;
                h = h.max(MARGIN + ph + MARGIN);
            }
        }
    }
    let mut img = RgbImage::from_pixel(w, h, BACKGROUND);
    for (p, &(x, y)) in panels.iter().zip(&origins) {
        p.draw(&mut img, x, y);
    }
    let titles: Vec<(&str, (i32, i32))> = panels
        .iter()
        .zip(&origins)
        .map(|(p, &(x, y))| (p.title.as_str(), (x as i32, y as i32 + 2)))
        .collect();
    draw_texts(&mut img, &titles);
    (img, origins)
}

/// The width in pixels of a title line (0 if the font cannot measure it).
pub fn title_width(text: &str) -> u32 {
    ensure_font();
    (FONT_FAMILY, TITLE_PX)
        .into_font()
        .box_size(text)
        .map_or(0, |(w, _)| w + 4)
}

/// Draws each text with its top-left corner at its point, in black.
pub fn draw_texts(img: &mut RgbImage, texts: &[(&str, (i32, i32))]) {
    ensure_font();
    let (w, h) = img.dimensions();
    let root = BitMapBackend::with_buffer(img.as_mut(), (w, h)).into_drawing_area();
    let style = TextStyle::from((FONT_FAMILY, TITLE_PX).into_font()).color(&BLACK);
    for &(text, at) in texts {
        // A text that cannot be drawn (no glyphs) leaves the picture without it.
        if let Err(e) = root.draw(&Text::new(text, at, &style)) {
            log::warn!("cannot draw {text:?}: {e}");
        }
    }
    let _ = root.present();
}

/// The picture as PNG bytes.
pub fn encode_png(img: &RgbImage) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    img.write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .map_err(|e| Error::InvalidParams(format!("cannot encode the picture as PNG: {e}")))?;
    Ok(bytes)
}

/// The largest magnitude of `v` (0 for an empty slice).
pub fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

/// A scale that makes a map of `h`×`w` about `target` pixels on its longer side (at least 1).
pub fn scale_for(h: usize, w: usize, target: u32) -> u32 {
    (target / h.max(w).max(1) as u32).max(1)
}

/// A grid of convolution kernels `[out, in, kh, kw]` (one cell per kernel and input channel),
/// in the diverging map with one scale for all of them (±the largest |weight|), 8 to a row.
pub fn kernels_picture(name: &str, weights: &[f32], shape: [usize; 4], scale: u32) -> RgbImage {
    let [out, inp, kh, kw] = shape;
    let max = max_abs(weights);
    let panel = Panel {
        title: format!(
            "{name}: {out}×{inp} kernels {kh}×{kw}; blue −{max:.3}, white 0, red +{max:.3}"
        ),
        maps: weights,
        count: out * inp,
        h: kh,
        w: kw,
        cols: 8,
        scale,
        colours: Colours::Diverging { max },
    };
    compose(&[panel], Arrange::Column).0
}

/// One layer's activations for one image, `[c, h, w]`, for [`feature_maps_picture`].
#[derive(Clone, Debug)]
pub struct Activations {
    pub title: String,
    pub data: Vec<f32>,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

/// The input image, then each layer's maps in grey from 0 (black) to the layer's largest
/// activation (white), one panel under the other, each grid about 480 pixels wide.
pub fn feature_maps_picture(input: &Activations, layers: &[Activations]) -> RgbImage {
    fn panel(a: &Activations, cols: usize) -> Panel<'_> {
        let scale = (480 / (cols * a.w) as u32).max(1);
        let hi = a.data.iter().fold(0.0f32, |m, &v| m.max(v));
        Panel {
            title: a.title.clone(),
            maps: &a.data,
            count: a.c,
            h: a.h,
            w: a.w,
            cols,
            scale,
            colours: Colours::Grey { lo: 0.0, hi },
        }
    }
    let mut panels = vec![Panel {
        scale: 4,
        ..panel(input, 1)
    }];
    panels.extend(
        layers
            .iter()
            .map(|a| panel(a, if a.c > 32 { 16 } else { 8 })),
    );
    compose(&panels, Arrange::Column).0
}

/// Matrices side by side, each in grey from its own minimum (black) to its maximum (white),
/// enlarged to about 240 pixels on the longer side: `convolve`'s input and output.
pub fn matrices_picture(matrices: &[(String, &crate::matrix::Matrix)]) -> RgbImage {
    let panels: Vec<Panel> = matrices
        .iter()
        .map(|(title, m)| {
            let (lo, hi) = m.range();
            Panel {
                title: title.clone(),
                maps: &m.data,
                count: 1,
                h: m.rows,
                w: m.cols,
                cols: 1,
                scale: scale_for(m.rows, m.cols, 240),
                colours: Colours::Grey { lo, hi },
            }
        })
        .collect();
    compose(&panels, Arrange::Row).0
}

/// The training loss's colour in [`curves_picture`].
pub const LOSS_COLOUR: RGBColor = RGBColor(31, 119, 180);
/// The test accuracy's colour in [`curves_picture`].
pub const ACCURACY_COLOUR: RGBColor = RGBColor(214, 39, 40);

/// Training curves drawn by [`curves_picture`], with where each data point landed.
pub struct Curves {
    pub image: RgbImage,
    /// The pixel of each (step, loss) point, in the order of the records.
    pub loss_points: Vec<(i32, i32)>,
    /// The pixel of each (epoch, test accuracy) point.
    pub accuracy_points: Vec<(i32, i32)>,
}

/// Two charts side by side on a `width`×`height` picture: the training loss against the step
/// (each log interval's mean; the epochs' means when the file has no log lines) and the test
/// accuracy against the epoch.
pub fn curves_picture(
    records: &[crate::metrics::Record],
    width: u32,
    height: u32,
) -> Result<Curves> {
    use crate::metrics::Record;
    let logs: Vec<(f64, f64)> = records
        .iter()
        .filter_map(|r| match r {
            Record::Log { step, loss, .. } => Some((*step as f64, *loss)),
            _ => None,
        })
        .collect();
    let losses = if logs.is_empty() {
        records
            .iter()
            .filter_map(|r| match r {
                Record::Epoch { step, loss, .. } => Some((*step as f64, *loss)),
                _ => None,
            })
            .collect()
    } else {
        logs
    };
    let accuracy: Vec<(f64, f64)> = records
        .iter()
        .filter_map(|r| match r {
            Record::Epoch {
                epoch,
                test_accuracy,
                ..
            } => Some((*epoch as f64, *test_accuracy)),
            _ => None,
        })
        .collect();

    ensure_font();
    let mut image = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    let fail = |e: &dyn std::fmt::Display| Error::InvalidParams(format!("cannot draw: {e}"));
    let (loss_points, accuracy_points) = {
        let root = BitMapBackend::with_buffer(image.as_mut(), (width, height)).into_drawing_area();
        let (left, right) = root.split_horizontally(width / 2);
        let font = |size: u32| (FONT_FAMILY, size).into_font();

        let max_step = losses.iter().fold(1.0f64, |m, p| m.max(p.0));
        let max_loss = losses.iter().fold(0.0f64, |m, p| m.max(p.1)).max(1e-3) * 1.05;
        let mut chart = ChartBuilder::on(&left)
            .caption("training loss", font(18))
            .margin(10)
            .x_label_area_size(34)
            .y_label_area_size(48)
            .build_cartesian_2d(0.0..max_step, 0.0..max_loss)
            .map_err(|e| fail(&e))?;
        chart
            .configure_mesh()
            .x_desc("step")
            .label_style(font(12))
            .axis_desc_style(font(13))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()
            .map_err(|e| fail(&e))?;
        chart
            .draw_series(LineSeries::new(
                losses.iter().copied(),
                LOSS_COLOUR.stroke_width(2),
            ))
            .map_err(|e| fail(&e))?;
        let loss_points: Vec<(i32, i32)> = losses.iter().map(|p| chart.backend_coord(p)).collect();

        let (x0, x1) = match (accuracy.first(), accuracy.last()) {
            (Some(f), Some(l)) if l.0 > f.0 => (f.0, l.0),
            (Some(f), _) => (f.0 - 0.5, f.0 + 0.5),
            _ => (0.5, 1.5),
        };
        let min_acc = accuracy.iter().fold(100.0f64, |m, p| m.min(p.1));
        let y0 = (min_acc - 1.0).floor().clamp(0.0, 99.0);
        let mut chart = ChartBuilder::on(&right)
            .caption("test accuracy (%)", font(18))
            .margin(10)
            .x_label_area_size(34)
            .y_label_area_size(48)
            .build_cartesian_2d(x0..x1, y0..100.0)
            .map_err(|e| fail(&e))?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .label_style(font(12))
            .axis_desc_style(font(13))
            .x_labels(((x1 - x0) as usize + 1).min(10))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()
            .map_err(|e| fail(&e))?;
        if accuracy.is_empty() {
            chart
                .draw_series(std::iter::once(Text::new(
                    "no epoch finished",
                    (x0 + 0.05 * (x1 - x0), 50.0),
                    font(14),
                )))
                .map_err(|e| fail(&e))?;
        }
        chart
            .draw_series(LineSeries::new(
                accuracy.iter().copied(),
                ACCURACY_COLOUR.stroke_width(2),
            ))
            .map_err(|e| fail(&e))?;
        chart
            .draw_series(
                accuracy
                    .iter()
                    .map(|&p| Circle::new(p, 4, ACCURACY_COLOUR.filled())),
            )
            .map_err(|e| fail(&e))?;
        let accuracy_points = accuracy.iter().map(|p| chart.backend_coord(p)).collect();
        root.present().map_err(|e| fail(&e))?;
        (loss_points, accuracy_points)
    };
    Ok(Curves {
        image,
        loss_points,
        accuracy_points,
    })
}
