//! Hostile bundles: what a candidate's submitter can put in a model's data
//! bundle to hang or exhaust the host, forge a digest, leak the host's
//! clock into the model, or leave snapshots behind — and the exact refusal
//! or guarantee for each.
//!
//! Every refusal here must come from metadata alone, before any file is
//! read, so each also asserts that it returned promptly.

use airlock_core::digest::Digest;
use airlock_core::types::{Batch, Column, ColumnValues};
use airlock_runtime::SandboxError;
use airlock_runtime::bundle::{Bundle, BundleCaps, BundleError, Cap, SpecialKind, snapshots_root};
use airlock_runtime::sandbox::CallOptions;
use airlock_tests::{airlock_bin, cache_dir, example, plugin, sandbox};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime};

/// How long a refusal that reads only metadata may take, generously.
const PROMPT: Duration = Duration::from_secs(5);

/// What every plugin sees as a bundle file's times (2020-01-01T00:00:00Z).
const FIXED_FILE_TIME_SECS: f64 = 1_577_836_800.0;

/// A bundle directory holding `model.json`.
fn bundle_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.json"), b"{}").unwrap();
    dir
}

/// Opens the bundle at `path` under `caps`, asserting it is refused
/// promptly, and returns the reason.
#[track_caller]
fn refused(path: &Path, caps: &BundleCaps) -> BundleError {
    let start = Instant::now();
    let result = Bundle::from_path_with(path, caps);
    let took = start.elapsed();
    assert!(took < PROMPT, "refusal took {took:?}");
    match result {
        Ok(b) => panic!("bundle accepted as {}", b.digest),
        Err(SandboxError::Bundle { path: p, source }) => {
            assert_eq!(p, path);
            source
        }
        Err(other) => panic!("expected a bundle error, got {other:?}"),
    }
}

#[track_caller]
fn assert_not_file_or_dir(e: &BundleError, entry: &str, kind: SpecialKind) {
    match e {
        BundleError::NotFileOrDir { entry: en, kind: k } => {
            assert_eq!((en.as_str(), *k), (entry, kind), "{e}");
        }
        other => panic!("expected {kind} refusal of `{entry}`, got: {other}"),
    }
}

#[test]
fn a_fifo_in_a_bundle_is_refused_by_name_without_blocking() {
    let dir = bundle_dir();
    let fifo = dir.path().join("pipe");
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    let e = refused(dir.path(), &BundleCaps::default());
    assert_not_file_or_dir(&e, "pipe", SpecialKind::Fifo);
    assert_eq!(
        e.to_string(),
        "entry `pipe` is a FIFO (named pipe); a bundle may hold only regular files and directories"
    );
    // Named directly as the bundle, too.
    let e = refused(&fifo, &BundleCaps::default());
    assert_not_file_or_dir(&e, &fifo.display().to_string(), SpecialKind::Fifo);
}

#[test]
fn a_unix_socket_in_a_bundle_is_refused_by_name() {
    let dir = bundle_dir();
    let _listener = std::os::unix::net::UnixListener::bind(dir.path().join("sock")).unwrap();
    let e = refused(dir.path(), &BundleCaps::default());
    assert_not_file_or_dir(&e, "sock", SpecialKind::Socket);
}

#[test]
fn a_character_device_named_as_the_bundle_is_refused_without_reading() {
    let e = refused(Path::new("/dev/zero"), &BundleCaps::default());
    assert_not_file_or_dir(&e, "/dev/zero", SpecialKind::CharDevice);
}

#[test]
fn a_symlink_deep_in_a_bundle_is_refused_by_its_path() {
    let dir = bundle_dir();
    std::fs::create_dir_all(dir.path().join("w/x")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("w/x/link")).unwrap();
    let e = refused(dir.path(), &BundleCaps::default());
    assert_not_file_or_dir(&e, "w/x/link", SpecialKind::Symlink);
}

