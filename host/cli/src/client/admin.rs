//! Tokens, the server's signing keys and the audit log from the command
//! line: `token create | list | rotate | revoke`, `server-keys [rotate]`,
//! `audit log` (newest first, paged).

use super::Client;
use super::commands::{print_json, table, text};
use super::seg;
use crate::args::Remote;
use crate::exit::CliError;
use crate::terminal::escape_untrusted as esc;
use serde_json::{Map, json};
use std::path::{Path, PathBuf};

/// `airlock token create`: the secret goes to stdout alone, so that
/// `T=$(airlock token create ...)` captures just it.
pub(crate) fn token_create(
    remote: &Remote,
    subject: &str,
    role: &str,
    models: &[String],
    aliases: &[String],
    ttl: Option<u64>,
) -> Result<(), CliError> {
    let mut scope = Map::new();
    if !models.is_empty() {
        scope.insert("models".into(), json!(models));
    }
    if !aliases.is_empty() {
        scope.insert("aliases".into(), json!(aliases));
    }
    let (_, v) = Client::new(remote)?.send_json(
        "POST",
        "/v1/tokens",
        &json!({ "subject": subject, "role": role, "scope": scope, "ttl_seconds": ttl }),
    )?;
    if remote.json {
        print_json(&v);
    } else {
        eprintln!(
            "token {} for {} ({}), expires {}; it is shown only now",
            text(&v["id"]),
            text(&v["subject"]),
            text(&v["role"]),
            super::human::unix_time(&v["expires_at"])
        );
        out!("{}", text(&v["token"]));
    }
    Ok(())
}

/// `airlock token list`.
pub(crate) fn token_list(remote: &Remote) -> Result<(), CliError> {
    let v = Client::new(remote)?.get("/v1/tokens", &[])?;
    if remote.json {
        print_json(&v);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let scope = &t["scope"];
            let list = |k: &str| {
                scope[k].as_array().map_or("all".to_string(), |a| {
                    a.iter().map(text).collect::<Vec<_>>().join(",")
                })
            };
            vec![
                text(&t["id"]),
                text(&t["subject"]),
                text(&t["role"]),
                list("models"),
                list("aliases"),
                super::human::unix_time(&t["expires_at"]),
                super::human::unix_time(&t["revoked_at"]),
            ]
        })
        .collect();
    table(
        &[
            "ID", "SUBJECT", "ROLE", "MODELS", "ALIASES", "EXPIRES", "REVOKED",
        ],
        &rows,
    );
    Ok(())
}

/// `airlock token rotate`.
pub(crate) fn token_rotate(remote: &Remote, id: &str) -> Result<(), CliError> {
    let v = Client::new(remote)?.post_empty(&format!("/v1/tokens/{}/rotate", seg(id)))?;
    if remote.json {
        print_json(&v);
    } else {
        eprintln!(
            "token {} rotated: the old secret no longer works; the new one is shown only now",
            text(&v["id"])
        );
        out!("{}", text(&v["token"]));
    }
    Ok(())
}

/// `airlock token revoke`.
pub(crate) fn token_revoke(remote: &Remote, id: &str) -> Result<(), CliError> {
    let v = Client::new(remote)?.delete(&format!("/v1/tokens/{}", seg(id)))?;
    if remote.json {
        print_json(&v);
    } else {
        out!("token {} revoked", text(&v["id"]));
    }
    Ok(())
}

