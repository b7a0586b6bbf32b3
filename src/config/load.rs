//! Reading a configuration file and collecting every problem in it.
//!
//! serde stops at the first error, but a user fixing a file wants the whole
//! list at once. So loading works in steps, each linear in the size of the
//! file: parse the TOML syntax once (a line with a syntax error is reported
//! and blanked, a bounded number of times); walk the keys against the shape
//! of the defaults and report unknown ones; deserialise each value on its own
//! and report the ones of the wrong type; then range-check what survives with
//! [`super::validate`], and require the path settings to be absolute. Every
//! problem names the key, the value, what is allowed and the line. Files are
//! read only if regular and at most [`MAX_CONFIG_BYTES`] long.

use super::Config;
use std::fmt;
use std::path::{Path, PathBuf};

/// One thing wrong with a configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    /// Dotted key path, e.g. `dsp.low.lo-hz`.
    pub key: String,
    /// The offending value as written (or as parsed).
    pub value: String,
    /// What would be accepted.
    pub allowed: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if self.value.is_empty() {
            write!(f, "{}: {}", self.key, self.allowed)
        } else {
            write!(f, "{} = {}: {}", self.key, self.value, self.allowed)
        }
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The reason.
        source: std::io::Error,
    },
    /// The file has problems; every one is listed.
    #[error("{} problem(s) in {origin}:\n{}", problems.len(), list(problems))]
    Invalid {
        /// The file (or "<string>").
        origin: String,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The config file to use: the one given, else the system one if it exists.
pub fn search_path(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    let system = Path::new(super::SYSTEM_CONFIG_PATH);
    system.exists().then(|| system.to_path_buf())
}

/// Largest configuration file read. A real one is a few KiB; this bound keeps
/// `--check-config /dev/zero` or a runaway file from growing memory.
pub const MAX_CONFIG_BYTES: u64 = 64 << 10;
/// Most problems listed for one file; the rest are counted.
pub const MAX_PROBLEMS: usize = 200;
/// Syntax errors are recovered from by blanking the offending line and
/// parsing again; after this many the rest of the file is not looked at.
const MAX_SYNTAX_ROUNDS: usize = 16;

/// Load and validate a file.
///
/// Only a regular file is read (a FIFO or device would block or never end),
/// and only up to [`MAX_CONFIG_BYTES`].
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = read_bounded(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    load_str_from(&text, &path.display().to_string())
}

/// A warning when `ws.token` is set in a file every local user can read
/// (the shipped /etc/phase4/phase4.toml is 0644): the token is what keeps
/// the venue's LAN from changing settings, listening to the room and
/// downloading recordings. The generated token (left empty) is kept 0600.
pub fn token_exposure(path: &Path, cfg: &Config) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    if cfg.ws.token.is_empty() {
        return None;
    }
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o004 != 0).then(|| {
        format!(
            "ws.token is set in {} (mode {:o}), which every user of this machine can read: \
             `chmod 640` it and `chgrp phase4` it, or leave ws.token empty to use the \
             generated token (kept private in the state directory)",
            path.display(),
            mode & 0o7777
        )
    })
}

fn read_bounded(path: &Path) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind, Read};
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
    // writer. It changes nothing for a regular file.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!("larger than {} KiB", MAX_CONFIG_BYTES / 1024),
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        Error::new(
            ErrorKind::InvalidData,
            format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        )
    })
}

/// Load and validate TOML text.
pub fn load_str(text: &str) -> Result<Config, ConfigError> {
    load_str_from(text, "<string>")
}

