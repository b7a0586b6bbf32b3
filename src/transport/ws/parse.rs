//! Reading inbound messages the way the Python feature server reads them,
//! so its clients (and its own bundled UI) work unchanged:
//!
//! - unknown extra fields are ignored (a client's request id, say);
//! - booleans are coerced as Python's `bool(x)` does (`0`, `""`, `[]`,
//!   `{}` and `null` are false, everything else true), with the same
//!   defaults when the field is missing;
//! - numbers must be JSON numbers (a string or a boolean is an error, as
//!   there); integers where it wants integers;
//! - ranges are not checked here: control clamps out-of-range values and
//!   says so in its reply ([`crate::control::clamp`]).
//!
//! Every error is a reason to send back; nothing here panics on any input.

use super::protocol::Action;
use crate::config::{Card, UiLayout};
use crate::control::Command;
use serde_json::{Map, Value};

type Obj = Map<String, Value>;

/// Python's truthiness of a JSON value.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// `bool(msg.get(key, default))`.
fn flag(o: &Obj, key: &str, default: bool) -> bool {
    o.get(key).map(truthy).unwrap_or(default)
}

/// A flag that is `None` when absent (phase4's partial updates).
fn opt_flag(o: &Obj, key: &str) -> Option<bool> {
    o.get(key).filter(|v| !v.is_null()).map(truthy)
}

fn as_num(key: &str, v: &Value) -> Result<f64, String> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .filter(|x| x.is_finite())
            .ok_or_else(|| format!("{key} must be finite")),
        _ => Err(format!("{key} must be numeric")),
    }
}

/// An optional number: absent or null is `None`.
fn num(o: &Obj, key: &str) -> Result<Option<f64>, String> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => as_num(key, v).map(Some),
    }
}

/// A number that must be there.
fn req_num(o: &Obj, key: &str) -> Result<f64, String> {
    num(o, key)?.ok_or_else(|| format!("{key} must be numeric"))
}

/// An integer that must be there (a JSON integer, not 4.0 or "4"). `-0`
/// is 0, as Python's `json` reads it (serde_json keeps its sign as a
/// float, so `-0.0`, which it cannot tell from `-0`, is 0 too).
fn int(o: &Obj, key: &str) -> Result<i64, String> {
    match o.get(key) {
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_u64().map(|_| i64::MAX))
            .or_else(|| {
                n.as_f64()
                    .filter(|f| *f == 0.0 && f.is_sign_negative())
                    .map(|_| 0)
            })
            .ok_or_else(|| format!("{key} must be an int")),
        _ => Err(format!("{key} must be an int")),
    }
}

fn string(o: &Obj, key: &str) -> Result<String, String> {
    match o.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(format!("{key} must be a string")),
    }
}

fn band(o: &Obj) -> Result<usize, String> {
    match o.get("band").and_then(Value::as_str) {
        Some("low") => Ok(0),
        Some("mid") => Ok(1),
        Some("high") => Ok(2),
        _ => Err("band must be 'low', 'mid', or 'high'".into()),
    }
}

/// `msg.get(key) or {}` as an object of per-band numbers.
fn per_band(o: &Obj, key: &str) -> Result<[Option<f64>; 3], String> {
    let mut out = [None; 3];
    let Some(v) = o.get(key).filter(|v| truthy(v)) else {
        return Ok(out);
    };
    let Value::Object(m) = v else {
        return Err(format!("{key} must be an object, e.g. {{\"low\": 0.1}}"));
    };
    for (k, v) in m {
        let i = match k.as_str() {
            "low" => 0,
            "mid" => 1,
            "high" => 2,
            _ => return Err(format!("{key}: unknown band {k:?}")),
        };
        out[i] = Some(as_num(&format!("{key}[{k}]"), v)?);
    }
    Ok(out)
}

fn layout(o: &Obj) -> Result<UiLayout, String> {
    let l = match o.get("layout").filter(|v| truthy(v)) {
        Some(Value::Object(l)) => l,
        Some(_) => return Err("layout must be an object".into()),
        None => &Map::new(),
    };
    let split_x = req_num(l, "split_x")?;
    let split_y = req_num(l, "split_y")?;
    let bad = || format!("quadrants must be a permutation of {:?}", Card::NAMES);
    let Some(Value::Array(q)) = l.get("quadrants") else {
        return Err("quadrants must be a 4-item list (TL, TR, BL, BR)".into());
    };
    if q.len() != 4 {
        return Err("quadrants must be a 4-item list (TL, TR, BL, BR)".into());
    }
    let mut quadrants = Card::ALL;
    for (slot, v) in quadrants.iter_mut().zip(q) {
        let name = v.as_str().ok_or_else(bad)?;
        let i = Card::NAMES
            .iter()
            .position(|n| *n == name)
            .ok_or_else(bad)?;
        *slot = Card::ALL[i];
    }
    if !Card::ALL.iter().all(|c| quadrants.contains(c)) {
        return Err(bad());
    }
    Ok(UiLayout {
        split_x,
        split_y,
        quadrants,
    })
}

