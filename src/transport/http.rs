//! The HTTP server for the browser UI (`p4-http`, default port 8766).
//!
//! HTTP is hyper's (1.x, HTTP/1.1 only) on a tokio current-thread runtime
//! on this one thread, with the limits of [`LIMITS`] (see
//! [`crate::transport::serve`], which the OSCQuery server shares): the
//! request head (size, header count, and a deadline for it, which also
//! bounds keep-alive idle time), requests per connection, a lifetime per
//! connection, connections in all and per address. Request bodies are never
//! read (only GET and HEAD are served).
//!
//! Serves `web/` from `ws.web-dir` when set (the packaged copy lives in
//! /usr/share/phase4/web), else the copy built into the binary, plus
//! `/ui-config.json` telling the page where the WebSocket is. A path is
//! served only if it names a file inside the folder ([`relative_path`]):
//! segments that are empty, start with a dot or hold a backslash or a `%`
//! are refused before the file system is touched, and the resolved path must
//! still lie under the folder (symlinks cannot lead out). Requests whose
//! Host is not a name of this box are refused (DNS rebinding; see
//! [`crate::transport::hosts`]).

use crate::config::WsConfig;
use crate::transport::hosts::HostCheck;
use crate::transport::http_recordings::{Access, Download, Part, DOWNLOAD_LIFETIME, STALL_TIMEOUT};
use crate::transport::serve::{self, Handler, Limits};
use crate::transport::ws::registry::Places;
use bytes::Bytes;
use http_body_util::Either;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::cell::RefCell;
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Most connections at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 64;
/// Most connections from one address (loopback excepted); more are closed.
pub const MAX_CONNECTIONS_PER_IP: usize = 16;
/// Longest wait for a whole request head, and for the next one on a
/// kept-alive connection.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a connection lives.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);
/// Largest request head (request line and headers).
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Most request headers.
pub const MAX_HEADERS: usize = 32;
/// Requests on one kept-alive connection; the last is answered with
/// `Connection: close`.
pub const MAX_REQUESTS_PER_CONNECTION: u32 = 100;
/// Requests a second from one address over all its connections, after a
/// burst of [`REQUEST_BURST`] (loopback excepted); more wait their turn.
/// A page load is a handful; an OSCQuery client reading the namespace node
/// by node a few hundred.
pub const REQUESTS_PER_S: u32 = 100;
/// Requests one address may make at once.
pub const REQUEST_BURST: u32 = 200;
/// Largest file served from `ws.web-dir`.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The UI as built into the binary: (path, bytes).
pub const EMBEDDED: &[(&str, &[u8])] = &[
    ("index.html", include_bytes!("../../web/index.html")),
    ("app.js", include_bytes!("../../web/app.js")),
    ("spectrum.js", include_bytes!("../../web/spectrum.js")),
    ("controls.js", include_bytes!("../../web/controls.js")),
    ("listen.js", include_bytes!("../../web/listen.js")),
    (
        "listen-worklet.js",
        include_bytes!("../../web/listen-worklet.js"),
    ),
    ("style.css", include_bytes!("../../web/style.css")),
    ("favicon.svg", include_bytes!("../../web/favicon.svg")),
    ("socket.js", include_bytes!("../../web/socket.js")),
    ("perf.html", include_bytes!("../../web/perf.html")),
    ("perf.js", include_bytes!("../../web/perf.js")),
    ("perf.css", include_bytes!("../../web/perf.css")),
    (
        "listen-buffer.js",
        include_bytes!("../../web/listen-buffer.js"),
    ),
    (
        "listen-paths.js",
        include_bytes!("../../web/listen-paths.js"),
    ),
    // opus-decoder (npm, MIT; libopus as WebAssembly): decodes the monitor
    // stream where WebCodecs does not exist (plain-HTTP pages, phones).
    // Provenance, checksum and licences in the LICENSE file next to it.
    (
        "vendor/opus-decoder.min.js",
        include_bytes!("../../web/vendor/opus-decoder.min.js"),
    ),
    (
        "vendor/opus-decoder.LICENSE.txt",
        include_bytes!("../../web/vendor/opus-decoder.LICENSE.txt"),
    ),
];

/// The UI's Content-Security-Policy. `'wasm-unsafe-eval'` lets the page
/// compile WebAssembly (the vendored Opus decoder, web/vendor/) and nothing
/// else: `eval` and `new Function` stay refused, scripts still come only
/// from this origin.
pub const CSP: &str = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self'; script-src 'self' 'wasm-unsafe-eval'; frame-ancestors 'none'";