/// Every step is linear in the size of the text: one parse (plus a bounded
/// number of re-parses after syntax errors), one walk over the keys against
/// the schema, one small deserialisation per key, one range check.
fn load_str_from(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let mut problems = Vec::new();
    let (mut table, parsed) = parse_table(text, &mut problems);
    let schema = schema();
    check_keys(&mut table, &schema, "", &mut problems);
    let config = deserialize_checked(table, &mut problems);
    let problems_of_file = super::validate::file_paths(&config);
    problems.extend(super::validate(&config).into_iter().chain(problems_of_file));
    if problems.is_empty() {
        Ok(config)
    } else {
        // The lines, found only when there is something to show (the
        // index is a second parse) and after the tree is gone.
        let lines = KeyLines::index(parsed.as_deref().unwrap_or(text));
        for p in problems.iter_mut() {
            if p.line.is_none() {
                p.line = lines.find(&p.key);
            }
            // Found by the whole key, shown shortened (review y: an unknown
            // key over 80 characters was looked up shortened, and got its
            // table's line or none).
            p.key = clip(&p.key);
        }
        // File order reads best; problems without a line go last.
        problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
        let total = problems.len();
        if total > MAX_PROBLEMS {
            problems.truncate(MAX_PROBLEMS);
            problems.push(Problem {
                key: "<file>".into(),
                value: String::new(),
                allowed: format!("{} more problem(s) not listed", total - MAX_PROBLEMS),
                line: None,
            });
        }
        Err(ConfigError::Invalid {
            origin: origin.to_string(),
            problems,
        })
    }
}

/// Parse the TOML syntax. A line with a syntax error is reported, blanked
/// (a table header with the keys under it) and the text parsed again, at
/// most [`MAX_SYNTAX_ROUNDS`] times. Also returns the text that parsed when
/// lines were blanked (as many lines as `text`).
fn parse_table(text: &str, problems: &mut Vec<Problem>) -> (toml::Table, Option<String>) {
    let mut owned: Option<Vec<&str>> = None;
    for _ in 0..MAX_SYNTAX_ROUNDS {
        let joined;
        let current: &str = match &owned {
            None => text,
            Some(lines) => {
                joined = lines.join("\n");
                &joined
            }
        };
        match current.parse::<toml::Table>() {
            Ok(t) => return (t, owned.map(|lines| lines.join("\n"))),
            Err(e) => {
                let line_idx = e.span().map(|s| line_of_offset(current, s.start));
                let lines = owned.get_or_insert_with(|| text.lines().collect());
                let message = syntax_message(&e);
                problems.push(problem_from_syntax(lines, line_idx, &message));
                match line_idx {
                    Some(i) if i < lines.len() && !lines[i].trim().is_empty() => {
                        // A bad table header (a duplicate `[audio]`) goes
                        // with its keys: left alone they would land in the
                        // table above and be reported as unknown there.
                        // (Only for the parser's "invalid table header": a
                        // line of an array value starts with `[` too.)
                        let header = message.contains("table header")
                            && lines[i].trim_start().starts_with('[');
                        let end = if header {
                            (i + 1..lines.len())
                                .find(|&j| lines[j].trim_start().starts_with('['))
                                .unwrap_or(lines.len())
                        } else {
                            i + 1
                        };
                        lines[i..end].fill("");
                    }
                    _ => return (toml::Table::new(), None),
                }
            }
        }
    }
    problems.push(Problem {
        key: "<file>".into(),
        value: String::new(),
        allowed: format!(
            "more than {MAX_SYNTAX_ROUNDS} syntax errors; the rest of the file was not read"
        ),
        line: None,
    });
    (toml::Table::new(), None)
}

fn problem_from_syntax(lines: &[&str], line_idx: Option<usize>, message: &str) -> Problem {
    let (key, value) = match line_idx {
        Some(i) if i < lines.len() => {
            let raw = lines[i].trim();
            match raw.split_once('=') {
                Some((k, v)) if !raw.starts_with('[') => {
                    let section = section_at(lines, i);
                    let k = k.trim().trim_matches('"');
                    (clip(&join_key(&section, k)), clip(v.trim()))
                }
                _ => (clip(raw.trim_matches(['[', ']'])), String::new()),
            }
        }
        _ => ("<file>".to_string(), String::new()),
    };
    Problem {
        key,
        value,
        allowed: message.trim().replace('\n', " "),
        line: line_idx.map(|i| i + 1),
    }
}

/// The `[section]` header in force at line `i` (only used for the few lines
/// with syntax errors).
fn section_at(lines: &[&str], i: usize) -> String {
    lines[..=i]
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(['[', ']']).trim().to_string())
        .unwrap_or_default()
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count()
}

fn join_key(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// A value or key as shown in a problem: at most 80 characters.
fn clip(s: &str) -> String {
    const MAX: usize = 80;
    let s = match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    };
    // Quoted text goes to a terminal or the journal: no raw control bytes.
    crate::service::logging::one_line(&s).into_owned()
}