/// Parse one inbound text message; the error is the reason to send back.
pub fn parse(text: &str) -> Result<Action, String> {
    let o = object(text)?;
    let type_ = message_type(&o)?;
    if type_ == "auth" {
        return Ok(Action::Auth(string(&o, "token")?));
    }
    command(type_, &o).map(Action::Command)
}

/// The message as a JSON object.
fn object(text: &str) -> Result<Obj, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(o) = v else {
        return Err("missing 'type': a message is a JSON object with a \"type\"".into());
    };
    Ok(o)
}

/// Its `"type"`, which must be a string.
fn message_type(o: &Obj) -> Result<&str, String> {
    match o.get("type") {
        Some(Value::String(t)) => Ok(t.as_str()),
        Some(_) => Err("\"type\" must be a string".into()),
        None => Err("missing 'type'".into()),
    }
}

/// Reads the commands of one family: `Ok(None)` when `type_` is not one of
/// them.
type Family = fn(&str, &Obj, bool) -> Result<Option<Command>, String>;

/// Every command family. Each type belongs to exactly one of them (a test
/// checks it), so the order here decides nothing.
const FAMILIES: [Family; 5] = [
    analysis_command,
    spectrum_command,
    ui_command,
    device_command,
    preset_command,
];

/// The control command a message of type `type_` asks for.
fn command(type_: &str, o: &Obj) -> Result<Command, String> {
    let commit = flag(o, "commit", true);
    for family in FAMILIES {
        if let Some(cmd) = family(type_, o, commit)? {
            return Ok(cmd);
        }
    }
    let shown = super::protocol::truncate(type_, 64);
    Err(format!("unknown type {shown:?}"))
}

/// Band edges, smoothing, autoscale, filter order, onsets and tempo.
fn analysis_command(type_: &str, o: &Obj, commit: bool) -> Result<Option<Command>, String> {
    Ok(Some(match type_ {
        "set_band" => Command::SetBand {
            band: band(o)?,
            lo_hz: req_num(o, "lo_hz")?,
            hi_hz: req_num(o, "hi_hz")?,
            commit,
        },
        "set_smoothing" => Command::SetSmoothing {
            tau: per_band(o, "tau")?,
            tau_attack: per_band(o, "tau_attack")?,
            commit,
        },
        "set_autoscale" => Command::SetAutoscale {
            tau_attack_s: num(o, "tau_attack_s")?,
            tau_release_s: num(o, "tau_release_s")?,
            noise_floor: num(o, "noise_floor")?,
            strength: num(o, "strength")?,
            master_gain: num(o, "master_gain")?,
            commit,
        },
        "set_filter_order" => Command::SetFilterOrder {
            order: int(o, "order").map_err(|_| "filter_order must be an int".to_string())?,
            commit,
        },
        "set_onset" if o.get("band").is_some_and(|b| !b.is_null()) => Command::SetBandOnset {
            band: band(o)?,
            sensitivity: num(o, "sensitivity")?,
            refractory_s: num(o, "refractory_s")?,
            slow_tau_s: num(o, "slow_tau_s")?,
            abs_floor: num(o, "abs_floor")?,
            commit,
        },
        // phase4: the broadband detector (no band).
        "set_onset" => Command::SetOnset {
            enabled: opt_flag(o, "enabled"),
            sensitivity: num(o, "sensitivity")?,
            min_gap_s: num(o, "min_gap_s")?,
            commit,
        },
        "set_tempo" => Command::SetTempo {
            enabled: opt_flag(o, "enabled"),
            min_bpm: num(o, "min_bpm")?,
            max_bpm: num(o, "max_bpm")?,
            lock_confidence: num(o, "lock_confidence")?,
            commit,
        },
        _ => return Ok(None),
    }))
}

/// The spectrum: on or off, what is sent, its shaping and bin count.
fn spectrum_command(type_: &str, o: &Obj, commit: bool) -> Result<Option<Command>, String> {
    Ok(Some(match type_ {
        "set_fft" => Command::SetFft {
            enabled: flag(o, "enabled", false),
        },
        "set_fft_send_raw_db" => Command::SetFftSendRawDb {
            send_raw_db: flag(o, "send_raw_db", false),
        },
        "set_fft_peak_smear" => Command::SetFftPeakSmear {
            peak_smear_oct: req_num(o, "peak_smear_oct")?,
            commit,
        },
        "set_fft_tilt" => Command::SetFftTilt {
            tilt_db_per_oct: req_num(o, "tilt_db_per_oct")?,
            commit,
        },
        "set_n_fft_bins" => Command::SetNFftBins {
            n: int(o, "n").map_err(|_| "n_fft_bins must be an int".to_string())?,
        },
        _ => return Ok(None),
    }))
}

