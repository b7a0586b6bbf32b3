//! The control secret: what a client that is not on this machine must
//! present before it may change anything.
//!
//! Secure by default: when the configuration sets no `ws.token`, phase4
//! generates one at its first start into `<state dir>/control-token` (mode
//! 0600, owned by the service user) and keeps it across restarts. The
//! administrator reads it with `phase4 token` (which also creates it if the
//! service never ran) and enters it once in the UI, which keeps it in the
//! browser. Watching the feature stream never needs it, and clients on the
//! loopback interface are trusted (`ws.trust-loopback`).
//!
//! Runs at start-up, in the `phase4 token` command and, while the service
//! runs, on a thread of its own that keeps the file and the token in force
//! the same ([`keep`]); never on a real-time thread.

use crate::config::Config;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

mod keeper;
pub use keeper::{keep, KEEP_EVERY};

/// File name of the generated secret inside the state directory.
pub const TOKEN_FILE: &str = "control-token";
/// Largest token file read.
const MAX_FILE_BYTES: u64 = 256;

/// Where the secret in force comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `ws.token` in the configuration.
    Config,
    /// Generated into (or read from) this file.
    File(PathBuf),
    /// Generated for this run only (no usable state directory): only
    /// loopback clients can change settings until `ws.token` is set.
    Ephemeral,
}

/// The control secret. Every clone is the same secret: a token file
/// changed while the service runs ([`keep`]) changes it for every door at
/// once.
#[derive(Clone, Debug)]
pub struct Secret {
    token: Arc<RwLock<String>>,
    /// Where it comes from.
    pub source: Source,
}

impl Secret {
    /// A secret with a given token (tests, and `ws.token`).
    pub fn configured(token: &str) -> Self {
        Self::new(token.to_string(), Source::Config)
    }

    fn new(token: String, source: Source) -> Self {
        Secret {
            token: Arc::new(RwLock::new(token)),
            source,
        }
    }

    fn token(&self) -> std::sync::RwLockReadGuard<'_, String> {
        self.token.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `given` is the secret. Compares without an early exit on the
    /// first differing byte.
    pub fn matches(&self, given: &str) -> bool {
        let token = self.token();
        let (a, b) = (token.as_bytes(), given.as_bytes());
        let mut diff = a.len() ^ b.len();
        for i in 0..a.len().max(b.len()) {
            diff |= (a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0)) as usize;
        }
        diff == 0 && !a.is_empty()
    }

    /// The token itself (for `phase4 token` only; never logged).
    pub fn reveal(&self) -> String {
        self.token().clone()
    }
}

/// A fresh token: 100 random bits as 20 characters of Crockford's base32
/// (no i, l, o, u), in four groups of five for reading aloud or typing on
/// a phone.
pub fn generate() -> std::io::Result<String> {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let mut bytes = [0u8; 13];
    getrandom::getrandom(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut bits: u128 = 0;
    for b in bytes {
        bits = (bits << 8) | b as u128;
    }
    let mut out = String::with_capacity(23);
    for i in 0..20 {
        if i > 0 && i % 5 == 0 {
            out.push('-');
        }
        out.push(ALPHABET[((bits >> (5 * i)) & 31) as usize] as char);
    }
    Ok(out)
}

/// Whether a stored token looks like one phase4 would accept (printable,
/// 16..=128 characters, no spaces).
fn plausible(t: &str) -> bool {
    (16..=128).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_graphic())
}

/// The secret in force for `config`: `ws.token` when set, else the one in
/// the state directory (created when missing; an unreadable or malformed
/// one is moved aside and replaced), else one for this run only.
pub fn load_or_create(config: &Config) -> Secret {
    if !config.ws.token.is_empty() {
        return Secret::configured(&config.ws.token);
    }
    let ephemeral = |why: String| {
        log::warn!(
            "ws: {why}; only clients on this machine can change settings until ws.token is set"
        );
        Secret::new(generate().unwrap_or_default(), Source::Ephemeral)
    };
    let Some(dir) = config.state_dir() else {
        return ephemeral("no state directory for the generated control token".into());
    };
    match file_token(&dir) {
        Ok(token) => Secret::new(token, Source::File(dir.join(TOKEN_FILE))),
        Err(e) => ephemeral(format!(
            "cannot keep a control token in {}: {e}",
            dir.display()
        )),
    }
}

