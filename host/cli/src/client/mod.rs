//! The client side of the control plane: one blocking HTTP client (ureq)
//! that authenticates, streams uploads from disk with a digest computed
//! beforehand, and turns every answer into JSON or a [`CliError`] carrying
//! the server's own message. The commands built on it are in [`commands`];
//! publishing a local gate file is in [`gate_publish`].

pub(crate) mod admin;
pub(crate) mod commands;
pub(crate) mod gate_publish;
pub(crate) mod human;
pub(crate) mod runs;
pub(crate) mod serving;
pub(crate) mod submit;

use crate::args::Remote;
use crate::exit::CliError;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Largest JSON answer read (attestations, reports and audit pages are far
/// smaller).
const MAX_ANSWER_BYTES: u64 = 64 << 20;

/// Uploads above this size show a progress bar (on a terminal).
const PROGRESS_ABOVE: u64 = 1 << 20;

/// What a command that needs a token and found none says.
pub(crate) const NO_TOKEN: &str = "no API token given: pass --token TOKEN or --token-file FILE, or set AIRLOCK_TOKEN or AIRLOCK_TOKEN_FILE (the server wrote the first admin's to <data-dir>/admin.token)";

/// A connection to one server with one token.
pub(crate) struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// Percent-encodes one path segment (names the server checks itself).
pub(crate) fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The token: `--token`, else `--token-file`, else `$AIRLOCK_TOKEN`, else
/// the file named by `$AIRLOCK_TOKEN_FILE`; none is allowed (the server
/// answers 401 where one is needed).
fn token(remote: &Remote) -> Result<Option<String>, CliError> {
    let read = |p: &Path| {
        let t = std::fs::read_to_string(p)
            .map_err(|e| CliError::input(format!("cannot read token file {}: {e}", p.display())))?;
        let t = t.trim().to_string();
        if t.is_empty() {
            return Err(CliError::input(format!(
                "token file {} is empty",
                p.display()
            )));
        }
        Ok(Some(t))
    };
    if let Some(t) = &remote.token {
        return Ok(Some(t.trim().to_string()));
    }
    if let Some(p) = &remote.token_file {
        return read(p);
    }
    if let Some(t) = std::env::var("AIRLOCK_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
    {
        return Ok(Some(t.trim().to_string()));
    }
    match std::env::var_os("AIRLOCK_TOKEN_FILE").filter(|p| !p.is_empty()) {
        Some(p) => read(Path::new(&p)),
        None => Ok(None),
    }
}

impl Client {
    /// A client for `remote`'s server and token; a URL that is not
    /// `http(s)://host[:port]` is refused here, naming it.
    pub(crate) fn new(remote: &Remote) -> Result<Client, CliError> {
        let base = remote.server.trim_end_matches('/').to_string();
        let rest = base
            .strip_prefix("http://")
            .or_else(|| base.strip_prefix("https://"));
        match rest {
            Some(host) if !host.is_empty() && !host.contains(['/', '?', '#', ' ']) => {}
            _ => {
                return Err(CliError::input(format!(
                    "--server {:?} is not a server URL (expected http://HOST:PORT or https://HOST:PORT)",
                    remote.server
                )));
            }
        }
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(std::time::Duration::from_secs(10)))
            .build();
        Ok(Client {
            base,
            token: token(remote)?,
            agent: ureq::Agent::new_with_config(config),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn auth<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(t) => req.header("Authorization", format!("Bearer {t}")),
            None => req,
        }
    }

    /// Reads an answer: 2xx → (status, JSON); otherwise the server's error.
    fn answer(
        &self,
        sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<(u16, Value), CliError> {
        let resp = sent.map_err(|e| self.unreachable(e))?;
        let status = resp.status().as_u16();
        let text = resp
            .into_body()
            .into_with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_string()
            .map_err(|e| self.unreachable(e))?;
        let json: Option<Value> = serde_json::from_str(&text).ok();
        if (200..300).contains(&status) {
            return match json {
                Some(v) => Ok((status, v)),
                None if text.trim().is_empty() => Ok((status, Value::Null)),
                None => Err(CliError::input(format!(
                    "the server at {} answered {status} with something that is not JSON",
                    self.base
                ))),
            };
        }
        if status == 401 && self.token.is_none() {
            // The server can only say "send a header"; the CLI knows where
            // a token comes from.
            return Err(CliError::Server {
                status,
                code: "unauthorized".into(),
                message: NO_TOKEN.into(),
            });
        }
        let err = json.as_ref().and_then(|j| j.get("error"));
        let field = |k: &str| err.and_then(|e| e.get(k)).and_then(Value::as_str);
        // The inference protocol's errors are `{"error": "message"}`.
        let plain = err.and_then(Value::as_str);
        Err(CliError::Server {
            status,
            code: field("code")
                .unwrap_or(if plain.is_some() { "error" } else { "http" })
                .to_string(),
            message: field("message")
                .or(plain)
                .map(str::to_string)
                .unwrap_or_else(|| {
                    let t: String = text.trim().chars().take(200).collect();
                    if t.is_empty() {
                        format!("{} answered HTTP {status}", self.base)
                    } else {
                        format!("{} answered HTTP {status}: {t}", self.base)
                    }
                }),
        })
    }

    fn unreachable(&self, e: ureq::Error) -> CliError {
        CliError::input(format!("cannot reach the server at {}: {e}", self.base))
    }

    /// `GET path?query`.
    pub(crate) fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, CliError> {
        let mut req = self.auth(self.agent.get(self.url(path)));
        for (k, v) in query {
            req = req.query(*k, v);
        }
        Ok(self.answer(req.call())?.1)
    }

    /// Every item of a paged list (`{items, next}`), following `next`.
    pub(crate) fn get_all(&self, path: &str) -> Result<Vec<Value>, CliError> {
        let mut items = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut query = vec![("limit", "500".to_string())];
            if let Some(a) = &after {
                query.push(("after", a.clone()));
            }
            let page = self.get(path, &query)?;
            if let Some(a) = page["items"].as_array() {
                items.extend(a.iter().cloned());
            }
            match page["next"].as_str() {
                Some(n) if Some(n) != after.as_deref() => after = Some(n.to_string()),
                _ => return Ok(items),
            }
        }
    }

    /// `method path` with a JSON body; returns the status too (201 created
    /// vs 200 already there).
    pub(crate) fn send_json(
        &self,
        method: &str,
        path: &str,
        body: &Value,
    ) -> Result<(u16, Value), CliError> {
        let url = self.url(path);
        let req = match method {
            "POST" => self.agent.post(url),
            "PUT" => self.agent.put(url),
            other => unreachable!("no JSON body is sent with {other}"),
        };
        self.answer(self.auth(req).send_json(body))
    }

    /// `method path` with `body`, JSON text sent byte for byte (so that a
    /// position in the server's error points into the user's file).
    pub(crate) fn send_raw_json(
        &self,
        method: &str,
        path: &str,
        body: String,
    ) -> Result<(u16, Value), CliError> {
        let url = self.url(path);
        let req = match method {
            "POST" => self.agent.post(url),
            "PUT" => self.agent.put(url),
            other => unreachable!("no JSON body is sent with {other}"),
        };
        self.answer(
            self.auth(req)
                .header("Content-Type", "application/json")
                .send(body),
        )
    }

    /// `POST path` without a body.
    pub(crate) fn post_empty(&self, path: &str) -> Result<Value, CliError> {
        Ok(self
            .answer(self.auth(self.agent.post(self.url(path))).send_empty())?
            .1)
    }

    /// `DELETE path`.
    pub(crate) fn delete(&self, path: &str) -> Result<Value, CliError> {
        Ok(self
            .answer(self.auth(self.agent.delete(self.url(path))).call())?
            .1)
    }

    /// Uploads `file` (opened from `what`) to `/v1/blobs`, streaming it
    /// twice: once to compute the digest the server must find, once to send.
    /// Returns the stored digest and whether it was new.
    pub(crate) fn upload(
        &self,
        mut file: std::fs::File,
        what: &str,
    ) -> Result<(String, bool), CliError> {
        let io = |e: std::io::Error| CliError::input(format!("reading {what}: {e}"));
        let size = file.metadata().map_err(io)?.len();
        // From the start, whatever wrote the file last (a packed bundle).
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        let digest = format!("sha256:{}", sha256_of(&mut file).map_err(io)?);
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        let bar = progress_bar(size, what);
        let mut reader = Progress {
            inner: file,
            bar: &bar,
        };
        let sent = self
            .auth(self.agent.post(self.url("/v1/blobs")))
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", size.to_string())
            .header("X-Airlock-Digest", &digest)
            .send(ureq::SendBody::from_reader(&mut reader));
        bar.finish_and_clear();
        let (status, answer) = self.answer(sent)?;
        let stored = answer["digest"].as_str().unwrap_or_default();
        if stored != digest {
            return Err(CliError::input(format!(
                "uploading {what}: the server stored {stored:?}, not {digest}"
            )));
        }
        Ok((digest, status == 201))
    }

    /// Uploads the file at `path`.
    pub(crate) fn upload_path(&self, path: &Path) -> Result<(String, bool), CliError> {
        let file = std::fs::File::open(path)
            .map_err(|e| CliError::input(format!("cannot read {}: {e}", path.display())))?;
        if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
            return Err(CliError::input(format!(
                "{} is a directory, not a file",
                path.display()
            )));
        }
        self.upload(file, &path.display().to_string())
    }
}

/// sha256 of everything `r` yields, hex.
fn sha256_of(r: &mut impl Read) -> std::io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

/// A progress bar on stderr for uploads above 1 MiB when stderr is a
/// terminal; hidden otherwise.
fn progress_bar(size: u64, what: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if size <= PROGRESS_ABOVE || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(size),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    let name = Path::new(what)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| what.to_string());
    bar.set_message(format!("uploading {name}"));
    bar
}