#[test]
fn a_sparse_file_over_the_byte_cap_is_refused_before_reading() {
    let dir = bundle_dir();
    // 3 GiB of holes: costs no disk, but its logical size is what a copy
    // would read and write.
    let f = std::fs::File::create(dir.path().join("huge.bin")).unwrap();
    f.set_len(3 << 30).unwrap();
    let e = refused(dir.path(), &BundleCaps::default());
    match &e {
        BundleError::OverCap {
            cap: Cap::TotalBytes,
            limit,
            value,
            entry,
        } => {
            assert_eq!(*limit, 2 << 30);
            assert_eq!(entry, "huge.bin");
            // model.json may be counted first or second.
            assert!(*value == (3 << 30) + 2 || *value == 3 << 30, "{e}");
        }
        other => panic!("expected the byte cap, got: {other}"),
    }
    assert!(
        e.to_string()
            .starts_with("over the cap bundle.max_total_bytes = 2147483648: the files through `huge.bin` add up to "),
        "{e}"
    );
}

#[test]
fn too_many_files_are_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..30 {
        std::fs::write(dir.path().join(format!("f{i:02}")), b"x").unwrap();
    }
    let caps = BundleCaps {
        max_entries: 29,
        ..BundleCaps::default()
    };
    match refused(dir.path(), &caps) {
        BundleError::OverCap {
            cap: Cap::Entries,
            limit: 29,
            value: 30,
            ..
        } => {}
        other => panic!("expected the entry cap, got: {other}"),
    }
    // Directories count as entries too.
    let dir = tempfile::tempdir().unwrap();
    for i in 0..30 {
        std::fs::create_dir(dir.path().join(format!("d{i:02}"))).unwrap();
    }
    let e = refused(dir.path(), &caps);
    assert!(
        e.to_string()
            .starts_with("over the cap bundle.max_entries = 29: `d")
            && e.to_string().ends_with(
                "` is entry number 30 (checked before reading; raise it in the [bundle] config section if this bundle is trusted)"
            ),
        "{e}"
    );
}

#[test]
fn a_bundle_nested_too_deep_is_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let deep: PathBuf = (0..17).map(|i| format!("{i}")).collect();
    std::fs::create_dir_all(dir.path().join(&deep)).unwrap();
    let e = refused(dir.path(), &BundleCaps::default());
    assert_eq!(
        e.to_string(),
        "over the cap bundle.max_depth = 16: `0/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16` is 17 levels deep (checked before reading; raise it in the [bundle] config section if this bundle is trusted)"
    );
}

#[test]
fn a_file_name_with_a_newline_is_refused_naming_the_escaped_entry() {
    let dir = bundle_dir();
    let forged = format!("a\n{}  b", Digest::of(b"2"));
    std::fs::write(dir.path().join(&forged), b"1").unwrap();
    let e = refused(dir.path(), &BundleCaps::default());
    assert_eq!(
        e.to_string(),
        format!(
            "entry `a\\n{0}  b`: name `a\\n{0}  b` contains the control character U+000A (bundle entry names must be UTF-8 without control characters)",
            Digest::of(b"2")
        )
    );
}

#[test]
fn a_file_name_that_is_not_utf8_is_refused() {
    use std::os::unix::ffi::OsStrExt;
    let dir = bundle_dir();
    std::fs::write(
        dir.path().join(std::ffi::OsStr::from_bytes(b"w\xff.bin")),
        b"1",
    )
    .unwrap();
    let e = refused(dir.path(), &BundleCaps::default());
    assert_eq!(
        e.to_string(),
        "entry `w\\xff.bin`: name `w\\xff.bin` is not valid UTF-8 (bundle entry names must be UTF-8 without control characters)"
    );
}

#[test]
fn an_empty_directory_changes_a_bundle_digest() {
    let dir = bundle_dir();
    let before = Bundle::from_path(dir.path()).unwrap().digest;
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    let after = Bundle::from_path(dir.path()).unwrap();
    assert_ne!(before, after.digest);
    assert!(
        after.dir().join("empty").is_dir(),
        "and it is in the snapshot"
    );
}

