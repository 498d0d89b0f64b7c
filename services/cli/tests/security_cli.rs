//! `ferry` against a `ferry standalone` that requires a bearer token for mutating calls and
//! serves TLS: the CLI sends FERRY_TOKEN / FERRY_TOKEN_FILE and speaks TLS to `https://`.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use ferry_testkit::ServiceProcess;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use serde_json::Value;

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");
const TOKEN: &str = "cli-test-token-5e8d1c0a9b7f4e32";

/// Every variable that changes how `ferry` connects, so the caller's shell cannot leak in.
const CLIENT_VARS: [&str; 5] = [
    "FERRY_TOKEN",
    "FERRY_TOKEN_FILE",
    "FERRY_TLS_CA_FILE",
    "FERRY_TLS_CLIENT_CERT_FILE",
    "FERRY_TLS_CLIENT_KEY_FILE",
];

async fn standalone(envs: &[(&str, &str)]) -> (ServiceProcess, String) {
    let mut process = ServiceProcess::spawn(
        "standalone",
        FERRY,
        &[
            "standalone",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            "data",
            "--ready-file",
            "ready",
        ],
        envs,
    )
    .unwrap();
    let addr = process
        .wait_for_file("ready", Duration::from_secs(30))
        .await
        .unwrap();
    (process, addr.trim().to_string())
}

fn ferry(addr: &str, envs: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(FERRY);
    for var in CLIENT_VARS {
        command.env_remove(var);
    }
    command
        .args(["--addr", addr, "--output", "json"])
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &Output) -> Value {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn refused(out: &Output) -> String {
    assert!(!out.status.success(), "expected a refusal");
    let err = stderr(out);
    assert!(err.contains("Unauthenticated"), "{err}");
    assert!(!err.contains(TOKEN), "the token leaked: {err}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_is_required_for_changes_and_sent_from_env_or_file() {
    let (_server, addr) = standalone(&[("FERRY_AUTH_TOKEN", TOKEN)]).await;
    let addr = format!("http://{addr}");

    // Reading needs no token.
    let quota = json(&ferry(&addr, &[], &["import", "quota", "ClusterB"]));
    assert_eq!(quota["topic_quota"], 0, "{quota}");

    // Changing does.
    let err = refused(&ferry(
        &addr,
        &[],
        &["import", "quota", "ClusterB", "--topics", "7"],
    ));
    assert!(err.contains("bearer token"), "{err}");
    let err = refused(&ferry(
        &addr,
        &[("FERRY_TOKEN", "not-the-token")],
        &["import", "quota", "ClusterB", "--topics", "7"],
    ));
    assert!(err.contains("not valid"), "{err}");

    let quota = json(&ferry(
        &addr,
        &[("FERRY_TOKEN", TOKEN)],
        &["import", "quota", "ClusterB", "--topics", "7"],
    ));
    assert_eq!(quota["topic_quota"], 7, "{quota}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let file = file.to_str().unwrap();
    let quota = json(&ferry(
        &addr,
        &[("FERRY_TOKEN_FILE", file)],
        &["import", "quota", "ClusterB", "--groups", "9"],
    ));
    assert_eq!(
        (quota["topic_quota"].as_i64(), quota["group_quota"].as_i64()),
        (Some(7), Some(9))
    );
    // The flag names the file as well.
    json(&ferry(
        &addr,
        &[],
        &[
            "--token-file",
            file,
            "import",
            "quota",
            "ClusterB",
            "--groups",
            "10",
        ],
    ));
}

/// A CA and a server certificate for localhost / 127.0.0.1, written as PEM files in `dir`.
fn write_pki(dir: &Path) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ferry cli test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &ca).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_addresses_speak_tls_trusting_the_given_ca() {
    let dir = tempfile::tempdir().unwrap();
    write_pki(dir.path());
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let (cert, key, ca) = (path("server.pem"), path("server.key"), path("ca.pem"));
    let (_server, addr) = standalone(&[
        ("FERRY_TLS_CERT_FILE", &cert),
        ("FERRY_TLS_KEY_FILE", &key),
        ("FERRY_AUTH_TOKEN", TOKEN),
    ])
    .await;

    let https = format!("https://{addr}");
    let health = json(&ferry(
        &https,
        &[("FERRY_TLS_CA_FILE", &ca)],
        &["health", "--wait", "10"],
    ));
    assert_eq!(health["all_serving"], true, "{health}");
    // Token and TLS together.
    let quota = json(&ferry(
        &https,
        &[("FERRY_TLS_CA_FILE", &ca), ("FERRY_TOKEN", TOKEN)],
        &["import", "quota", "ClusterB", "--topics", "3"],
    ));
    assert_eq!(quota["topic_quota"], 3, "{quota}");

    // Plaintext to the TLS port, or TLS without trusting the CA, gets nowhere.
    let plain = ferry(&format!("http://{addr}"), &[], &["health"]);
    assert!(!plain.status.success(), "{}", stderr(&plain));
    let untrusted = ferry(&https, &[], &["health"]);
    assert!(!untrusted.status.success(), "{}", stderr(&untrusted));
}