/// `airlock keys [--out DIR]`.
pub(crate) fn keys(remote: &Remote, out_dir: Option<&Path>) -> Result<(), CliError> {
    let v = Client::new(remote)?.get("/v1/keys", &[])?;
    let items = v["items"].as_array().cloned().unwrap_or_default();
    let mut written: Vec<PathBuf> = Vec::new();
    if let Some(dir) = out_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::input(format!("cannot create {}: {e}", dir.display())))?;
        for k in &items {
            let id = k["key_id"].as_str().unwrap_or_default();
            let pem = k["public_key"].as_str().unwrap_or_default();
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(CliError::input(format!(
                    "the server listed a key id {id:?} that is not hex"
                )));
            }
            // Checked before it is written: a file named by a key id must hold that key.
            let key = airlock_attest::VerifyingKey::from_pem(pem)
                .map_err(|e| CliError::input(format!("the server's key {id}: {e}")))?;
            if key.key_id().hex() != id {
                return Err(CliError::input(format!(
                    "the server's key {id} has the id {}",
                    key.key_id().hex()
                )));
            }
            let path = dir.join(format!("{id}.pub"));
            match std::fs::read_to_string(&path) {
                Ok(existing) if existing == pem => {}
                _ => crate::signing::write_new(&path, pem, 0o644)?,
            }
            written.push(path);
        }
    }
    if remote.json {
        print_json(&v);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|k| {
            vec![
                text(&k["key_id"]),
                if k["current"].as_bool() == Some(true) {
                    "yes".into()
                } else {
                    "no".into()
                },
                text(&k["created_at"]),
                text(&k["retired_at"]),
            ]
        })
        .collect();
    table(&["KEY ID", "CURRENT", "CREATED", "RETIRED"], &rows);
    for p in written {
        out!("wrote {}", p.display());
    }
    Ok(())
}

/// `airlock keys rotate`.
pub(crate) fn keys_rotate(remote: &Remote) -> Result<(), CliError> {
    let v = Client::new(remote)?.post_empty("/v1/keys/rotate")?;
    if remote.json {
        print_json(&v);
    } else {
        out!(
            "new signing key {} (retired {})",
            text(&v["key_id"]),
            text(&v["retired"])
        );
    }
    Ok(())
}

/// What `airlock audit log` asks for.
pub(crate) struct AuditQuery {
    pub(crate) action: Option<String>,
    pub(crate) actor: Option<String>,
    pub(crate) subject: Option<String>,
    pub(crate) limit: Option<usize>,
    pub(crate) oldest_first: bool,
    pub(crate) before: Option<u64>,
    pub(crate) after: Option<u64>,
}

/// `airlock audit log`: the newest entries first (what just happened),
/// or from the start with `--oldest-first`; the last line names the
/// command for the next page.
pub(crate) fn audit_log(remote: &Remote, q: &AuditQuery) -> Result<(), CliError> {
    let mut query: Vec<(&str, String)> = Vec::new();
    for (k, v) in [
        ("action", &q.action),
        ("actor", &q.actor),
        ("subject", &q.subject),
    ] {
        if let Some(v) = v {
            query.push((k, v.clone()));
        }
    }
    if let Some(l) = q.limit {
        query.push(("limit", l.to_string()));
    }
    query.push((
        "order",
        if q.oldest_first { "oldest" } else { "newest" }.into(),
    ));
    if let Some(b) = q.before {
        query.push(("before_seq", b.to_string()));
    }
    if let Some(a) = q.after {
        query.push(("after_seq", a.to_string()));
    }
    let v = Client::new(remote)?.get("/v1/audit", &query)?;
    if remote.json {
        print_json(&v);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = v["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            vec![
                text(&e["seq"]),
                text(&e["time"]),
                text(&e["actor"]),
                text(&e["action"]),
                text(&e["subject"]),
            ]
        })
        .collect();
    table(&["SEQ", "TIME", "ACTOR", "ACTION", "SUBJECT"], &rows);
    let head = &v["head"];
    if !head.is_null() {
        out!(
            "head: {}",
            match (head["seq"].as_u64(), head["hash"].as_str()) {
                (Some(s), Some(h)) => format!("{s}:{}", esc(h)),
                _ => text(head),
            }
        );
    }
    let mut again = String::from("airlock audit log");
    for (flag, v) in [
        ("--action", &q.action),
        ("--actor", &q.actor),
        ("--subject", &q.subject),
    ] {
        if let Some(v) = v {
            again.push_str(&format!(" {flag} {}", esc(v)));
        }
    }
    if let Some(l) = q.limit {
        again.push_str(&format!(" --limit {l}"));
    }
    if let Some(b) = v["next_before_seq"].as_u64() {
        out!("older entries: {again} --before {b}");
    }
    if let Some(a) = v["next_after_seq"].as_u64() {
        out!("newer entries: {again} --oldest-first --after {a}");
    }
    Ok(())
}