#[test]
fn a_single_file_bundle_digest_covers_its_name_and_is_not_the_file_hash() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.json"), b"{}").unwrap();
    std::fs::write(dir.path().join("b.json"), b"{}").unwrap();
    let a = Bundle::from_path(&dir.path().join("a.json")).unwrap();
    let b = Bundle::from_path(&dir.path().join("b.json")).unwrap();
    assert_ne!(a.digest, b.digest);
    assert_ne!(a.digest, Digest::of(b"{}"));
}

#[test]
fn the_cli_applies_the_operators_bundle_caps_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let model = std::fs::read(example().join("model-v1/model.json")).unwrap();
    std::fs::write(dir.path().join("model.json"), model).unwrap();
    std::fs::write(dir.path().join("extra.txt"), b"x").unwrap();
    let config = dir.path().join("airlock.toml");
    std::fs::write(&config, "[bundle]\nmax_entries = 2\n").unwrap();
    let run = |config: &Path| {
        Command::new(airlock_bin())
            .args(["plugin", "run"])
            .arg(plugin("airlock_model_xgboost"))
            .arg("--data")
            .arg(example().join("data/golden.csv"))
            .arg("--bundle")
            .arg(dir.path())
            .arg("--config")
            .arg(config)
            .arg("--cache-dir")
            .arg(cache_dir())
            .output()
            .unwrap()
    };
    // Three entries (the config file too) against a cap of two.
    let o = run(&config);
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // Which entry is third depends on the directory's listing order.
    let expected = format!(
        "bundle {}: over the cap bundle.max_entries = 2: `",
        dir.path().display()
    );
    assert!(
        stderr.starts_with("error: ")
            && stderr.contains(&expected)
            && stderr.contains("` is entry number 3 (checked before reading"),
        "{stderr}"
    );
    std::fs::write(&config, "[bundle]\nmax_entries = 3\n").unwrap();
    let o = run(&config);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

// ------------------------------------------------------------ timestamps

/// Runs the hostile model's `stat-bundle` attack on a bundle of `dir`.
fn stat_bundle(dir: &Path) -> Vec<f64> {
    stat_snapshot(&Bundle::from_path(dir).unwrap())
}

/// Runs the hostile model's `stat-bundle` attack on `bundle`.
fn stat_snapshot(bundle: &Bundle) -> Vec<f64> {
    let m = sandbox()
        .load_file(&plugin("hostile_model"))
        .expect("hostile model");
    let options = CallOptions {
        bundle: Some(bundle.clone()),
        ..CallOptions::default()
    };
    let batch = Batch {
        rows: 1,
        columns: vec![Column {
            name: "stat-bundle".into(),
            values: ColumnValues::Numeric(vec![0.0]),
        }],
    };
    m.predict(&options, &batch)
        .unwrap_or_else(|f| panic!("stat-bundle failed: {f:#?}"))
        .value
        .values
}

#[test]
fn a_model_sees_only_fixed_timestamps_in_its_bundle() {
    let old = bundle_dir();
    let file = std::fs::File::options()
        .write(true)
        .open(old.path().join("model.json"))
        .unwrap();
    file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000))
        .unwrap();
    let a = stat_bundle(old.path());
    let new = bundle_dir();
    let b = stat_bundle(new.path());
    // modified, accessed, created of the file by path, through a handle,
    // and of /bundle: all the fixed instant, never the host's clock.
    assert_eq!(a[..9], [FIXED_FILE_TIME_SECS; 9]);
    assert_eq!(a[..9], b[..9]);
}

#[test]
fn metadata_hashes_of_bundle_files_do_not_depend_on_the_host() {
    // Two live snapshots of the same bundle have different inodes on the
    // host; the model must not be able to tell them apart.
    let dir = bundle_dir();
    let (first, second) = (
        Bundle::from_path(dir.path()).unwrap(),
        Bundle::from_path(dir.path()).unwrap(),
    );
    let a = stat_snapshot(&first);
    let b = stat_snapshot(&second);
    let (file_a, root_a) = (&a[9..13], &a[13..17]);
    assert_eq!(a.len(), 17);
    assert_eq!(a[9..], b[9..]);
    assert_ne!(file_a, root_a, "different entries, different values");
    assert!(
        file_a.iter().chain(root_a).any(|h| *h != 0.0),
        "not the unmapped value"
    );
}