/// The UI's settings and the rate of its snapshot feed.
fn ui_command(type_: &str, o: &Obj, commit: bool) -> Result<Option<Command>, String> {
    Ok(Some(match type_ {
        "set_peak_decay" => ui(commit, |c| {
            if let Command::SetUi {
                peak_decay_per_s, ..
            } = c
            {
                *peak_decay_per_s = Some(req_num(o, "peak_decay_per_s")?);
            }
            Ok(())
        })?,
        "set_show_onsets" => ui(true, |c| {
            if let Command::SetUi { show_onsets, .. } = c {
                *show_onsets = Some(flag(o, "show_onsets", false));
            }
            Ok(())
        })?,
        "set_ui_layout" => ui(commit, |c| {
            if let Command::SetUi { layout: l, .. } = c {
                *l = Some(layout(o)?);
            }
            Ok(())
        })?,
        "set_ws_snapshot_hz" => Command::SetWsSnapshotHz {
            hz: req_num(o, "hz")?,
            commit,
        },
        _ => return Ok(None),
    }))
}

/// Listing the capture devices and choosing one.
fn device_command(type_: &str, o: &Obj, _commit: bool) -> Result<Option<Command>, String> {
    Ok(Some(match type_ {
        "list_devices" => Command::ListDevices {
            probe: flag(o, "probe", false),
        },
        "set_device" => {
            let name = match o.get("name") {
                None | Some(Value::Null) => None,
                Some(_) => Some(string(o, "name")?),
            };
            let index = match (o.get("index"), &name) {
                (None | Some(Value::Null), Some(_)) => None,
                _ => Some(int(o, "index").map_err(|_| "device index must be an int")?),
            };
            Command::SetDevice { index, name }
        }
        _ => return Ok(None),
    }))
}

/// Listing, saving, loading and deleting presets.
fn preset_command(type_: &str, o: &Obj, _commit: bool) -> Result<Option<Command>, String> {
    Ok(Some(match type_ {
        "list_presets" => Command::ListPresets,
        "save_preset" => Command::SavePreset {
            name: preset_name(o)?,
        },
        "load_preset" => Command::LoadPreset {
            name: preset_name(o)?,
        },
        "delete_preset" => Command::DeletePreset {
            name: preset_name(o)?,
        },
        _ => return Ok(None),
    }))
}

/// Preset names are stripped of surrounding spaces, as there.
fn preset_name(o: &Obj) -> Result<String, String> {
    match o.get("name") {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.trim().to_string()),
        Some(_) => Err("preset name must be a string".into()),
    }
}