/// Content type for a file name.
pub fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" | "md" => "text/plain; charset=utf-8",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// The relative file a URL path names, or `None` when it could name
/// anything outside the folder. `/` is `index.html`; a query or fragment is
/// ignored.
pub fn relative_path(url: &str) -> Option<String> {
    let path = url.split(['?', '#']).next().unwrap_or("");
    let path = path.strip_prefix('/')?;
    if path.is_empty() {
        return Some("index.html".into());
    }
    if path.len() > 512 {
        return None;
    }
    let ok = path.split('/').all(|seg| {
        !seg.is_empty()
            && !seg.starts_with('.')
            && !seg.contains(['\\', '%', '\0', ':'])
            && !seg.chars().any(|c| c.is_control())
            && seg.len() <= 128
    });
    ok.then(|| path.to_string())
}

/// Where the UI comes from.
#[derive(Clone, Debug)]
pub enum WebRoot {
    /// Files on disk (canonical folder).
    Dir(PathBuf),
    /// The copy in the binary.
    Embedded,
}

impl WebRoot {
    /// From `ws.web-dir`; a folder that does not exist falls back to the
    /// embedded copy with a warning.
    pub fn from_config(web_dir: &str) -> Self {
        if web_dir.is_empty() {
            return WebRoot::Embedded;
        }
        match std::fs::canonicalize(web_dir) {
            Ok(p) if p.is_dir() => WebRoot::Dir(p),
            _ => {
                log::info!("http: ws.web-dir {web_dir} is not a folder; serving the UI built into the binary");
                WebRoot::Embedded
            }
        }
    }

    /// The bytes of `rel` (already checked by [`relative_path`]).
    pub fn get(&self, rel: &str) -> Option<Bytes> {
        match self {
            WebRoot::Embedded => EMBEDDED
                .iter()
                .find(|(p, _)| *p == rel)
                .map(|(_, b)| Bytes::from_static(b)),
            WebRoot::Dir(root) => {
                let full = std::fs::canonicalize(root.join(rel)).ok()?;
                if !full.starts_with(root) {
                    return None;
                }
                // A FIFO, device, socket or directory is refused at once:
                // a plain open of a FIFO with no writer would hold the
                // UI server's only thread, and every client with it.
                let f = crate::service::safe_fs::open_regular(&full).ok()?;
                let meta = f.metadata().ok()?;
                if meta.len() > MAX_FILE_BYTES {
                    return None;
                }
                let mut body = Vec::with_capacity(meta.len() as usize);
                f.take(MAX_FILE_BYTES).read_to_end(&mut body).ok()?;
                Some(Bytes::from(body))
            }
        }
    }
}

/// Everything a request needs (one per server, on its thread).
struct Site {
    root: WebRoot,
    /// The WebSocket's port, for `/ui-config.json`.
    ws_port: u16,
    /// The WebSocket's places, for `/ui-config.json`'s `ws_refused`.
    places: Places,
    hosts: RefCell<HostCheck>,
    http_port: u16,
    allowed_origins: Vec<String>,
    /// Recording downloads (None: no state dir or no WebSocket).
    recordings: Option<Access>,
}

