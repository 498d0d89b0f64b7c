//! `NameServerClient`: failover, stickiness, typed calls against fake NameServers.

#[path = "support/net.rs"]
mod net;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ferry_remoting::{
    ClientConfig, NameServerClient, RemotingClient, RemotingCommand, RemotingError, ServerConfig,
};
use net::{BoxFut, FnHandler, TestServer};
use tokio::net::TcpListener;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn client() -> RemotingClient {
    RemotingClient::new(ClientConfig {
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_millis(500),
        ..Default::default()
    })
}

/// A fake NameServer answering the typed calls from fixtures.
fn fake_namesrv(_peer: std::net::SocketAddr, req: RemotingCommand) -> BoxFut {
    Box::pin(async move {
        let ok = |body: Vec<u8>| Some(req.respond_to(0, None).with_body(body));
        match req.code {
            106 => ok(fixture("cluster_info.json")),
            105 => {
                // Ferry asks for standard JSON explicitly and with a version >= 401.
                assert_eq!(req.ext("acceptStandardJsonOnly"), Some("true"));
                assert!(req.version >= 401, "version {}", req.version);
                match req.ext("topic") {
                    Some("TopicTest") => ok(fixture("route_fastjson.json")),
                    _ => Some(req.respond_to(
                        17,
                        Some("No topic route info in name server for the topic: x".into()),
                    )),
                }
            }
            206 => ok(fixture("topic_list.json")),
            224 => {
                assert_eq!(req.ext("cluster"), Some("DefaultCluster"));
                ok(br#"{"topicList":["A","B"]}"#.to_vec())
            }
            101 => match (req.ext("namespace"), req.ext("key")) {
                (Some("ORDER_TOPIC_CONFIG"), Some("T")) => Some(
                    req.respond_to(0, None)
                        .with_ext_field("value", "broker-a:4"),
                ),
                _ => Some(req.respond_to(22, Some("No config item".into()))),
            },
            219 => match req.ext("namespace") {
                Some("ORDER_TOPIC_CONFIG") => ok(fixture("kv_table.json")),
                _ => Some(req.respond_to(22, None)),
            },
            _ => Some(req.not_supported_response()),
        }
    })
}

/// Accepts connections and hangs up at once; counts accepts.
async fn hang_up_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accepts = Arc::new(AtomicUsize::new(0));
    let counter = accepts.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    (addr, accepts)
}

#[tokio::test]
async fn fails_over_from_a_dead_first_address_and_sticks_to_the_live_one() {
    let (dead, dead_accepts) = hang_up_server().await;
    let handler = FnHandler::new(fake_namesrv);
    let live = TestServer::start(handler.clone(), ServerConfig::default()).await;
    let ns = NameServerClient::new(&format!("{dead};{}", live.addr), client()).unwrap();
    ns.select(0);
    assert_eq!(ns.current_addr(), dead);
    let info = ns.cluster_info().await.unwrap();
    assert!(!info.broker_addr_table.is_empty());
    assert_eq!(ns.current_addr(), live.addr);
    for _ in 0..5 {
        ns.cluster_info().await.unwrap();
    }
    assert_eq!(handler.calls(), 6);
    assert_eq!(
        dead_accepts.load(Ordering::SeqCst),
        1,
        "dead address not retried"
    );
    // Clones share the choice.
    assert_eq!(ns.clone().current_addr(), live.addr);
}

#[tokio::test]
async fn refused_first_address_rotates_to_the_next() {
    let dead = net::dead_addr().await;
    let live = TestServer::start(FnHandler::new(fake_namesrv), ServerConfig::default()).await;
    let ns = NameServerClient::new(&format!("{dead};{}", live.addr), client()).unwrap();
    ns.select(0);
    let route = ns.topic_route("TopicTest").await.unwrap().unwrap();
    assert!(!route.broker_datas.is_empty());
    assert_eq!(ns.current_addr(), live.addr);
}

#[tokio::test]
async fn all_addresses_failing_lists_each_with_its_kind() {
    let refused = net::dead_addr().await;
    let silent = TestServer::start(
        FnHandler::new(|_p, _r| -> BoxFut {
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                None
            })
        }),
        ServerConfig::default(),
    )
    .await;
    let (hangup, _) = hang_up_server().await;
    let list = format!("{refused};{};{hangup}", silent.addr);
    let ns = NameServerClient::new(&list, client()).unwrap();
    ns.select(0);
    let err = ns.cluster_info().await.unwrap_err();
    let RemotingError::AllAddressesFailed { errors } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(
        errors,
        &[
            RemotingError::ConnectionRefused {
                addr: refused.clone()
            },
            RemotingError::Timeout {
                addr: silent.addr.clone(),
                ms: 500
            },
            RemotingError::Closed {
                addr: hangup.clone()
            },
        ]
    );
    let text = err.to_string();
    for part in [
        format!("connection refused by {refused}"),
        format!("request to {} timed out", silent.addr),
        format!("connection to {hangup} closed"),
    ] {
        assert!(text.contains(&part), "{text}");
    }
    assert!(err.is_transport());
    // Java's closeSocketIfTimeout: the timed-out connection was dropped.
    assert!(!ns.client().is_connected(&silent.addr));
}