/// A `SetUi` changing only what `fill` sets.
fn ui(
    commit: bool,
    fill: impl FnOnce(&mut Command) -> Result<(), String>,
) -> Result<Command, String> {
    let mut c = Command::SetUi {
        peak_decay_per_s: None,
        show_onsets: None,
        layout: None,
        fft_view: None,
        fft3d_style: None,
        palette: None,
        commit,
    };
    fill(&mut c)?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(m: &str) -> Command {
        match parse(m) {
            Ok(Action::Command(c)) => c,
            Ok(Action::Auth(_)) => panic!("{m}: auth"),
            Err(e) => panic!("{m}: {e}"),
        }
    }

    #[test]
    fn minus_zero_is_the_integer_zero_and_fractions_are_still_refused() {
        assert!(matches!(
            cmd(r#"{"type":"set_filter_order","order":-0,"commit":true}"#),
            Command::SetFilterOrder { order: 0, .. }
        ));
        for bad in ["0.0", "4.0", "0.5", "-0.5", "1e3"] {
            let m = format!(r#"{{"type":"set_filter_order","order":{bad},"commit":true}}"#);
            assert!(parse(&m).is_err(), "{m}");
        }
    }

    #[test]
    fn the_python_uis_messages_parse() {
        for m in [
            r#"{"type":"set_fft","enabled":true}"#,
            r#"{"type":"set_band","band":"mid","lo_hz":200,"hi_hz":4000,"commit":true}"#,
            r#"{"type":"set_smoothing","tau":{"low":0.2,"mid":0.1,"high":0.05},"commit":false}"#,
            r#"{"type":"set_smoothing","tau_attack":{"low":0.01},"commit":true}"#,
            r#"{"type":"set_autoscale","master_gain":1.2,"commit":false}"#,
            r#"{"type":"set_fft_tilt","tilt_db_per_oct":3.0,"commit":true}"#,
            r#"{"type":"set_filter_order","order":4,"commit":true}"#,
            r#"{"type":"set_onset","band":"mid","refractory_s":0.2,"commit":true}"#,
            r#"{"type":"set_peak_decay","peak_decay_per_s":0.6,"commit":true}"#,
            r#"{"type":"set_show_onsets","show_onsets":true}"#,
            r#"{"type":"set_ui_layout","layout":{"split_x":0.4,"split_y":0.6,"quadrants":["fft","bars","lines","scene"]},"commit":true}"#,
            r#"{"type":"list_devices","probe":false}"#,
            r#"{"type":"set_device","index":2}"#,
            r#"{"type":"list_presets"}"#,
        ] {
            cmd(m);
        }
    }

    #[test]
    fn extra_fields_are_ignored_and_booleans_coerced() {
        assert_eq!(
            cmd(r#"{"type":"set_fft","enabled":1,"id":"req-7"}"#),
            Command::SetFft { enabled: true }
        );
        assert_eq!(
            cmd(r#"{"type":"set_fft","enabled":""}"#),
            Command::SetFft { enabled: false }
        );
        assert_eq!(
            cmd(r#"{"type":"set_fft_send_raw_db"}"#),
            Command::SetFftSendRawDb { send_raw_db: false }
        );
        match cmd(r#"{"type":"set_ws_snapshot_hz","hz":30,"commit":0}"#) {
            Command::SetWsSnapshotHz { commit, .. } => assert!(!commit),
            c => panic!("{c:?}"),
        }
    }

    #[test]
    fn wrong_types_are_refused_with_a_reason() {
        for m in [
            "not json",
            "[]",
            r#"{"enabled":true}"#,
            r#"{"type":"nope"}"#,
            r#"{"type":7}"#,
            r#"{"type":"set_band","band":"bass","lo_hz":20,"hi_hz":200}"#,
            r#"{"type":"set_band","band":"low","lo_hz":"20","hi_hz":200}"#,
            r#"{"type":"set_ws_snapshot_hz","hz":true}"#,
            r#"{"type":"set_ws_snapshot_hz","hz":1e999}"#,
            r#"{"type":"set_smoothing","tau":{"sub":0.1}}"#,
            r#"{"type":"set_smoothing","tau":[0.1]}"#,
            r#"{"type":"set_smoothing","tau":{"low":[0.1]}}"#,
            r#"{"type":"set_filter_order","order":4.5}"#,
            r#"{"type":"set_onset","band":"sub","sensitivity":2}"#,
            r#"{"type":"set_ui_layout","layout":{"split_x":0.5,"split_y":0.5,"quadrants":["bars","bars","scene","fft"]}}"#,
            r#"{"type":"set_device","index":"2"}"#,
            r#"{"type":"save_preset","name":7}"#,
        ] {
            assert!(parse(m).is_err(), "{m} accepted");
        }
    }

    #[test]
    fn every_command_type_belongs_to_exactly_one_family() {
        let empty = Obj::new();
        let claims = |t: &str| {
            FAMILIES
                .iter()
                .filter(|f| !matches!(f(t, &empty, true), Ok(None)))
                .count()
        };
        for t in [
            "set_fft",
            "set_band",
            "set_smoothing",
            "set_autoscale",
            "set_fft_send_raw_db",
            "set_fft_peak_smear",
            "set_fft_tilt",
            "set_filter_order",
            "set_onset",
            "set_peak_decay",
            "set_show_onsets",
            "set_ui_layout",
            "list_devices",
            "set_device",
            "set_n_fft_bins",
            "set_ws_snapshot_hz",
            "list_presets",
            "save_preset",
            "load_preset",
            "delete_preset",
            "set_tempo",
        ] {
            assert_eq!(claims(t), 1, "{t}");
        }
        for t in ["auth", "nope", ""] {
            assert_eq!(claims(t), 0, "{t}");
        }
    }

    #[test]
    fn a_message_without_a_usable_type_says_which_part_is_wrong() {
        let reason = |m: &str| match parse(m) {
            Err(e) => e,
            Ok(_) => panic!("{m} accepted"),
        };
        assert!(reason("{").starts_with("invalid JSON: "));
        assert_eq!(
            reason("[]"),
            "missing 'type': a message is a JSON object with a \"type\""
        );
        assert_eq!(reason(r#"{"enabled":true}"#), "missing 'type'");
        assert_eq!(reason(r#"{"type":7}"#), "\"type\" must be a string");
        assert_eq!(reason(r#"{"type":"nope"}"#), "unknown type \"nope\"");
        assert_eq!(
            reason(r#"{"type":"set_band","band":"low","lo_hz":20}"#),
            "hi_hz must be numeric"
        );
        assert!(matches!(
            parse(r#"{"type":"auth","token":"t"}"#),
            Ok(Action::Auth(t)) if t == "t"
        ));
    }
}