/// What [`Site::answer`] decided.
enum Answer {
    /// Status, content type, body.
    Small(StatusCode, &'static str, Bytes),
    /// A recording download.
    File(Download),
}

fn text(status: StatusCode, body: &'static str) -> Answer {
    Answer::Small(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(body.as_bytes()),
    )
}

impl Site {
    /// Status, content type and body for a request.
    fn answer<B>(&self, req: &Request<B>, peer: IpAddr) -> Answer {
        let mut hosts = self.hosts.borrow_mut();
        if let Err(why) = hosts.allowed_host(crate::transport::hosts::host_header(req.headers())) {
            crate::peer_log!(log::Level::Info, "http: refused a request: {why}");
            return text(
                StatusCode::MISDIRECTED_REQUEST,
                "this Host is not a name of this machine (ws.allowed-hosts)\n",
            );
        }
        let origin = crate::transport::hosts::single_header(req.headers(), header::ORIGIN);
        if !origin.is_ok_and(|o| hosts.origin_allowed(o, self.http_port, &self.allowed_origins)) {
            return text(StatusCode::FORBIDDEN, "origin not allowed\n");
        }
        drop(hosts);
        if req.uri().authority().is_some() {
            // absolute-form: its authority would bypass the Host check.
            return text(
                StatusCode::BAD_REQUEST,
                "absolute-form requests are not served\n",
            );
        }
        if !matches!(*req.method(), Method::GET | Method::HEAD) {
            return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        }
        if let Some(access) = &self.recordings {
            if req.uri().path().starts_with("/recordings/") {
                // Two Range (or If-Range) headers are no range: the whole
                // file, as for any range that is not one we serve.
                let one = |n| crate::transport::hosts::single_header(req.headers(), n);
                let (range, if_range) = match (one(header::RANGE), one(header::IF_RANGE)) {
                    (Ok(r), Ok(i)) => (r, i),
                    _ => (None, None),
                };
                let (path, query) = (req.uri().path(), req.uri().query());
                return match access.admit(peer, path, query, range, if_range) {
                    Ok(d) => Answer::File(d),
                    Err((status, why)) => text(status, why),
                };
            }
        }
        let Some(rel) = relative_path(req.uri().path()) else {
            return text(StatusCode::NOT_FOUND, "not found\n");
        };
        if rel == "ui-config.json" {
            // Where the WebSocket is, and why this page would be turned
            // away now if it connected to watch (null: it would not be),
            // so that it can say so instead of only "reconnecting".
            let body = serde_json::json!({
                "ws_port": self.ws_port,
                "auth_required": true,
                "ws_refused": self.places.watcher_refusal(peer),
            });
            return Answer::Small(
                StatusCode::OK,
                "application/json",
                Bytes::from(body.to_string()),
            );
        }
        match self.root.get(&rel) {
            Some(body) => Answer::Small(StatusCode::OK, content_type(&rel), body),
            None => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    /// The response: a small answer, or a recording streamed (the
    /// connection then may live for [`DOWNLOAD_LIFETIME`]).
    fn response<B>(&self, req: &Request<B>, peer: IpAddr, last: bool) -> Response<serve::Body> {
        let mut r = match self.answer(req, peer) {
            Answer::Small(status, ctype, body) => serve::response(status, ctype, body, last),
            Answer::File(d) => {
                let disposition = format!("attachment; filename=\"{}\"", d.name);
                let (status, range) = match d.part {
                    Part::Whole => (StatusCode::OK, None),
                    Part::Range(a, b) => (
                        StatusCode::PARTIAL_CONTENT,
                        Some(format!("bytes {a}-{b}/{}", d.total)),
                    ),
                    Part::Unsatisfiable => (
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        Some(format!("bytes */{}", d.total)),
                    ),
                };
                let mut r = serve::response(status, "audio/wav", Bytes::new(), last);
                let hs = r.headers_mut();
                hs.insert(header::CONTENT_LENGTH, HeaderValue::from(d.body_len()));
                hs.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
                // The room's audio, fetched with a ticket: not for a shared
                // browser cache or a proxy to keep (`no-cache` allows that).
                hs.insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("no-store, private"),
                );
                for (name, value) in [
                    (header::CONTENT_DISPOSITION, Some(disposition)),
                    (header::CONTENT_RANGE, range),
                    (header::ETAG, Some(d.etag.clone())),
                    (
                        header::LAST_MODIFIED,
                        d.last_modified.map(|m| m.to_string()),
                    ),
                ] {
                    if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                        hs.insert(name, v);
                    }
                }
                if d.part != Part::Unsatisfiable {
                    *r.body_mut() = Either::Right(d.stream());
                }
                r
            }
        };
        let hs = r.headers_mut();
        hs.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        hs.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        r
    }
}

impl Handler for Site {
    fn respond(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        last: bool,
    ) -> Response<serve::Body> {
        self.response(&req, peer.ip(), last)
    }
}

/// What the UI server allows ([`crate::transport::serve`]); the OSCQuery
/// server holds to the same.
pub const LIMITS: Limits = Limits {
    max_connections: MAX_CONNECTIONS,
    max_per_ip: MAX_CONNECTIONS_PER_IP,
    header_timeout: HEADER_TIMEOUT,
    lifetime: CONNECTION_LIFETIME,
    stream_lifetime: DOWNLOAD_LIFETIME,
    stream_stall: STALL_TIMEOUT,
    max_header_bytes: MAX_HEADER_BYTES,
    max_headers: MAX_HEADERS,
    max_requests: MAX_REQUESTS_PER_CONNECTION,
    requests_per_s: REQUESTS_PER_S,
    request_burst: REQUEST_BURST,
};

/// Bind the UI port and start the server thread. Binding happens here, so
/// a taken port is a start-up error.
/// `recordings`: where downloads come from (None: no downloads).
pub fn spawn(
    ws: &WsConfig,
    recordings: Option<Access>,
    places: Places,
    stop: Arc<AtomicBool>,
    stop_fd: crate::rt::StopFd,
) -> std::io::Result<JoinHandle<()>> {
    let listener = crate::transport::bind::tcp(&ws.bind, ws.http_port, "http")?;
    let root = WebRoot::from_config(&ws.web_dir);
    log::info!(
        "http: UI on http://{}:{}/ from {}",
        ws.bind,
        ws.http_port,
        match &root {
            WebRoot::Dir(p) => p.display().to_string(),
            WebRoot::Embedded => "the copy built into the binary".into(),
        }
    );
    let ws_port = ws.port;
    let (allowed_hosts, bind, http_port, allowed_origins) = (
        ws.allowed_hosts.clone(),
        ws.bind.clone(),
        ws.http_port,
        ws.allowed_origins.clone(),
    );
    serve::spawn(
        "p4-http",
        "http",
        listener,
        LIMITS,
        stop,
        Some(stop_fd),
        move || Site {
            root,
            ws_port,
            places,
            hosts: RefCell::new(HostCheck::new(&allowed_hosts, &bind)),
            http_port,
            allowed_origins,
            recordings,
        },
    )
}

/// Whether `p` (inside a folder) is listed in [`EMBEDDED`] (for a test
/// that keeps the embedded copy complete).
pub fn is_embedded(p: &Path) -> bool {
    EMBEDDED.iter().any(|(e, _)| Path::new(e) == p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_could_escape_are_refused() {
        for bad in [
            "/../etc/passwd",
            "/a/../../x",
            "/%2e%2e/x",
            "/.hidden",
            "//etc/passwd",
            "/a//b",
            "/x\\..\\y",
            "relative",
            "/C:/x",
            "/a\u{1}b",
        ] {
            assert_eq!(relative_path(bad), None, "{bad}");
        }
        assert_eq!(relative_path("/"), Some("index.html".into()));
        assert_eq!(relative_path("/app.js?v=1"), Some("app.js".into()));
    }

    #[test]
    fn a_fifo_or_folder_in_web_dir_is_not_found_at_once() {
        use std::os::unix::fs::OpenOptionsExt;
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("index.html"), "<p>hi</p>").unwrap();
        let fifo = d.path().join("fifo.html");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        std::fs::create_dir(d.path().join("sub.html")).unwrap();
        let root = WebRoot::from_config(d.path().to_str().unwrap());
        assert!(matches!(root, WebRoot::Dir(_)));
        // On a thread: a blocking open of a FIFO with no writer never
        // returns, and the test must fail rather than hang.
        let (tx, rx) = std::sync::mpsc::channel();
        let r = root.clone();
        std::thread::spawn(move || {
            let _ = tx.send(["fifo.html", "sub.html", "index.html"].map(|p| r.get(p)));
        });
        let Ok([fifo_body, dir_body, index]) = rx.recv_timeout(std::time::Duration::from_secs(5))
        else {
            // Let the stuck open return so the thread ends, then fail.
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&fifo);
            panic!("WebRoot::get waited on a FIFO in web-dir");
        };
        assert_eq!(fifo_body, None);
        assert_eq!(dir_body, None);
        assert_eq!(index, Some(Bytes::from_static(b"<p>hi</p>")));
    }