/// What a TOML syntax error says. The parser gives some errors (a NUL or
/// another control character in a comment) no message at all; those get
/// one, with where the character is.
pub fn syntax_message(e: &toml::de::Error) -> String {
    let m = e.message().trim().replace('\n', " ");
    if !m.is_empty() {
        return m;
    }
    match e.span() {
        Some(s) => format!(
            "a character TOML does not allow (a control character?) at byte {}",
            s.start
        ),
        None => "not valid TOML".into(),
    }
}

/// The shape of a valid configuration: the defaults, as a TOML tree.
fn schema() -> toml::Table {
    // Config's Serialize impl is derived and its defaults are plain data, so
    // this cannot fail; an empty schema would only make every key "unknown".
    toml::Table::try_from(Config::default()).unwrap_or_default()
}

/// Most entries an array of tables (`[[osc.destinations]]`) may have.
pub const MAX_TABLE_ARRAY: usize = 64;

/// Report and remove every key the schema does not have; turn integers into
/// floats where a float is expected (`lo-hz = 30` means 30.0).
fn check_keys(
    table: &mut toml::Table,
    schema: &toml::Table,
    prefix: &str,
    problems: &mut Vec<Problem>,
) {
    let mut unknown = Vec::new();
    for (key, value) in table.iter_mut() {
        let path = join_key(prefix, key);
        let Some(expected) = schema.get(key) else {
            unknown.push(key.clone());
            let known: Vec<&str> = schema.keys().map(String::as_str).collect();
            problems.push(Problem {
                line: None,
                // Shortened after its line is found (`load_str_from`).
                key: path.clone(),
                value: String::new(),
                allowed: if known.is_empty() {
                    "unknown key".to_string()
                } else {
                    format!("unknown key; known here: {}", known.join(", "))
                },
            });
            continue;
        };
        match (value, expected) {
            (toml::Value::Table(t), toml::Value::Table(s)) => check_keys(t, s, &path, problems),
            (toml::Value::Array(items), toml::Value::Array(s)) => {
                let Some(toml::Value::Table(elem)) = s.first() else {
                    continue;
                };
                if items.len() > MAX_TABLE_ARRAY {
                    problems.push(Problem {
                        line: None,
                        key: path.clone(),
                        value: format!("{} entries", items.len()),
                        allowed: format!("at most {MAX_TABLE_ARRAY} entries"),
                    });
                    items.truncate(MAX_TABLE_ARRAY);
                }
                for (i, item) in items.iter_mut().enumerate() {
                    if let toml::Value::Table(t) = item {
                        check_keys(t, elem, &format!("{path}[{i}]"), problems);
                    }
                }
            }
            (v @ toml::Value::Integer(_), toml::Value::Float(_)) => {
                if let toml::Value::Integer(i) = *v {
                    *v = toml::Value::Float(i as f64);
                }
            }
            _ => {}
        }
    }
    for key in unknown {
        table.remove(&key);
    }
}

/// Deserialise every leaf on its own first, so that each bad value is
/// reported (serde stops at the first) and removed; then the whole cleaned
/// tree. Each leaf costs one tiny deserialisation: linear overall.
fn deserialize_checked(mut table: toml::Table, problems: &mut Vec<Problem>) -> Config {
    let mut path = Vec::new();
    remove_bad_leaves(&mut table, &mut path, problems);
    match toml::Value::Table(table).try_into::<Config>() {
        Ok(c) => c,
        Err(e) => {
            problems.push(Problem {
                key: "<file>".into(),
                value: String::new(),
                allowed: e.message().trim().replace('\n', " "),
                line: None,
            });
            Config::default()
        }
    }
}

/// One step of a key path: a table key or an index into an array of tables.
enum Step {
    Key(String),
    Index(usize),
}

