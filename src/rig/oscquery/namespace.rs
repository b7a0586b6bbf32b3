//! The OSCQuery address space: every OSC address phase4 sends (read-only,
//! ACCESS 1, valued from the newest frames) and, when the OSC input port is
//! on, the settings it takes (ACCESS 3, valued from the settings in force),
//! as the JSON of the OSCQuery proposal (FULL_PATH, CONTENTS, TYPE, ACCESS,
//! VALUE, RANGE, DESCRIPTION; HOST_INFO).
//!
//! Pure data and JSON: no I/O, so the HTTP side ([`super::server`]) only
//! maps requests to [`Namespace::answer`].

use super::setting::Setting;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// One argument's range.
#[derive(Clone, Debug, PartialEq)]
pub enum Range {
    /// MIN and/or MAX.
    MinMax(Option<f64>, Option<f64>),
    /// Only these values.
    Vals(Vec<Value>),
}

impl Range {
    fn json(&self) -> Value {
        match self {
            Range::MinMax(lo, hi) => {
                let mut m = Map::new();
                if let Some(v) = lo {
                    m.insert("MIN".into(), json!(v));
                }
                if let Some(v) = hi {
                    m.insert("MAX".into(), json!(v));
                }
                Value::Object(m)
            }
            Range::Vals(v) => json!({ "VALS": v }),
        }
    }
}

/// Where a method's value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// An output address (index into `transport::osc::ADDRESSES`).
    Output(usize),
    /// A writable setting.
    Setting(Setting),
}

/// A node of the address space.
#[derive(Clone, Debug, Default)]
pub struct Node {
    /// Full OSC path.
    pub path: String,
    /// Human-readable description.
    pub description: String,
    /// 0 none, 1 read, 2 write, 3 both.
    pub access: u8,
    /// OSC type tag string ("" for a pure container).
    pub types: String,
    /// One range per type (may be empty).
    pub range: Vec<Range>,
    /// Where the value comes from (methods only).
    pub source: Option<Source>,
    /// Sub-nodes by name.
    pub children: BTreeMap<String, Node>,
}

/// Attributes a client may ask for with `?NAME`.
pub const ATTRIBUTES: [&str; 7] = [
    "FULL_PATH",
    "CONTENTS",
    "TYPE",
    "ACCESS",
    "VALUE",
    "RANGE",
    "DESCRIPTION",
];

/// What an HTTP request gets.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// 200 with this JSON.
    Json(Value),
    /// 204: the attribute does not apply (VALUE of a method with no value).
    NoContent,
    /// 400: an attribute phase4 does not know or support.
    BadRequest(String),
    /// 404: no such node.
    NotFound,
}

/// Reads current values (the newest frames, the settings in force).
pub trait Values {
    /// The JSON values of `source` (one per type), or `None` when it has
    /// none yet.
    fn value(&self, source: Source) -> Option<Vec<Value>>;
}

/// The whole tree plus what HOST_INFO says.
#[derive(Clone, Debug)]
pub struct Namespace {
    /// The root container "/".
    pub root: Node,
    /// HOST_INFO.
    pub host_info: Value,
}

fn container(path: &str) -> Node {
    Node {
        path: path.to_string(),
        ..Default::default()
    }
}

impl Namespace {
    /// An empty namespace with `host_info`.
    pub fn new(host_info: Value) -> Self {
        let mut root = container("/");
        root.description = "phase4 real-time audio features".into();
        Namespace { root, host_info }
    }

    /// Add a method at `path`, creating containers on the way. A node may
    /// be both a method and a container (`/audio/onset` and
    /// `/audio/onset/low`).
    pub fn add(&mut self, path: &str, mut node: Node) {
        let mut cur = &mut self.root;
        let mut full = String::new();
        for seg in path.split('/').filter(|s| !s.is_empty()) {
            full.push('/');
            full.push_str(seg);
            let f = full.clone();
            cur = cur
                .children
                .entry(seg.to_string())
                .or_insert_with(|| container(&f));
        }
        node.path = full;
        node.children = std::mem::take(&mut cur.children);
        *cur = node;
    }

    /// The node at OSC `path` ("/" is the root).
    pub fn find(&self, path: &str) -> Option<&Node> {
        let mut cur = &self.root;
        for seg in path.split('/').filter(|s| !s.is_empty()) {
            cur = cur.children.get(seg)?;
        }
        Some(cur)
    }

    /// Every method (node with a type), depth first.
    pub fn methods(&self) -> Vec<&Node> {
        fn walk<'a>(n: &'a Node, out: &mut Vec<&'a Node>) {
            if !n.types.is_empty() {
                out.push(n);
            }
            for c in n.children.values() {
                walk(c, out);
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &mut out);
        out
    }