#[tokio::test]
async fn typed_calls() {
    let server = TestServer::start(FnHandler::new(fake_namesrv), ServerConfig::default()).await;
    let ns = NameServerClient::new(&server.addr, client()).unwrap();

    let info = ns.cluster_info().await.unwrap();
    assert!(!info.cluster_addr_table.is_empty());

    let route = ns.topic_route("TopicTest").await.unwrap().unwrap();
    assert_eq!(route.queue_datas.len(), 2);
    assert_eq!(ns.topic_route("missing").await.unwrap(), None);

    assert!(!ns.all_topic_list().await.unwrap().topic_list.is_empty());
    let by_cluster = ns.topics_by_cluster("DefaultCluster").await.unwrap();
    assert_eq!(
        by_cluster.topic_list.into_iter().collect::<Vec<_>>(),
        ["A", "B"]
    );

    assert_eq!(
        ns.kv_config("ORDER_TOPIC_CONFIG", "T").await.unwrap(),
        Some("broker-a:4".to_string())
    );
    assert_eq!(ns.kv_config("ORDER_TOPIC_CONFIG", "U").await.unwrap(), None);
    assert!(
        !ns.kv_list("ORDER_TOPIC_CONFIG")
            .await
            .unwrap()
            .table
            .is_empty()
    );
    assert!(ns.kv_list("nothing").await.unwrap().table.is_empty());
}

#[tokio::test]
async fn error_answers_are_not_failover_reasons() {
    let disabled = FnHandler::new(|_p, req: RemotingCommand| -> BoxFut {
        Box::pin(async move { Some(req.respond_to(1, Some("disable".into()))) })
    });
    let first = TestServer::start(disabled.clone(), ServerConfig::default()).await;
    let other = FnHandler::new(fake_namesrv);
    let second = TestServer::start(other.clone(), ServerConfig::default()).await;
    let ns = NameServerClient::new(&format!("{};{}", first.addr, second.addr), client()).unwrap();
    ns.select(0);
    let err = ns.all_topic_list().await.unwrap_err();
    assert_eq!(
        err,
        RemotingError::Remote {
            addr: first.addr.clone(),
            code: 1,
            remark: "disable".into()
        }
    );
    assert_eq!(other.calls(), 0);
    assert_eq!(ns.current_addr(), first.addr);
}

#[tokio::test]
async fn malformed_bodies_name_the_address_and_code() {
    let handler = FnHandler::new(|_p, req: RemotingCommand| -> BoxFut {
        Box::pin(async move {
            let body: &[u8] = if req.code == 106 { b"{not json" } else { b"" };
            Some(req.respond_to(0, None).with_body(body.to_vec()))
        })
    });
    let server = TestServer::start(handler, ServerConfig::default()).await;
    let ns = NameServerClient::new(&server.addr, client()).unwrap();
    let err = ns.cluster_info().await.unwrap_err();
    assert!(matches!(err, RemotingError::Malformed { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&server.addr), "{text}");
    assert!(text.contains("GET_BROKER_CLUSTER_INFO(106)"), "{text}");
    let err = ns.all_topic_list().await.unwrap_err();
    assert!(
        err.to_string()
            .contains("GET_ALL_TOPIC_LIST_FROM_NAMESERVER(206)"),
        "{err}"
    );
    assert!(err.to_string().contains("no body"), "{err}");
}

#[tokio::test]
async fn invalid_lists_are_rejected_naming_the_entry() {
    let err = NameServerClient::new("127.0.0.1:9876;;127.0.0.1:9877", client()).unwrap_err();
    assert!(matches!(err, RemotingError::InvalidAddress { .. }), "{err}");
    assert!(err.to_string().contains("entry 2"), "{err}");
    let err = NameServerClient::new("127.0.0.1:9876;nsport", client()).unwrap_err();
    assert!(err.to_string().contains("\"nsport\""), "{err}");
    let ns = NameServerClient::new("127.0.0.1:9876; 127.0.0.1:9877;", client()).unwrap();
    assert_eq!(ns.addrs(), ["127.0.0.1:9876", "127.0.0.1:9877"]);
    // The random first choice is one of them.
    assert!(ns.addrs().iter().any(|a| a == ns.current_addr()));
}