// ------------------------------------------------------------ snapshots

/// A snapshot directory as a process leaves it: `snap-*` holding a lock
/// file and a bundle.
fn fake_snapshot(tag: &str) -> PathBuf {
    let root = snapshots_root().unwrap();
    let dir = root.join(format!("snap-test-{tag}-{}", std::process::id()));
    std::fs::rename(staged(tag), &dir).unwrap();
    dir
}

/// A snapshot's contents under a name no sweep touches.
fn staged(tag: &str) -> PathBuf {
    let dir = snapshots_root()
        .unwrap()
        .join(format!("test-staging-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("bundle")).unwrap();
    std::fs::write(dir.join("lock"), b"").unwrap();
    std::fs::write(dir.join("bundle/model.json"), b"{}").unwrap();
    dir
}

/// A snapshot whose lock is held by a child process until it is killed,
/// set up as airlock does: locked first, then given its `snap-*` name (so
/// no concurrent sweep can catch it unlocked).
fn owned_snapshot(tag: &str) -> (PathBuf, Child) {
    let staging = staged(tag);
    let owner = hold_lock(&staging);
    let dir = staging.with_file_name(format!("snap-test-{tag}-{}", std::process::id()));
    std::fs::rename(&staging, &dir).unwrap();
    (dir, owner)
}

/// Holds `dir/lock` in a child process until it is killed: a shell opens
/// the lock file, locks it with flock(1) (the same `flock(2)` lock as
/// `File::try_lock`), then becomes `sleep` with the locked file still open.
fn hold_lock(dir: &Path) -> Child {
    let child = Command::new("sh")
        .args([
            "-c",
            r#"exec 9<>"$0" && flock --exclusive 9 && exec sleep 300"#,
        ])
        .arg(dir.join("lock"))
        .spawn()
        .unwrap();
    // Wait until the lock is taken.
    let start = Instant::now();
    loop {
        let f = std::fs::File::open(dir.join("lock")).unwrap();
        match f.try_lock() {
            Err(std::fs::TryLockError::WouldBlock) => return child,
            Ok(()) => drop(f),
            Err(e) => panic!("{e}"),
        }
        assert!(start.elapsed() < PROMPT, "flock never took the lock");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_snapshot_whose_owner_was_killed_is_swept_and_a_live_one_is_kept() {
    let (killed, mut killed_owner) = owned_snapshot("killed");
    let (alive, mut live_owner) = owned_snapshot("alive");
    // SIGKILL: the owner gets no chance to clean up.
    killed_owner.kill().unwrap();
    killed_owner.wait().unwrap();
    let live_here = Bundle::from_path(bundle_dir().path()).unwrap();

    let _next = Bundle::from_path(bundle_dir().path()).unwrap();
    assert!(!killed.exists(), "the dead owner's snapshot was not swept");
    assert!(
        alive.join("bundle/model.json").exists(),
        "a live snapshot was swept"
    );
    assert!(live_here.dir().join("model.json").exists());

    live_owner.kill().unwrap();
    live_owner.wait().unwrap();
    let _after = Bundle::from_path(bundle_dir().path()).unwrap();
    assert!(!alive.exists());
}

#[test]
fn a_snapshot_left_unlocked_is_swept_by_the_next_bundle() {
    let stale = fake_snapshot("unlocked");
    let _b = Bundle::from_path(bundle_dir().path()).unwrap();
    assert!(!stale.exists());
}

#[test]
fn a_half_created_snapshot_is_kept_for_a_grace_period_then_swept() {
    let root = snapshots_root().unwrap();
    let fresh = root.join(format!(".new-test-fresh-{}", std::process::id()));
    let old = root.join(format!(".new-test-old-{}", std::process::id()));
    for d in [&fresh, &old] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("lock"), b"").unwrap();
    }
    std::fs::File::open(&old)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    let _b = Bundle::from_path(bundle_dir().path()).unwrap();
    assert!(!old.exists());
    assert!(fresh.exists(), "its creator may be about to lock it");
    std::fs::remove_dir_all(&fresh).unwrap();
}