    /// Answer a GET of OSC `path` with the URL query `query` (without '?').
    pub fn answer(&self, path: &str, query: Option<&str>, values: &dyn Values) -> Answer {
        let attr = query.map(|q| q.split('&').next().unwrap_or("").trim());
        if attr == Some("HOST_INFO") {
            return Answer::Json(self.host_info.clone());
        }
        let Some(node) = self.find(path) else {
            return Answer::NotFound;
        };
        match attr {
            None | Some("") => Answer::Json(node_json(node, values)),
            Some(a) if !ATTRIBUTES.contains(&a) => {
                // At most 64 characters of it back: a query is the
                // client's own, but a 7 KiB one need not come back whole.
                let a = crate::control::device::shorten(a);
                Answer::BadRequest(format!("unsupported attribute {a:?}"))
            }
            Some("VALUE") if node.access & 1 == 0 => Answer::NoContent,
            Some(a) => {
                let full = node_json(node, values);
                let mut m = Map::new();
                if let Some(v) = full.get(a) {
                    m.insert(a.to_string(), v.clone());
                }
                Answer::Json(Value::Object(m))
            }
        }
    }
}

fn node_json(n: &Node, values: &dyn Values) -> Value {
    let mut m = Map::new();
    m.insert("FULL_PATH".into(), json!(n.path));
    m.insert("ACCESS".into(), json!(n.access));
    if !n.description.is_empty() {
        m.insert("DESCRIPTION".into(), json!(n.description));
    }
    if !n.types.is_empty() {
        m.insert("TYPE".into(), json!(n.types));
        if !n.range.is_empty() {
            m.insert(
                "RANGE".into(),
                Value::Array(n.range.iter().map(Range::json).collect()),
            );
        }
        if n.access & 1 != 0 {
            if let Some(v) = n.source.and_then(|s| values.value(s)) {
                m.insert("VALUE".into(), Value::Array(v));
            }
        }
    }
    if !n.children.is_empty() {
        let c: Map<String, Value> = n
            .children
            .iter()
            .map(|(k, v)| (k.clone(), node_json(v, values)))
            .collect();
        m.insert("CONTENTS".into(), Value::Object(c));
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl Values for Fixed {
        fn value(&self, s: Source) -> Option<Vec<Value>> {
            match s {
                Source::Output(1) => Some(vec![json!(0.5), json!(0.25), json!(0.0)]),
                _ => None,
            }
        }
    }

    fn ns() -> Namespace {
        let mut n = Namespace::new(json!({"NAME": "box"}));
        n.add(
            "/audio/lmh",
            Node {
                access: 1,
                types: "fff".into(),
                range: vec![Range::MinMax(Some(0.0), Some(1.0)); 3],
                source: Some(Source::Output(1)),
                description: "bands".into(),
                ..Default::default()
            },
        );
        n.add(
            "/audio/onset/low",
            Node {
                access: 1,
                types: "i".into(),
                ..Default::default()
            },
        );
        n.add(
            "/audio/onset",
            Node {
                access: 1,
                types: "f".into(),
                ..Default::default()
            },
        );
        n
    }

    #[test]
    fn tree_has_full_paths_contents_and_values() {
        let Answer::Json(j) = ns().answer("/", None, &Fixed) else {
            panic!()
        };
        assert_eq!(j["FULL_PATH"], "/");
        let lmh = &j["CONTENTS"]["audio"]["CONTENTS"]["lmh"];
        assert_eq!(lmh["FULL_PATH"], "/audio/lmh");
        assert_eq!(lmh["TYPE"], "fff");
        assert_eq!(lmh["VALUE"], json!([0.5, 0.25, 0.0]));
        assert_eq!(lmh["RANGE"][2], json!({"MIN": 0.0, "MAX": 1.0}));
        let onset = &j["CONTENTS"]["audio"]["CONTENTS"]["onset"];
        assert_eq!(onset["TYPE"], "f", "a method that is also a container");
        assert_eq!(onset["CONTENTS"]["low"]["FULL_PATH"], "/audio/onset/low");
    }

    #[test]
    fn attribute_queries_and_errors() {
        let n = ns();
        assert_eq!(
            n.answer("/audio/lmh", Some("TYPE"), &Fixed),
            Answer::Json(json!({"TYPE": "fff"}))
        );
        assert_eq!(
            n.answer("/audio", Some("TYPE"), &Fixed),
            Answer::Json(json!({}))
        );
        assert_eq!(n.answer("/audio", Some("VALUE"), &Fixed), Answer::NoContent);
        assert_eq!(
            n.answer("/audio/onset", Some("VALUE"), &Fixed),
            Answer::Json(json!({})),
            "no value yet"
        );
        assert!(matches!(
            n.answer("/audio/lmh", Some("BOGUS"), &Fixed),
            Answer::BadRequest(_)
        ));
        let long = "X".repeat(7000);
        match n.answer("/audio/lmh", Some(&long), &Fixed) {
            Answer::BadRequest(why) => assert!(why.len() < 120, "{} bytes", why.len()),
            other => panic!("{other:?}"),
        }
        assert_eq!(n.answer("/nope", None, &Fixed), Answer::NotFound);
        assert_eq!(
            n.answer("/nope", Some("HOST_INFO"), &Fixed),
            Answer::Json(json!({"NAME": "box"})),
            "HOST_INFO ignores the path"
        );
    }
}