    #[test]
    fn the_embedded_copy_holds_every_file_in_web() {
        let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
        let mut dirs = vec![web.clone()];
        let mut files = 0;
        while let Some(dir) = dirs.pop() {
            for e in std::fs::read_dir(dir).unwrap() {
                let path = e.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let rel = path.strip_prefix(&web).unwrap();
                assert!(is_embedded(rel), "{rel:?} is not in EMBEDDED");
                files += 1;
            }
        }
        assert_eq!(files, EMBEDDED.len(), "EMBEDDED names a file web/ lacks");
    }

    #[test]
    fn the_embedded_opus_decoder_is_the_vendored_one() {
        // What scripts/vendor-opus-decoder.sh pins; the same bytes on disk.
        let js = WebRoot::Embedded.get("vendor/opus-decoder.min.js").unwrap();
        let disk = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("web/vendor/opus-decoder.min.js"),
        )
        .unwrap();
        assert_eq!(js, Bytes::from(disk));
        assert!(js.starts_with(b"/* Copyright 2021-2026 Ethan Halsall."));
        assert_eq!(
            content_type("vendor/opus-decoder.min.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            content_type("vendor/opus-decoder.LICENSE.txt"),
            "text/plain; charset=utf-8"
        );
    }

    #[test]
    fn the_policy_allows_webassembly_and_no_eval() {
        let script = CSP
            .split(';')
            .map(str::trim)
            .find(|d| d.starts_with("script-src "))
            .unwrap();
        assert_eq!(script, "script-src 'self' 'wasm-unsafe-eval'");
        assert!(!CSP.contains("'unsafe-eval'") && !CSP.contains("'unsafe-inline'"));
    }

    #[test]
    fn a_folder_root_does_not_serve_outside_itself() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("web")).unwrap();
        std::fs::write(d.path().join("secret"), "x").unwrap();
        std::fs::write(d.path().join("web/index.html"), "hi").unwrap();
        std::os::unix::fs::symlink(d.path().join("secret"), d.path().join("web/link")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", d.path().join("web/zero")).unwrap();
        let root = WebRoot::from_config(&d.path().join("web").display().to_string());
        assert_eq!(root.get("index.html"), Some(Bytes::from_static(b"hi")));
        assert_eq!(root.get("link"), None);
        assert_eq!(root.get("zero"), None);
        assert_eq!(root.get("missing"), None);
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("style.css"), "text/css; charset=utf-8");
    }
}