fn path_string(path: &[Step]) -> String {
    let mut s = String::new();
    for step in path {
        match step {
            Step::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Step::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// `value` wrapped in the tables (and one-element arrays) of `path`.
fn wrap(path: &[Step], value: toml::Value) -> toml::Value {
    path.iter().rev().fold(value, |inner, step| match step {
        Step::Key(k) => {
            let mut t = toml::Table::new();
            t.insert(k.clone(), inner);
            toml::Value::Table(t)
        }
        Step::Index(_) => toml::Value::Array(vec![inner]),
    })
}

fn remove_bad_leaves(table: &mut toml::Table, path: &mut Vec<Step>, problems: &mut Vec<Problem>) {
    let mut bad = Vec::new();
    for (key, value) in table.iter_mut() {
        path.push(Step::Key(key.clone()));
        match value {
            toml::Value::Table(t) => remove_bad_leaves(t, path, problems),
            toml::Value::Array(items)
                if !items.is_empty() && items.iter().all(toml::Value::is_table) =>
            {
                for (i, item) in items.iter_mut().enumerate() {
                    path.push(Step::Index(i));
                    if let toml::Value::Table(t) = item {
                        remove_bad_leaves(t, path, problems);
                    }
                    path.pop();
                }
            }
            leaf => {
                if let Err(e) = wrap(path, leaf.clone()).try_into::<Config>() {
                    let key_path = path_string(path);
                    problems.push(Problem {
                        line: None,
                        key: key_path,
                        value: clip(&leaf.to_string()),
                        allowed: e.message().trim().replace('\n', " "),
                    });
                    bad.push(key.clone());
                }
            }
        }
        path.pop();
    }
    for key in bad {
        table.remove(&key);
    }
}

/// The line of every key and table of a file, from the spans of the same
/// TOML parser `toml` uses (`toml_edit`), so that problems can name their
/// line without searching the text once per problem. (Until stop 56 this
/// was a line-by-line guess, which took a line of an array value that
/// starts with `[` for a table header and blamed the keys after it on the
/// table above.)
struct KeyLines {
    lines: std::collections::HashMap<String, usize>,
}

impl KeyLines {
    /// Index `text`, which `toml` parsed (nothing is found in text that
    /// does not parse). Linear in its size.
    fn index(text: &str) -> Self {
        let mut index = KeyLines {
            lines: std::collections::HashMap::new(),
        };
        if let Ok(doc) = toml_edit::ImDocument::parse(text) {
            let starts = LineStarts::of(text);
            index.table(doc.as_table(), "", &starts);
        }
        index
    }

    fn note(&mut self, path: &str, span: Option<std::ops::Range<usize>>, starts: &LineStarts) {
        if let Some(span) = span {
            self.lines
                .entry(path.to_string())
                .or_insert_with(|| starts.line(span.start));
        }
    }

    fn table(&mut self, t: &toml_edit::Table, prefix: &str, starts: &LineStarts) {
        self.note(prefix, t.span(), starts);
        for (k, item) in t.iter() {
            let path = join_key(prefix, k);
            self.note(&path, t.key(k).and_then(toml_edit::Key::span), starts);
            match item {
                toml_edit::Item::Table(sub) => self.table(sub, &path, starts),
                toml_edit::Item::ArrayOfTables(a) => {
                    for (i, sub) in a.iter().enumerate() {
                        self.table(sub, &format!("{path}[{i}]"), starts);
                    }
                }
                toml_edit::Item::Value(v) => self.value(v, &path, starts),
                toml_edit::Item::None => {}
            }
        }
    }

    fn value(&mut self, v: &toml_edit::Value, path: &str, starts: &LineStarts) {
        self.note(path, v.span(), starts);
        match v {
            toml_edit::Value::InlineTable(t) => {
                for (k, item) in t.iter() {
                    let sub = join_key(path, k);
                    self.note(&sub, t.key(k).and_then(toml_edit::Key::span), starts);
                    self.value(item, &sub, starts);
                }
            }
            toml_edit::Value::Array(a) => {
                for (i, item) in a.iter().enumerate() {
                    self.value(item, &format!("{path}[{i}]"), starts);
                }
            }
            _ => {}
        }
    }

    /// The line of `key`, else of its nearest enclosing table.
    fn find(&self, key: &str) -> Option<usize> {
        let mut k = key;
        loop {
            if let Some(&l) = self.lines.get(k) {
                return Some(l);
            }
            k = &k[..k.rfind(['.', '['])?];
        }
    }
}

/// Where each line of a text starts, to turn byte offsets into line
/// numbers by binary search.
struct LineStarts(Vec<usize>);

impl LineStarts {
    fn of(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineStarts(starts)
    }

    /// The 1-based line holding byte `offset`.
    fn line(&self, offset: usize) -> usize {
        self.0.partition_point(|&s| s <= offset)
    }
}

#[cfg(test)]
mod tests;
