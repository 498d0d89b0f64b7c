//! The remoting client's Prometheus families: one sample per request, labelled by the
//! request code's name and the outcome (response code name, or what went wrong).

#[path = "support/net.rs"]
mod net;

use std::net::SocketAddr;
use std::time::Duration;

use ferry_remoting::{
    ClientConfig, RemotingClient, RemotingCommand, RequestCode, ResponseCode, ServerConfig,
};
use net::{BoxFut, FnHandler, TestServer};

/// The value of the sample `series` (name and labels exactly) in the global registry.
fn sample(series: &str) -> Option<f64> {
    let text = ferry_telemetry::metrics::encode();
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|rest| rest.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn count(code: &str, outcome: &str) -> f64 {
    sample(&format!(
        r#"ferry_remoting_client_requests_total{{code="{code}",outcome="{outcome}"}}"#
    ))
    .unwrap_or(0.0)
}

#[tokio::test]
async fn requests_are_counted_by_code_name_and_outcome() {
    let client = RemotingClient::new(ClientConfig {
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_millis(300),
        ..Default::default()
    });
    // A peer that answers TOPIC_NOT_EXIST for routes, SUCCESS for the rest, and never
    // answers GET_KV_CONFIG.
    let handler = FnHandler::new(|_peer: SocketAddr, req: RemotingCommand| -> BoxFut {
        Box::pin(async move {
            if req.code == RequestCode::GET_KV_CONFIG {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            let code = if req.code == RequestCode::GET_ROUTEINFO_BY_TOPIC {
                ResponseCode::TOPIC_NOT_EXIST.code()
            } else {
                ResponseCode::SUCCESS.code()
            };
            Some(req.respond_to(code, None))
        })
    });
    let server = TestServer::start(handler, ServerConfig::default()).await;

    let before_ok = count("GET_BROKER_CLUSTER_INFO", "SUCCESS");
    let before_missing = count("GET_ROUTEINFO_BY_TOPIC", "TOPIC_NOT_EXIST");
    let before_timeout = count("GET_KV_CONFIG", "timeout");
    let before_refused = count("GET_BROKER_CLUSTER_INFO", "refused");
    let before_other = count("OTHER", "SUCCESS");

    let ok = client
        .invoke(
            &server.addr,
            RemotingCommand::request(RequestCode::GET_BROKER_CLUSTER_INFO),
            None,
        )
        .await
        .unwrap();
    assert_eq!(ok.code, 0);
    let missing = client
        .invoke(
            &server.addr,
            RemotingCommand::request(RequestCode::GET_ROUTEINFO_BY_TOPIC),
            None,
        )
        .await
        .unwrap();
    assert_eq!(missing.code, ResponseCode::TOPIC_NOT_EXIST.code());
    let timed_out = client
        .invoke(
            &server.addr,
            RemotingCommand::request(RequestCode::GET_KV_CONFIG),
            None,
        )
        .await;
    assert!(timed_out.is_err());
    // A code Ferry has no name for stays in a bounded label.
    client
        .invoke(&server.addr, RemotingCommand::request(31_999), None)
        .await
        .unwrap();

    // Nothing listens on a port that was just released.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let refused = client
        .invoke(
            &closed,
            RemotingCommand::request(RequestCode::GET_BROKER_CLUSTER_INFO),
            None,
        )
        .await;
    assert!(refused.is_err());

    assert_eq!(count("GET_BROKER_CLUSTER_INFO", "SUCCESS"), before_ok + 1.0);
    assert_eq!(
        count("GET_ROUTEINFO_BY_TOPIC", "TOPIC_NOT_EXIST"),
        before_missing + 1.0
    );
    assert_eq!(count("GET_KV_CONFIG", "timeout"), before_timeout + 1.0);
    assert_eq!(
        count("GET_BROKER_CLUSTER_INFO", "refused"),
        before_refused + 1.0
    );
    assert_eq!(count("OTHER", "SUCCESS"), before_other + 1.0);
    let timeouts =
        sample(r#"ferry_remoting_client_request_duration_seconds_count{code="GET_KV_CONFIG"}"#);
    assert!(timeouts.is_some_and(|n| n >= 1.0), "{timeouts:?}");
    // The timed-out request waited for its deadline (0.3 s), and the histogram saw it.
    let waited =
        sample(r#"ferry_remoting_client_request_duration_seconds_sum{code="GET_KV_CONFIG"}"#)
            .unwrap();
    assert!(waited >= 0.29, "{waited}");
}

#[tokio::test]
async fn a_call_abandoned_by_its_caller_counts_as_cancelled() {
    let client = RemotingClient::new(ClientConfig::default());
    let handler = FnHandler::new(|_peer: SocketAddr, req: RemotingCommand| -> BoxFut {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Some(req.respond_to(0, None))
        })
    });
    let server = TestServer::start(handler, ServerConfig::default()).await;
    let before = count("GET_ALL_TOPIC_LIST_FROM_NAMESERVER", "cancelled");
    let call = client.invoke(
        &server.addr,
        RemotingCommand::request(RequestCode::GET_ALL_TOPIC_LIST_FROM_NAMESERVER),
        None,
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(100), call)
            .await
            .is_err()
    );
    assert_eq!(
        count("GET_ALL_TOPIC_LIST_FROM_NAMESERVER", "cancelled"),
        before + 1.0
    );
}
