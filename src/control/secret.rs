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
use crate::rt::StopFd;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

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
pub fn file_token(dir: &Path) -> std::io::Result<String> {
    let path = dir.join(TOKEN_FILE);
    match read_token(&path) {
        Ok(Some(t)) => return Ok(t),
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
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_token(&path)?
            .ok_or_else(|| std::io::Error::other(format!("{} came and went", path.display()))),
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

/// How often a running service looks at its token file ([`keep`]).
pub const KEEP_EVERY: Duration = Duration::from_secs(10);

/// What a look at the token file found that was worth saying.
#[derive(Debug, PartialEq, Eq)]
enum Kept {
    /// The file holds the token in force.
    Same,
    /// The file was gone: the token in force was written back.
    WrittenBack,
    /// The file holds another usable token, in force from now on.
    Adopted,
    /// Neither (unreadable, malformed, cannot be written): the token in
    /// force is unchanged.
    Problem(String),
}

/// Keep the token file and the token in force the same while the service
/// runs, looking every [`KEEP_EVERY`] on a thread of its own (the disk may
/// be a slow SD card: never the supervisor, whose watchdog pings must not
/// wait on it). A file deleted (with the state directory or alone) is
/// written back, so that `phase4 token` shows the token in force; a file
/// that holds another usable token (`phase4 token` made one after a
/// deletion, or the administrator wrote one) becomes the token in force for
/// every door. Before (tester aa T1) the service kept the token it started
/// with, and `phase4 token` then printed a new one it refused. Clients
/// already allowed stay allowed until they reconnect. Nothing to do for a
/// token from `ws.token` or one kept for this run only.
pub fn keep(secret: &Secret, stop: StopFd) -> std::io::Result<Option<JoinHandle<()>>> {
    let Source::File(path) = &secret.source else {
        return Ok(None);
    };
    let (secret, path) = (secret.clone(), path.clone());
    let mut known = path.parent().and_then(dir_id);
    let thread = std::thread::Builder::new()
        .stack_size(crate::rt::THREAD_STACK)
        .name("p4-token".into())
        .spawn(move || {
            let mut said: Option<String> = None;
            while !stopped_within(&stop, KEEP_EVERY) {
                let mut kept = look(&secret, &path, &mut known);
                if matches!(kept, Kept::Problem(_)) && !stopped_within(&stop, Duration::from_secs(1)) {
                    // Perhaps caught while `phase4 token` writes it.
                    kept = look(&secret, &path, &mut known);
                }
                match kept {
                    Kept::Same => {
                        if said.take().is_some() {
                            log::info!("ws: {} holds the control token in force again", path.display());
                        }
                    }
                    Kept::WrittenBack => {
                        said = None;
                        log::warn!(
                            "ws: {} was gone; the control token in force was written back",
                            path.display()
                        );
                    }
                    Kept::Adopted => {
                        said = None;
                        log::warn!(
                            "ws: {} holds another control token; it is the one in force from now on \
                             (clients already allowed stay so until they reconnect)",
                            path.display()
                        );
                    }
                    Kept::Problem(why) => {
                        if said.as_deref() != Some(why.as_str()) {
                            log::warn!(
                                "ws: {}: {why}; the control token in force is unchanged",
                                path.display()
                            );
                            said = Some(why);
                        }
                    }
                }
            }
        })?;
    Ok(Some(thread))
}

/// A directory's (device, inode, owner). The owner too: a directory
/// deleted and made again may get the same inode number back (ci92 saw
/// it), but one another user made is theirs.
type DirId = (u64, u64, u32);

fn dir_id(dir: &Path) -> Option<DirId> {
    std::fs::metadata(dir)
        .ok()
        .map(|m| (m.dev(), m.ino(), m.uid()))
}

/// Whether a file or directory owned by `uid` may be trusted with the
/// token: this process's user's or root's.
fn trusted_owner(uid: u32) -> bool {
    uid == 0 || uid == nix::unistd::geteuid().as_raw()
}

/// Whether a state directory that is gone may be made again: its nearest
/// existing ancestor is this user's or root's, and no one else may write
/// there (who could, could make the directory first).
fn may_make_again(dir: &Path) -> bool {
    dir.ancestors()
        .skip(1)
        .find_map(|a| std::fs::metadata(a).ok())
        .is_some_and(|m| trusted_owner(m.uid()) && m.mode() & 0o022 == 0)
}

/// Whether `stop` fired within `wait`.
fn stopped_within(stop: &StopFd, wait: Duration) -> bool {
    use nix::poll::{poll, PollFd, PollFlags};
    use std::os::fd::AsFd;
    let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(stop.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, ms), Ok(1))
}

/// One look at the token file, putting right what it can.
/// Only the state directory phase4 started with, or one it made again
/// itself, is written to or read from: a directory another local user
/// made in its place (its parent is `/tmp`, or a tmp cleaner removed it)
/// would be given the token in force, and could hand phase4 theirs
/// (review ae AE3). `known` is that directory's [`DirId`].
fn look(secret: &Secret, path: &Path, known: &mut Option<DirId>) -> Kept {
    let Some(dir) = path.parent() else {
        return Kept::Problem("no directory".into());
    };
    match (dir_id(dir), *known) {
        (Some(now), Some(was)) if now != was => {
            return Kept::Problem(
                "its directory is not the one phase4 started with (made again, or replaced); \
                 restart the service to keep a token there"
                    .into(),
            )
        }
        (None, _) if !may_make_again(dir) => {
            return Kept::Problem(
                "gone with its directory, whose parent others may write to: not made again; \
                 restart the service to keep a token there"
                    .into(),
            )
        }
        _ => {}
    }
    match read_token(path) {
        Ok(Some(t)) if *secret.token() == t => Kept::Same,
        Ok(Some(t)) => match std::fs::symlink_metadata(path) {
            Ok(m) if trusted_owner(m.uid()) => {
                *secret.token.write().unwrap_or_else(|e| e.into_inner()) = t;
                Kept::Adopted
            }
            Ok(m) => Kept::Problem(format!(
                "holds another token, but belongs to uid {}: not taken",
                m.uid()
            )),
            Err(e) => Kept::Problem(e.to_string()),
        },
        Ok(None) => {
            match write_token(dir, &secret.token()) {
                Ok(()) => {
                    *known = dir_id(dir);
                    Kept::WrittenBack
                }
                // Made meanwhile (`phase4 token`): the next look reads it.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Kept::Same,
                Err(e) => Kept::Problem(format!("gone, and cannot be written back: {e}")),
            }
        }
        Err(e) => Kept::Problem(format!("not a usable token ({e})")),
    }
}

fn read_token(path: &Path) -> std::io::Result<Option<String>> {
    // Not through a symlink (root running `phase4 token` would print a
    // line of any file) and never waiting on a FIFO: those are refused as
    // InvalidData and moved aside.
    let f = match crate::service::safe_fs::open_regular(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
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
    Ok(Some(t.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

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
    fn a_running_service_keeps_its_token_file_and_the_token_in_force_the_same() {
        // Tester aa T1: the state directory deleted while running; the
        // service kept its token, and `phase4 token` made one it refused.
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("state");
        let mut c = Config::default();
        c.state.dir = dir.display().to_string();
        let s = load_or_create(&c);
        let door = s.clone();
        let Source::File(path) = s.source.clone() else {
            panic!("{:?}", s.source)
        };
        let first = s.reveal();
        let mut known = dir_id(&dir);
        assert_eq!(look(&s, &path, &mut known), Kept::Same);
        // Deleted with its directory: written back, private, the same.
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(look(&s, &path, &mut known), Kept::WrittenBack);
        assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), first);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(look(&s, &path, &mut known), Kept::Same);
        // Deleted, then `phase4 token` made a new one first: that one is in
        // force, at every door.
        std::fs::remove_file(&path).unwrap();
        let made = file_token(&dir).unwrap();
        assert_ne!(made, first);
        assert_eq!(look(&s, &path, &mut known), Kept::Adopted);
        assert!(door.matches(&made) && !door.matches(&first));
        // A file that is no token changes nothing and is left for the
        // administrator (the next start moves it aside).
        std::fs::write(&path, "x\n").unwrap();
        assert!(matches!(look(&s, &path, &mut known), Kept::Problem(_)));
        assert!(door.matches(&made));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "x\n");

        // Review ae AE3: a directory another user made in its place is
        // neither written to nor read from (only root can make one of
        // another user's here; the inode number may come back).
        if nix::unistd::geteuid().is_root() {
            std::fs::remove_dir_all(&dir).unwrap();
            std::fs::create_dir(&dir).unwrap();
            std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
            assert!(
                matches!(look(&s, &path, &mut known), Kept::Problem(w) if w.contains("not the one"))
            );
            assert!(!path.exists());
            std::fs::write(&path, "planted-token-0123456789\n").unwrap();
            assert!(matches!(look(&s, &path, &mut known), Kept::Problem(_)));
            assert!(door.matches(&made) && !door.matches("planted-token-0123456789"));
            std::os::unix::fs::chown(&dir, Some(0), Some(0)).unwrap();
        }
        // Gone, under a parent others may write to: not made again.
        let open = d.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let (odir, opath) = (open.join("state"), open.join("state").join(TOKEN_FILE));
        std::fs::create_dir(&odir).unwrap();
        let mut oknown = dir_id(&odir);
        std::fs::remove_dir(&odir).unwrap();
        assert!(
            matches!(look(&s, &opath, &mut oknown), Kept::Problem(w) if w.contains("others may write"))
        );
        assert!(!odir.exists());
        // A token file of another user is not taken.
        if nix::unistd::geteuid().is_root() {
            let mut known = dir_id(&dir);
            std::fs::remove_file(&path).unwrap();
            let _ = look(&s, &path, &mut known);
            let mut known = dir_id(&dir);
            std::fs::remove_file(&path).unwrap();
            std::fs::write(&path, "someone-elses-token-0123\n").unwrap();
            std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
            assert!(
                matches!(look(&s, &path, &mut known), Kept::Problem(w) if w.contains("uid 65534"))
            );
            assert!(door.matches(&made));
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