/// The token in `dir`, created (mode 0600, owned like `dir`) when missing.
///
/// Only from a directory [`trusted`](crate::service::state_dir::trusted),
/// and only from a file of this user's, root's or the directory owner's:
/// another user who made the directory or the file first would choose the
/// token (tester ah AH5; the keeper has the same rule while running).
pub fn file_token(dir: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let refused = |why: String| std::io::Error::new(std::io::ErrorKind::PermissionDenied, why);
    let path = dir.join(TOKEN_FILE);
    let dir_owner = match std::fs::metadata(dir) {
        Ok(m) => {
            crate::service::state_dir::trusted(dir)
                .map_err(|why| refused(format!("not trusted: {why}")))?;
            Some(m.uid())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let trusted =
        |owner: u32| crate::service::state_dir::trusted_owner(owner) || Some(owner) == dir_owner;
    let not_taken = |owner: u32| {
        refused(format!(
            "{} belongs to uid {owner}, neither this user, root nor the directory's owner: not taken",
            path.display()
        ))
    };
    match read_owned_token(&path) {
        Ok(Some((t, owner))) if trusted(owner) => return Ok(t),
        Ok(Some((_, owner))) => return Err(not_taken(owner)),
        Ok(None) => {}
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            // Said only once it is true: the rename can fail too.
            let aside = match crate::service::safe_fs::move_aside(dir, TOKEN_FILE) {
                Ok(aside) => aside,
                Err(re) => {
                    return Err(std::io::Error::new(
                        re.kind(),
                        format!(
                            "{} is not a usable token ({e}) and cannot be moved aside: {re}",
                            path.display()
                        ),
                    ))
                }
            };
            log::warn!(
                "ws: {} is not a usable token ({e}); moved aside to {}",
                path.display(),
                aside.display()
            );
        }
        Err(e) => return Err(e),
    }
    let token = generate()?;
    match write_token(dir, &token) {
        Ok(()) => {
            log::info!("ws: generated a control token in {}", path.display());
            Ok(token)
        }
        // Made meanwhile by another phase4 (the service's first start and
        // `phase4 token` at once): that one is the token, and it is whole
        // (tester ad AD1: each made its own, and one was refused).
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match read_owned_token(&path)? {
            Some((t, owner)) if trusted(owner) => Ok(t),
            Some((_, owner)) => Err(not_taken(owner)),
            None => Err(std::io::Error::other(format!(
                "{} came and went",
                path.display()
            ))),
        },
        Err(e) => Err(e),
    }
}

/// Write `token` into a new `dir/control-token` (mode 0600, owned like
/// `dir`, which is made if missing); an existing file is not touched
/// (`AlreadyExists`). The token is written whole under a name of its own,
/// then linked in: whoever reads the file meanwhile (the service's first
/// start, another `phase4 token`) finds none or a whole one, never an empty
/// file it would take for corrupt and move aside (tester ad AD1). `link`
/// never replaces a name, a planted symlink included.
fn write_token(dir: &Path, token: &str) -> std::io::Result<()> {
    let path = dir.join(TOKEN_FILE);
    crate::service::safe_fs::create_dirs(dir)?;
    let mut nonce = [0u8; 4];
    getrandom::getrandom(&mut nonce).map_err(|e| std::io::Error::other(e.to_string()))?;
    let tmp = dir.join(format!(
        ".{TOKEN_FILE}.new-{}-{:08x}",
        std::process::id(),
        u32::from_le_bytes(nonce)
    ));
    let mut f = crate::service::safe_fs::create_new(&tmp, 0o600)?;
    // Created by root (`sudo phase4 token` before the first start): hand it
    // to the user the state directory belongs to, or the service could not
    // read it. Before anything is written.
    crate::service::safe_fs::adopt(&f, dir);
    let written = f
        .write_all(format!("{token}\n").as_bytes())
        .and_then(|()| f.sync_all());
    drop(f);
    // A write that failed (a full disk) links nothing: an empty or
    // half-written token would be taken for corrupt by the next start.
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, &path));
    let _ = std::fs::remove_file(&tmp);
    linked
}

fn read_token(path: &Path) -> std::io::Result<Option<String>> {
    Ok(read_owned_token(path)?.map(|(t, _)| t))
}

