//! Reading a configuration file and collecting every problem in it.
//!
//! serde stops at the first error, but a user fixing a file wants the whole
//! list at once. So loading works in rounds: parse, and when serde rejects a
//! line, record the problem, blank that line and parse again. Whatever
//! survives is then range-checked by [`super::validate`]. Every problem
//! names the key, the value, what is allowed and the line.

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

/// Load and validate a file.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    load_str_from(&text, &path.display().to_string())
}

/// Load and validate TOML text.
pub fn load_str(text: &str) -> Result<Config, ConfigError> {
    load_str_from(text, "<string>")
}

fn load_str_from(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let (config, mut problems) = parse_collecting(text);
    for mut p in super::validate(&config) {
        p.line = find_key_line(text, &p.key);
        problems.push(p);
    }
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid {
            origin: origin.to_string(),
            problems,
        })
    }
}

/// Parse, blanking each line serde rejects, until what is left parses.
fn parse_collecting(text: &str) -> (Config, Vec<Problem>) {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut problems = Vec::new();
    // Each round removes one line, so the number of lines bounds the rounds.
    for _ in 0..=lines.len() {
        let joined = lines.join("\n");
        match toml::from_str::<Config>(&joined) {
            Ok(cfg) => return (cfg, problems),
            Err(e) => {
                let line_idx = e.span().map(|s| line_of_offset(&joined, s.start));
                let problem = problem_from_serde(&lines, line_idx, e.message());
                problems.push(problem);
                match line_idx {
                    Some(i) if i < lines.len() && !lines[i].trim().is_empty() => {
                        lines[i] = String::new();
                    }
                    _ => break,
                }
            }
        }
    }
    (Config::default(), problems)
}

fn problem_from_serde(lines: &[String], line_idx: Option<usize>, message: &str) -> Problem {
    let (key, value) = match line_idx {
        Some(i) if i < lines.len() => {
            let section = section_at(lines, i);
            let raw = lines[i].trim();
            match raw.split_once('=') {
                Some((k, v)) if !raw.starts_with('[') => {
                    let k = k.trim().trim_matches('"');
                    let key = if section.is_empty() {
                        k.to_string()
                    } else {
                        format!("{section}.{k}")
                    };
                    (key, v.trim().to_string())
                }
                _ => (raw.trim_matches(['[', ']']).to_string(), String::new()),
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

/// The `[section]` (or `[[section]]`) header in force at line `i`.
fn section_at(lines: &[String], i: usize) -> String {
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

/// Best-effort line of a dotted key: the key's last part inside its section.
fn find_key_line(text: &str, key: &str) -> Option<usize> {
    let (section, leaf) = match key.rsplit_once('.') {
        Some((s, l)) => (s.split('[').next().unwrap_or(s), l),
        None => ("", key),
    };
    let mut current = String::new();
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if l.starts_with('[') {
            current = l.trim_matches(['[', ']']).trim().to_string();
            continue;
        }
        if let Some((k, _)) = l.split_once('=') {
            if current == section && k.trim() == leaf {
                return Some(i + 1);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_text_gives_defaults() {
        assert_eq!(load_str("").unwrap(), Config::default());
    }

    #[test]
    fn several_problems_are_reported_at_once() {
        let text = "[audio]\nblock-frames = 3\nbogus = 1\nformat = \"S8\"\n\n[dsp.low]\nlo-hz = -5.0\n\n[autoscale]\nstrength = 2.0\n";
        let err = load_str(text).unwrap_err();
        let ConfigError::Invalid { problems, .. } = err else {
            panic!("expected Invalid")
        };
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        for k in [
            "audio.bogus",
            "audio.format",
            "audio.block-frames",
            "dsp.low.lo-hz",
            "autoscale.strength",
        ] {
            assert!(keys.contains(&k), "{k} missing from {keys:?}");
        }
        let strength = problems
            .iter()
            .find(|p| p.key == "autoscale.strength")
            .unwrap();
        assert_eq!(strength.line, Some(10));
        assert!(strength.allowed.contains("0") && strength.allowed.contains("1"));
    }

    #[test]
    fn syntax_error_names_the_line() {
        let err = load_str("[audio]\ndevice = \n").unwrap_err();
        let ConfigError::Invalid { problems, .. } = err else {
            panic!("expected Invalid")
        };
        assert_eq!(problems[0].line, Some(2));
    }
}
