//! The HTTP server for the browser UI (`p4-http`, default port 8766), on
//! `tiny_http` (no hand-written HTTP parsing).
//!
//! Serves `web/` from `ws.web-dir` when set (the packaged copy lives in
//! /usr/share/phase4/web), else the copy built into the binary, plus
//! `/ui-config.json` telling the page where the WebSocket is. Only GET and
//! HEAD; a path is served only if it names a file inside the folder:
//! segments that are empty, start with a dot or hold a backslash or a `%`
//! are refused before the file system is touched, and the resolved path
//! must still lie under the folder (symlinks cannot lead out).

use crate::config::WsConfig;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tiny_http::{Header, Method, Response, Server};

/// The UI as built into the binary: (path, bytes).
pub const EMBEDDED: &[(&str, &[u8])] = &[
    ("index.html", include_bytes!("../../web/index.html")),
    ("app.js", include_bytes!("../../web/app.js")),
    ("spectrum.js", include_bytes!("../../web/spectrum.js")),
    ("controls.js", include_bytes!("../../web/controls.js")),
    ("style.css", include_bytes!("../../web/style.css")),
    ("favicon.svg", include_bytes!("../../web/favicon.svg")),
];

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

/// The relative file a URL names, or `None` when it could name anything
/// outside the folder. `/` is `index.html`; the query is ignored.
pub fn relative_path(url: &str) -> Option<String> {
    let path = url.split(['?', '#']).next().unwrap_or("");
    let path = path.strip_prefix('/')?;
    if path.is_empty() {
        return Some("index.html".into());
    }
    let ok = path.split('/').all(|seg| {
        !seg.is_empty()
            && !seg.starts_with('.')
            && !seg.contains(['\\', '%', '\0', ':'])
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
    pub fn get(&self, rel: &str) -> Option<Vec<u8>> {
        match self {
            WebRoot::Embedded => EMBEDDED
                .iter()
                .find(|(p, _)| *p == rel)
                .map(|(_, b)| b.to_vec()),
            WebRoot::Dir(root) => {
                let full = std::fs::canonicalize(root.join(rel)).ok()?;
                if !full.starts_with(root) || !full.is_file() {
                    return None;
                }
                std::fs::read(full).ok()
            }
        }
    }
}

fn header(k: &str, v: &str) -> Header {
    Header::from_bytes(k.as_bytes(), v.as_bytes()).expect("static header")
}

fn respond(req: tiny_http::Request, status: u16, ctype: &str, body: Vec<u8>) {
    let head = *req.method() == Method::Head;
    let len = body.len();
    let mut r = Response::from_data(if head { Vec::new() } else { body })
        .with_status_code(status)
        .with_header(header("Content-Type", ctype))
        .with_header(header("X-Content-Type-Options", "nosniff"))
        .with_header(header("Cache-Control", "no-cache"))
        .with_header(header("Referrer-Policy", "no-referrer"))
        .with_header(header(
            "Content-Security-Policy",
            "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
        ));
    if head {
        r.add_header(header("Content-Length", &len.to_string()));
    }
    let _ = req.respond(r);
}

/// Answer one request.
fn serve(req: tiny_http::Request, root: &WebRoot, ui_config: &str) {
    if !matches!(req.method(), Method::Get | Method::Head) {
        return respond(
            req,
            405,
            "text/plain; charset=utf-8",
            b"method not allowed\n".to_vec(),
        );
    }
    let Some(rel) = relative_path(req.url()) else {
        return respond(
            req,
            404,
            "text/plain; charset=utf-8",
            b"not found\n".to_vec(),
        );
    };
    if rel == "ui-config.json" {
        return respond(req, 200, "application/json", ui_config.as_bytes().to_vec());
    }
    match root.get(&rel) {
        Some(body) => respond(req, 200, content_type(&rel), body),
        None => respond(
            req,
            404,
            "text/plain; charset=utf-8",
            b"not found\n".to_vec(),
        ),
    }
}

/// Bind the UI port and start the server thread.
pub fn spawn(ws: &WsConfig, stop: Arc<AtomicBool>) -> std::io::Result<JoinHandle<()>> {
    let addr = (ws.bind.as_str(), ws.http_port);
    let server = Server::http(addr)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::AddrInUse, e.to_string()))?;
    let root = WebRoot::from_config(&ws.web_dir);
    let ui_config = serde_json::json!({
        "ws_port": ws.port,
        "auth_required": !ws.token.is_empty(),
    })
    .to_string();
    log::info!(
        "http: UI on http://{}:{}/ from {}",
        ws.bind,
        ws.http_port,
        match &root {
            WebRoot::Dir(p) => p.display().to_string(),
            WebRoot::Embedded => "the copy built into the binary".into(),
        }
    );
    std::thread::Builder::new()
        .stack_size(crate::rt::THREAD_STACK)
        .name("p4-http".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match server.recv_timeout(Duration::from_millis(200)) {
                    Ok(Some(req)) => serve(req, &root, &ui_config),
                    Ok(None) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        })
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
        ] {
            assert_eq!(relative_path(bad), None, "{bad}");
        }
        assert_eq!(relative_path("/"), Some("index.html".into()));
        assert_eq!(relative_path("/app.js?v=1"), Some("app.js".into()));
    }

    #[test]
    fn the_embedded_copy_holds_every_file_in_web() {
        let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
        for e in std::fs::read_dir(web).unwrap() {
            let name = e.unwrap().file_name();
            assert!(is_embedded(Path::new(&name)), "{name:?} is not in EMBEDDED");
        }
    }

    #[test]
    fn a_folder_root_does_not_serve_outside_itself() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("web")).unwrap();
        std::fs::write(d.path().join("secret"), "x").unwrap();
        std::fs::write(d.path().join("web/index.html"), "hi").unwrap();
        std::os::unix::fs::symlink(d.path().join("secret"), d.path().join("web/link")).unwrap();
        let root = WebRoot::from_config(&d.path().join("web").display().to_string());
        assert_eq!(root.get("index.html"), Some(b"hi".to_vec()));
        assert_eq!(root.get("link"), None);
        assert_eq!(root.get("missing"), None);
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("style.css"), "text/css; charset=utf-8");
    }
}