/// [`read_token`], and the owner of the file read (of the descriptor, not
/// of whatever the name points to a moment later).
fn read_owned_token(path: &Path) -> std::io::Result<Option<(String, u32)>> {
    use std::os::unix::fs::MetadataExt;
    // Not through a symlink (root running `phase4 token` would print a
    // line of any file) and never waiting on a FIFO: those are refused as
    // InvalidData and moved aside.
    let f = match crate::service::safe_fs::open_regular(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let owner = f.metadata()?.uid();
    let mut bytes = Vec::new();
    f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    let invalid = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string());
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(invalid("too large"));
    }
    let text = String::from_utf8(bytes).map_err(|_| invalid("not UTF-8"))?;
    let t = text.trim();
    if !plausible(t) {
        return Err(invalid("not 16-128 printable characters"));
    }
    Ok(Some((t.to_string(), owner)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Tester ah AH5: a state directory, or a token file, another user
    /// made first would choose the token. The service user's directory
    /// that root made for it still gives its token to root.
    #[test]
    fn a_token_is_taken_only_from_a_trusted_directory_and_owner() {
        if !nix::unistd::geteuid().is_root() {
            // Files of another user cannot be made without root.
            return;
        }
        use std::os::unix::fs::chown;
        let d = tempfile::tempdir().unwrap();
        let perm = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        let planted = "attacker-known-token-1234";
        let plant = |dir: &Path| {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join(TOKEN_FILE), format!("{planted}\n")).unwrap();
            chown(dir.join(TOKEN_FILE), Some(65534), Some(65534)).unwrap();
        };
        // Made by uid 65534 under a parent anyone may write to (/tmp).
        let public = d.path().join("pub");
        std::fs::create_dir(&public).unwrap();
        perm(&public, 0o1777);
        let theirs = public.join("st");
        plant(&theirs);
        chown(&theirs, Some(65534), Some(65534)).unwrap();
        let e = file_token(&theirs).unwrap_err();
        assert!(e.to_string().contains("uid 65534"), "{e}");
        let mut c = Config::default();
        c.state.dir = theirs.display().to_string();
        let s = load_or_create(&c);
        assert_eq!(s.source, Source::Ephemeral);
        assert!(!s.matches(planted));
        // Root's own directory, with a token file of another user's in it.
        let mine = d.path().join("mine");
        plant(&mine);
        let e = file_token(&mine).unwrap_err();
        assert!(e.to_string().contains("not taken"), "{e}");
        // The service user's directory that root made in a directory of
        // its own: its token is the service's.
        let lib = d.path().join("lib");
        std::fs::create_dir(&lib).unwrap();
        perm(&lib, 0o755);
        let svc = lib.join("phase4");
        plant(&svc);
        chown(&svc, Some(65534), Some(65534)).unwrap();
        assert_eq!(file_token(&svc).unwrap(), planted);
    }

    #[test]
    fn generated_tokens_are_long_distinct_and_typeable() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 23, "{a}");
        assert!(a
            .chars()
            .all(|c| c == '-' || c.is_ascii_digit() || c.is_ascii_lowercase()));
        assert!(plausible(&a));
    }

    #[test]
    fn the_file_token_is_private_and_survives_restarts() {
        let d = tempfile::tempdir().unwrap();
        let t1 = file_token(d.path()).unwrap();
        let mode = std::fs::metadata(d.path().join(TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(file_token(d.path()).unwrap(), t1);
        let mut c = Config::default();
        c.state.dir = d.path().display().to_string();
        let s = load_or_create(&c);
        assert!(s.matches(&t1));
        assert!(!s.matches(""));
        assert!(!s.matches(&t1[1..]));
        assert_eq!(s.source, Source::File(d.path().join(TOKEN_FILE)));
    }

    #[test]
    fn a_configured_token_wins_and_a_garbage_file_is_replaced() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(TOKEN_FILE), b"\xff\xfe short").unwrap();
        let t = file_token(d.path()).unwrap();
        assert!(plausible(&t));
        assert_eq!(aside(d.path()).len(), 1);
        let mut c = Config::default();
        c.state.dir = d.path().display().to_string();
        c.ws.token = "from-the-config".into();
        let s = load_or_create(&c);
        assert_eq!(s.source, Source::Config);
        assert!(s.matches("from-the-config"));
        assert!(!s.matches(&t));
    }

    #[test]
    fn phase4s_making_the_token_at_once_all_get_the_same_one() {
        // Tester ad AD1: the service's first start and `phase4 token` at
        // once; one got "File exists" (and ran on a token for that run
        // only), or took the other's empty new file for corrupt and moved
        // it aside, and two different tokens were handed out.
        for _ in 0..50 {
            let d = tempfile::tempdir().unwrap();
            let dir = d.path().join("state");
            let start = Arc::new(std::sync::Barrier::new(8));
            let tokens: Vec<String> = (0..8)
                .map(|_| {
                    let (dir, start) = (dir.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        file_token(&dir)
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|t| t.join().unwrap().unwrap())
                .collect();
            assert!(tokens.iter().all(|t| *t == tokens[0]), "{tokens:?}");
            let names: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, [TOKEN_FILE], "{names:?}");
            let on_disk = std::fs::read_to_string(dir.join(TOKEN_FILE)).unwrap();
            assert_eq!(on_disk.trim(), tokens[0]);
        }
    }

    #[test]
    fn without_a_state_directory_the_token_lives_for_one_run() {
        let mut c = Config::default();
        c.state.dir = String::new();
        let s = load_or_create(&c);
        assert_eq!(s.source, Source::Ephemeral);
        assert!(plausible(&s.reveal()));
    }

    #[test]
    fn a_planted_symlink_or_fifo_is_moved_aside_not_followed_or_waited_on() {
        let d = tempfile::tempdir().unwrap();
        // A line that would pass for a token, in a file the state
        // directory's owner may not read (root's, in the attack).
        let victim = d.path().join("victim");
        std::fs::write(&victim, "root-only-secret-line-0123\n").unwrap();
        let token = d.path().join(TOKEN_FILE);
        std::os::unix::fs::symlink(&victim, &token).unwrap();
        let t = file_token(d.path()).unwrap();
        assert_ne!(t, "root-only-secret-line-0123");
        assert!(std::fs::symlink_metadata(&token).unwrap().is_file());
        assert_eq!(
            std::fs::read_to_string(&victim).unwrap(),
            "root-only-secret-line-0123\n"
        );
        let kept = aside(d.path());
        assert_eq!(kept.len(), 1);
        assert!(std::fs::symlink_metadata(&kept[0])
            .unwrap()
            .file_type()
            .is_symlink());

        // A FIFO with no writer: a plain open would wait for good.
        let d = tempfile::tempdir().unwrap();
        let token = d.path().join(TOKEN_FILE);
        nix::unistd::mkfifo(&token, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let t = file_token(d.path()).unwrap();
        assert!(plausible(&t));
        assert!(std::fs::symlink_metadata(&token).unwrap().is_file());
    }

    /// What `file_token` moved aside in `dir`.
    fn aside(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                name.starts_with("control-token.corrupt-")
            })
            .collect()
    }

    #[test]
    fn unusable_tokens_are_each_kept_aside() {
        let d = tempfile::tempdir().unwrap();
        let mut tokens = Vec::new();
        for k in 0..3 {
            std::fs::write(d.path().join(TOKEN_FILE), format!("bad {k}\n")).unwrap();
            tokens.push(file_token(d.path()).unwrap());
            assert_eq!(aside(d.path()).len(), k + 1);
            assert_eq!(file_token(d.path()).unwrap(), tokens[k]);
        }
        let mut kept: Vec<String> = aside(d.path())
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        kept.sort();
        assert_eq!(kept, ["bad 0\n", "bad 1\n", "bad 2\n"]);
    }

    #[test]
    fn a_token_that_cannot_be_moved_aside_is_not_said_to_be() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join(TOKEN_FILE)).unwrap();
        // Every name of this second (and the next two, should the clock
        // tick meanwhile) already taken.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        for s in now..now + 3 {
            for n in 1..=crate::service::safe_fs::MAX_ASIDE {
                let name = match n {
                    1 => format!("{TOKEN_FILE}.corrupt-{s}"),
                    n => format!("{TOKEN_FILE}.corrupt-{s}-{n}"),
                };
                std::fs::write(d.path().join(name), "").unwrap();
            }
        }
        let e = file_token(d.path()).unwrap_err().to_string();
        assert!(e.contains("cannot be moved aside"), "{e}");
        assert!(d.path().join(TOKEN_FILE).is_dir());
    }

    /// Set in the child [`a_token_write_that_fails_leaves_no_file`] runs.
    const NO_ROOM: &str = "PHASE4_TEST_TOKEN_NO_ROOM";

    #[test]
    fn a_token_write_that_fails_leaves_no_file() {
        use std::os::unix::process::CommandExt;
        if let Some(dir) = std::env::var_os(NO_ROOM) {
            // The child: no file may grow past 0 bytes, so the write fails
            // (EFBIG, as ENOSPC would on a full disk), also for root.
            let dir = Path::new(&dir);
            assert!(file_token(dir).is_err());
            let left: Vec<_> = std::fs::read_dir(dir).unwrap().collect();
            assert!(left.is_empty(), "left behind: {left:?}");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let name = format!(
            "{}::a_token_write_that_fails_leaves_no_file",
            module_path!().split_once("::").unwrap().1
        );
        let mut child = std::process::Command::new(std::env::current_exe().unwrap());
        child
            .args(["--exact", &name, "--test-threads=1"])
            .env(NO_ROOM, d.path());
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            child.pre_exec(|| {
                let zero = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                if libc::setrlimit(libc::RLIMIT_FSIZE, &zero) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = child.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
