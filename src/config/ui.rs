//! `[ui]`: settings of the browser UIs that the server keeps for them, so
//! that every open UI and the next page load show the same thing. The DSP
//! never reads them; they are echoed in `meta` (`ui_*`) under the Python
//! server's names and changed with its messages (`set_peak_decay`,
//! `set_show_onsets`, `set_ui_layout`, `set_fft_view`, `set_fft3d_style`,
//! `set_palette`).

use serde::{Deserialize, Serialize};

/// A card of the Python server's UI, placed in one quadrant of its layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum Card {
    Bars,
    Lines,
    Scene,
    Fft,
}

impl Card {
    /// Every card, in the default layout's order.
    pub const ALL: [Card; 4] = [Card::Bars, Card::Lines, Card::Scene, Card::Fft];
    /// Wire names, in [`Card::ALL`] order.
    pub const NAMES: [&'static str; 4] = ["bars", "lines", "scene", "fft"];
}

/// How the FFT card draws the spectrum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum FftView {
    #[serde(rename = "2d")]
    TwoD,
    #[serde(rename = "3d")]
    ThreeD,
}

impl FftView {
    /// Every view, with its wire name.
    pub const ALL: [(FftView, &'static str); 2] = [(FftView::TwoD, "2d"), (FftView::ThreeD, "3d")];
}

/// The look of the 3D spectrum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum Style3d {
    Cloud,
    Aurora,
    Topo,
    Synthwave,
    Engraving,
    Embers,
}

impl Style3d {
    /// Every style, with its wire name.
    pub const ALL: [(Style3d, &'static str); 6] = [
        (Style3d::Cloud, "cloud"),
        (Style3d::Aurora, "aurora"),
        (Style3d::Topo, "topo"),
        (Style3d::Synthwave, "synthwave"),
        (Style3d::Engraving, "engraving"),
        (Style3d::Embers, "embers"),
    ];
}

/// The UI's colour palette.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum Palette {
    Classic,
    Neon,
    Ember,
    Ocean,
    Sunset,
    Mono,
    Okabe,
}

impl Palette {
    /// Every palette, with its wire name.
    pub const ALL: [(Palette, &'static str); 7] = [
        (Palette::Classic, "classic"),
        (Palette::Neon, "neon"),
        (Palette::Ember, "ember"),
        (Palette::Ocean, "ocean"),
        (Palette::Sunset, "sunset"),
        (Palette::Mono, "mono"),
        (Palette::Okabe, "okabe"),
    ];
}

/// The wire name of `v` in a `(value, name)` table.
pub fn name_of<T: PartialEq + Copy>(table: &[(T, &'static str)], v: T) -> &'static str {
    table
        .iter()
        .find(|(t, _)| *t == v)
        .map(|(_, n)| *n)
        .unwrap_or("")
}

/// The value named `name` in a `(value, name)` table.
pub fn by_name<T: Copy>(table: &[(T, &'static str)], name: &str) -> Option<T> {
    table.iter().find(|(_, n)| *n == name).map(|(t, _)| *t)
}

/// `[ui.layout]`: the 2 × 2 tiling of the Python UI's cards.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct UiLayout {
    /// Vertical split, as a fraction of the width.
    pub split_x: f64,
    /// Horizontal split, as a fraction of the height.
    pub split_y: f64,
    /// Cards in the quadrants: top left, top right, bottom left, bottom
    /// right (each card once).
    pub quadrants: [Card; 4],
}

impl Default for UiLayout {
    fn default() -> Self {
        UiLayout {
            split_x: 0.5,
            split_y: 0.5,
            quadrants: Card::ALL,
        }
    }
}

/// `[ui]`
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct UiConfig {
    /// How fast the UI's peak-hold markers fall, in full scales per second.
    pub peak_decay_per_s: f64,
    /// Whether the UI draws onset markers.
    pub show_onsets: bool,
    /// 2D spectrum or 3D history.
    pub fft_view: FftView,
    /// Look of the 3D view.
    pub fft3d_style: Style3d,
    /// Colour palette.
    pub palette: Palette,
    /// Card layout.
    pub layout: UiLayout,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            peak_decay_per_s: 0.5,
            show_onsets: false,
            fft_view: FftView::TwoD,
            fft3d_style: Style3d::Cloud,
            palette: Palette::Classic,
            layout: UiLayout::default(),
        }
    }
}
