//! Role import (migration step 2) against real `rocketmq-broker-rust` 1.0.0 brokers: ACL 2.0
//! users created, read back and left alone on a second run; ACL 1.0 (code 50) refused by
//! the 5.x-only broker; a broker with authentication on refusing unsigned admin calls and
//! accepting a super user's; an unreachable master named in the reason. Missing peers fail
//! the tests (under `CI=true` as anywhere else), they are never skipped.
//!
//! Peer quirk these tests work around: a broker whose config has no `authConfigPath` keeps
//! its ACL 2.0 users and ACLs in `$HOME/config/auth` (rocketmq-broker 1.0
//! `defaults::auth_config_path`), even with authentication off, so every such broker on a
//! machine shares them across tests and runs. The testkit's brokers have no such setting,
//! so these tests stop the testkit broker and run their own, with `authConfigPath` in a
//! temporary directory.

use std::net::{Ipv4Addr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferry_core::{ItemResult, TargetType};
use ferry_remoting::auth_admin::AuthAdmin;
use ferry_remoting::{ClientConfig, Credentials, RemotingClient, RequestCode, ResponseCode};
use ferry_testkit::free_port;
use ferry_testkit::rocketmq::{BROKER_EXE, ClusterSpec, RocketMqCluster, require_peer};

// `migration::roles` is private to the crate; the test compiles the module itself, with
// the two crate paths it uses pointed at the library.
mod error {
    pub use ferry_metadata_sync::error::*;
}
mod import {
    pub mod pb {
        pub use ferry_metadata_sync::import::pb::result_to_pb;
    }
}
#[allow(dead_code)]
#[path = "../src/migration/roles.rs"]
mod roles;

use roles::{RoleTarget, StoredRole, apply_roles, apply_roles_to, parse_roles};

use ferry_api::common::v1 as pb_common;
use ferry_api::metadata_sync::v1 as pb;

const ADMIN_SECRET: &str = "Adm1n-Secret-Value";
const USER_SECRET: &str = "Us3r-Secret-Value";
const SUPER: &str = "ferrysuper";
const SUPER_SECRET: &str = "Super-S3cret-Key";

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,ferry=debug".into()),
        )
        .with_test_writer()
        .try_init();
}

fn spec(ak: &str, sk: &str, admin: bool) -> pb::RoleSpec {
    pb::RoleSpec {
        credentials: Some(pb_common::Credentials {
            access_key: ak.into(),
            secret_key: sk.into(),
        }),
        admin,
        ..Default::default()
    }
}

/// One admin role and one plain role with per-topic, per-group and default permissions.
fn two_roles() -> Vec<StoredRole> {
    let mut user = spec("ferry_user01", USER_SECRET, false);
    user.topic_perms = vec!["orders=PUB|SUB".into(), "audit=DENY".into()];
    user.group_perms = vec!["orders-cg=SUB".into()];
    user.default_topic_perm = "SUB".into();
    parse_roles(&[spec("ferry_admin1", ADMIN_SECRET, true), user], b"").unwrap()
}

fn assert_no_secret(roles: &[StoredRole]) {
    let text = format!("{roles:?}");
    for r in roles {
        let reason = r.reason.clone().unwrap_or_default();
        for s in [ADMIN_SECRET, USER_SECRET, SUPER_SECRET] {
            assert!(!reason.contains(s), "secret in reason: {reason}");
            assert!(!text.contains(s), "secret in Debug output");
        }
    }
}