/// A reader that advances a progress bar.
struct Progress<'a, R> {
    inner: R,
    bar: &'a indicatif::ProgressBar,
}

impl<R: Read> Read for Progress<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(server: &str) -> Remote {
        Remote {
            server: server.into(),
            token: Some("t".into()),
            token_file: None,
            json: false,
        }
    }

    #[test]
    fn urls_are_checked_and_segments_encoded() {
        for bad in ["localhost:8470", "ftp://x", "http://", "http://a/b", "x y"] {
            let Err(CliError::Input(m)) = Client::new(&remote(bad)) else {
                panic!("{bad} accepted");
            };
            assert!(m.contains(&format!("{bad:?}")), "{m}");
        }
        let c = Client::new(&remote("http://127.0.0.1:9/")).unwrap();
        assert_eq!(c.url("/v1/models"), "http://127.0.0.1:9/v1/models");
        assert_eq!(seg("a b/c?d"), "a%20b%2Fc%3Fd");
        assert_eq!(seg("m@1.0.0"), "m@1.0.0");
    }

    #[test]
    fn an_unreachable_server_is_an_input_error_naming_the_url() {
        // A port that was free a moment ago: nothing listens there.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let c = Client::new(&remote(&format!("http://{addr}"))).unwrap();
        let e = c.get("/v1/models", &[]).unwrap_err();
        let CliError::Input(m) = &e else {
            panic!("{e:?}")
        };
        assert!(
            m.starts_with(&format!("cannot reach the server at http://{addr}")),
            "{m}"
        );
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn the_digest_is_computed_by_streaming() {
        let mut r = std::io::Cursor::new(b"abc".to_vec());
        assert_eq!(
            sha256_of(&mut r).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
