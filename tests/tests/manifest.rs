//! Limits come from the operator's configuration and may only be lowered —
//! by the plugin's own manifest (embedded in the component), by a gate step,
//! or by a caller — never raised.

use airlock_core::limits::{LimitRequest, Limits};
use airlock_runtime::sandbox::{Sandbox, SandboxConfig};
use airlock_tests::{airlock_bin, plugin, sandbox};

#[test]
fn a_manifest_lowers_the_limits_its_calls_run_under() {
    let p = sandbox()
        .load_file(&plugin("airlock_validator_schema"))
        .unwrap();
    assert_eq!(p.manifest.limits.fuel, Some(500_000_000));
    let l = p.limits_for(&LimitRequest::default());
    assert_eq!(l.fuel, 500_000_000);
    assert_eq!(l.memory_bytes, 128 << 20);
    assert_eq!(l.timeout_ms, Limits::default().timeout_ms);
    // A caller may lower further, not raise.
    let l = p.limits_for(&LimitRequest {
        fuel: Some(1_000),
        memory_bytes: Some(u64::MAX),
        ..LimitRequest::default()
    });
    assert_eq!((l.fuel, l.memory_bytes), (1_000, 128 << 20));
}

#[test]
fn a_manifest_cannot_raise_the_operators_ceilings() {
    let ceiling = Limits {
        fuel: 1_000,
        ..Limits::default()
    };
    let sb = Sandbox::new(SandboxConfig {
        limits: ceiling,
        max_instances: 4,
        ..SandboxConfig::default()
    })
    .unwrap();
    let bytes = std::fs::read(plugin("airlock_validator_schema")).unwrap();
    let info = sb.inspect(&bytes).unwrap();
    assert_eq!(info.requested_limits.fuel, Some(500_000_000));
    assert_eq!(info.granted_limits.fuel, 1_000);
    assert_eq!(info.refused_limit_raises, ["fuel"]);
    let p = sb.load(&bytes).unwrap();
    assert_eq!(p.limits_for(&LimitRequest::default()).fuel, 1_000);
    // And the ceiling is what the plugin actually gets: the call runs out of
    // the 1,000 units it was granted, not the 500M its manifest asked for.
    let e = p.describe(&Default::default()).unwrap_err();
    assert_eq!(e.kind, airlock_core::FailureKind::FuelExhausted);
    assert!(e.message.contains("used all 1000 units"), "{e}");
}

#[test]
fn the_cli_takes_ceilings_from_a_config_file_and_refuses_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("airlock.toml");
    std::fs::write(&cfg, "[limits]\nfuel = 1000\n").unwrap();
    let wasm = plugin("airlock_model_xgboost");
    let example = airlock_tests::example();
    let out = std::process::Command::new(airlock_bin())
        .args(["plugin", "run"])
        .arg(&wasm)
        .arg("--bundle")
        .arg(example.join("model-v1"))
        .arg("--data")
        .arg(example.join("data/golden.csv"))
        .arg("--config")
        .arg(&cfg)
        .arg("--no-cache")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("used all 1000 units of fuel"));

    std::fs::write(&cfg, "[limits]\nfuel = 0\n").unwrap();
    let out = std::process::Command::new(airlock_bin())
        .args(["plugin", "inspect"])
        .arg(&wasm)
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("limits.fuel must be greater than 0"));
}