/// A NameServer with no broker: a testkit cluster whose own broker is stopped (it keeps
/// ACL state in `$HOME/config/auth`, see the module docs) and has left the cluster info.
async fn bare_namesrv(cluster: &'static str) -> RocketMqCluster {
    let mut c = RocketMqCluster::start(ClusterSpec {
        cluster_name: cluster,
        broker_name: "broker-unused",
        ..Default::default()
    })
    .await
    .expect("the RocketMQ peers must start (scripts/install-peers)");
    c.stop_broker().await.expect("stop the testkit broker");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info = c.cluster_info().await.unwrap();
        if !info.broker_addr_table.contains_key("broker-unused") {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "the stopped broker stays registered: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A real broker with its ACL state in its own directory, optionally with authentication
/// and authorization on (super user [`SUPER`]).
struct AuthBroker {
    addr: String,
    child: Child,
    dir: tempfile::TempDir,
}

fn port_pair() -> u16 {
    // listenPort and listenPort-2 (the broker's always-on fast port) must both be free.
    for _ in 0..50 {
        let p = free_port();
        if p > 1026 && StdListener::bind((Ipv4Addr::LOCALHOST, p - 2)).is_ok() {
            return p;
        }
    }
    panic!("no free port pair");
}

impl AuthBroker {
    async fn start(namesrv: &str, cluster: &str, name: &str, auth: bool) -> AuthBroker {
        let exe = require_peer(BROKER_EXE).expect("the RocketMQ peers (scripts/install-peers)");
        let dir = tempfile::Builder::new()
            .prefix("ferry-roles-broker-")
            .tempdir()
            .unwrap();
        let home: PathBuf = dir.path().to_path_buf();
        let listen = port_pair();
        let ha = free_port();
        let store = home.join("store");
        let auth_dir = home.join("auth");
        let auth_lines = if auth {
            format!(
                "authenticationEnabled = true\nauthorizationEnabled = true\ninitAuthenticationUser = \"{SUPER}:{SUPER_SECRET}\"\n"
            )
        } else {
            String::new()
        };
        let config = format!(
            r#"[broker]
brokerIp1 = "127.0.0.1"
brokerIp2 = "127.0.0.1"
listenPort = {listen}
namesrvAddr = "{namesrv}"
storePathRootDir = "{store}"
autoCreateTopicEnable = false
autoCreateSubscriptionGroup = false
registerNameServerPeriod = 10000
authConfigPath = "{auth_dir}"
{auth_lines}
[broker.brokerServerConfig]
bindAddress = "127.0.0.1"

[broker.brokerIdentity]
brokerName = "{name}"
brokerClusterName = "{cluster}"
brokerId = 0

[store]
brokerRole = "ASYNC_MASTER"
flushDiskType = "ASYNC_FLUSH"
haListenAddress = "127.0.0.1"
haListenPort = {ha}
storePathRootDir = "{store}"
"#,
            store = store.display(),
            auth_dir = auth_dir.display(),
        );
        let path = home.join("broker.toml");
        std::fs::write(&path, config).unwrap();
        let log = std::fs::File::create(home.join("broker.log")).unwrap();
        let child = Command::new(exe)
            .arg("-c")
            .arg(&path)
            .env("ROCKETMQ_HOME", &home)
            .env("NO_COLOR", "1")
            .current_dir(&home)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut broker = AuthBroker {
            addr: format!("127.0.0.1:{listen}"),
            child,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = broker.child.try_wait() {
                panic!("broker exited with {status}:\n{}", broker.log_tail());
            }
            if let Ok(info) = ferry_testkit::rocketmq::fetch_cluster_info(namesrv).await
                && info
                    .broker_addr_table
                    .get(name)
                    .and_then(|b| b.master_addr())
                    == Some(broker.addr.as_str())
            {
                return broker;
            }
            assert!(
                Instant::now() < deadline,
                "broker not registered within 60 s:\n{}",
                broker.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_tail(&self) -> String {
        ferry_testkit::tail(&self.dir.path().join("broker.log"), 40)
    }
}

impl Drop for AuthBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("broker log:\n{}", self.log_tail());
        }
    }
}

fn auth_admin(credentials: Option<Credentials>) -> AuthAdmin {
    AuthAdmin::new(RemotingClient::new(ClientConfig {
        credentials,
        ..ClientConfig::default()
    }))
}

/// Registers a broker name whose master address nothing listens on; the registration
/// lasts as long as the returned client's connection.
async fn register_dead_master(
    namesrv: &str,
    cluster: &str,
    broker: &str,
    addr: &str,
) -> RemotingClient {
    let client = RemotingClient::new(ClientConfig::default());
    let body = serde_json::json!({
        "topicConfigSerializeWrapper": {
            "topicConfigTable": {},
            "dataVersion": {"timestamp": 0, "counter": 0, "stateVersion": 0},
            "topicQueueMappingInfoMap": {},
            "topicQueueMappingDetailMap": {},
            "mappingDataVersion": {"timestamp": 0, "counter": 0, "stateVersion": 0}
        },
        "filterServerList": []
    });
    let request = client
        .new_request(RequestCode::REGISTER_BROKER)
        .with_ext_field("brokerName", broker)
        .with_ext_field("brokerAddr", addr)
        .with_ext_field("clusterName", cluster)
        .with_ext_field("haServerAddr", addr)
        .with_ext_field("brokerId", "0")
        .with_ext_field("compressed", "false")
        .with_ext_field("bodyCrc32", "0")
        .with_body(serde_json::to_vec(&body).unwrap());
    let resp = client.invoke(namesrv, request, None).await.unwrap();
    assert_eq!(resp.code, ResponseCode::SUCCESS, "{:?}", resp.remark);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ferry_testkit::rocketmq::fetch_cluster_info(namesrv)
        .await
        .unwrap()
        .broker_addr_table
        .contains_key(broker)
    {
        assert!(Instant::now() < deadline, "{broker} never registered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client
}

/// 5.x target, authentication off: two roles created and read back, a second run leaves
/// them (AlreadyExistsSkipped), a 4.x import is refused by the 5.x-only broker, and a dead
/// master fails a role with its address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_are_created_on_a_5x_target_and_left_alone_on_rerun() {
    init_tracing();
    let cluster = bare_namesrv("RolesCluster").await;
    let ns = cluster.namesrv_addr();
    let broker = AuthBroker::start(&ns, "RolesCluster", "broker-roles", false).await;

    let mut roles = two_roles();
    apply_roles(&ns, TargetType::V5, &mut roles).await.unwrap();
    for r in &roles {
        assert_eq!(r.result, ItemResult::Success, "{r:?}: {:?}", r.reason);
    }
    assert_no_secret(&roles);

    // Read back with AUTH_GET_USER (3004) and AUTH_GET_ACL (3009).
    let admin = auth_admin(None);
    let su = admin
        .get_user(&broker.addr, "ferry_admin1")
        .await
        .unwrap()
        .expect("admin user on the broker");
    assert!(su.is_super(), "{su:?}");
    assert_eq!(su.password_matches(ADMIN_SECRET), Some(true));
    let user = admin
        .get_user(&broker.addr, "ferry_user01")
        .await
        .unwrap()
        .expect("user on the broker");
    assert!(!user.is_super(), "{user:?}");
    assert_eq!(user.password_matches(USER_SECRET), Some(true));
    assert!(!format!("{user:?}").contains(USER_SECRET));
    let acl = admin
        .get_acl(&broker.addr, "User:ferry_user01")
        .await
        .unwrap()
        .expect("ACL of ferry_user01");
    let entries: Vec<_> = acl.policies.iter().flat_map(|p| &p.entries).collect();
    let orders = entries
        .iter()
        .find(|e| e.resource == "Topic:orders")
        .unwrap();
    assert_eq!(orders.actions, ["Pub", "Sub"]);
    assert_eq!(orders.decision, "Allow");
    let audit = entries
        .iter()
        .find(|e| e.resource == "Topic:audit")
        .unwrap();
    assert_eq!(audit.decision, "Deny");
    assert!(entries.iter().any(|e| e.resource == "Group:orders-cg"));
    assert!(entries.iter().any(|e| e.resource == "Topic:*"), "{acl:?}");
    assert!(
        admin
            .get_acl(&broker.addr, "User:ferry_admin1")
            .await
            .unwrap()
            .is_none(),
        "an admin without permissions gets no ACL"
    );

    // Second run: the users are there already and are left as they are.
    let mut again = two_roles();
    apply_roles(&ns, TargetType::V5, &mut again).await.unwrap();
    for r in &again {
        assert_eq!(
            r.result,
            ItemResult::AlreadyExistsSkipped,
            "{r:?}: {:?}",
            r.reason
        );
        assert!(r.reason.as_deref().unwrap().contains("already exists"));
    }
    // Same access key, another secret: skipped, and the reason says the secret differs.
    let mut changed = parse_roles(&[spec("ferry_user01", "Changed-Secret-1", false)], b"").unwrap();
    apply_roles(&ns, TargetType::V5, &mut changed)
        .await
        .unwrap();
    assert_eq!(changed[0].result, ItemResult::AlreadyExistsSkipped);
    let reason = changed[0].reason.clone().unwrap();
    assert!(reason.contains("different secret key"), "{reason}");
    assert!(!reason.contains("Changed-Secret-1"));
    assert_eq!(
        admin
            .get_user(&broker.addr, "ferry_user01")
            .await
            .unwrap()
            .unwrap()
            .password_matches(USER_SECRET),
        Some(true),
        "the existing user was changed"
    );

    // 4.x import against the Rust broker: code 50 is answered REQUEST_CODE_NOT_SUPPORTED.
    let mut v4 = parse_roles(&[spec("ferry_acl1_user", USER_SECRET, false)], b"").unwrap();
    apply_roles(&ns, TargetType::V4, &mut v4).await.unwrap();
    assert_eq!(v4[0].result, ItemResult::Failed);
    let reason = v4[0].reason.clone().unwrap();
    assert!(
        reason.contains("REQUEST_CODE_NOT_SUPPORTED")
            && reason.contains("UPDATE_AND_CREATE_ACL_CONFIG(50)")
            && reason.contains("Protocol request is unsupported")
            && reason.contains(&broker.addr),
        "{reason}"
    );
    assert_no_secret(&v4);

    // A second master that cannot be reached: the role fails naming its address, the call
    // itself succeeds and the reachable master still gets the user.
    let dead = format!("127.0.0.1:{}", free_port());
    let _registration = register_dead_master(&ns, "RolesCluster", "broker-gone", &dead).await;
    let mut partly = parse_roles(&[spec("ferry_user02", USER_SECRET, false)], b"").unwrap();
    apply_roles(&ns, TargetType::V5, &mut partly).await.unwrap();
    assert_eq!(partly[0].result, ItemResult::Failed);
    let reason = partly[0].reason.clone().unwrap();
    assert!(
        reason.contains(&dead) && reason.contains("broker-gone") && reason.contains("unreachable"),
        "{reason}"
    );
    assert!(
        admin
            .get_user(&broker.addr, "ferry_user02")
            .await
            .unwrap()
            .is_some()
    );
    assert_no_secret(&partly);
}

/// 5.x target with authentication on: unsigned admin calls are refused (Failed with the
/// broker's remark), a super user's credentials create the roles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_with_acl_needs_super_user_credentials() {
    init_tracing();
    let cluster = bare_namesrv("AclRolesCluster").await;
    let ns = cluster.namesrv_addr();
    let broker = AuthBroker::start(&ns, "AclRolesCluster", "broker-acl-roles", true).await;

    let mut unsigned = two_roles();
    apply_roles(&ns, TargetType::V5, &mut unsigned)
        .await
        .unwrap();
    for r in &unsigned {
        assert_eq!(r.result, ItemResult::Failed, "{r:?}");
        let reason = r.reason.as_deref().unwrap();
        assert!(
            reason.contains("NO_PERMISSION") && reason.contains(&broker.addr),
            "{reason}"
        );
        assert!(reason.contains("super user's credentials"), "{reason}");
    }
    assert_no_secret(&unsigned);

    let target = RoleTarget {
        namesrv_addrs: ns.clone(),
        cluster: Some("AclRolesCluster".into()),
        credentials: Some(Credentials::new(SUPER, SUPER_SECRET)),
        timeout: None,
    };
    let mut signed = two_roles();
    apply_roles_to(&target, TargetType::V5, &mut signed)
        .await
        .unwrap();
    for r in &signed {
        assert_eq!(r.result, ItemResult::Success, "{r:?}: {:?}", r.reason);
    }
    assert_no_secret(&signed);
    let admin = auth_admin(Some(Credentials::new(SUPER, SUPER_SECRET)));
    let su = admin
        .get_user(&broker.addr, "ferry_admin1")
        .await
        .unwrap()
        .expect("created");
    assert!(su.is_super());

    // An unknown cluster is the call's failure, naming the NameServer.
    let wrong = RoleTarget {
        cluster: Some("NoSuchCluster".into()),
        ..target.clone()
    };
    let err = apply_roles_to(&wrong, TargetType::V5, &mut two_roles())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("NoSuchCluster") && text.contains(&ns) && !text.contains(SUPER_SECRET),
        "{text}"
    );
}
