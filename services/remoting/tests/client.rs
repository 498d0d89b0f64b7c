//! `RemotingClient` over loopback against `serve_connections` and raw peers.

#[path = "support/net.rs"]
mod net;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use ferry_remoting::{
    ClientConfig, FLAG_ONEWAY, FLAG_RESPONSE, RemotingClient, RemotingCommand, RemotingError,
    RequestCode, RequestHandler, ServerConfig,
};
use net::{BoxFut, FnHandler, TestServer};
use tokio::net::TcpListener;

const SECOND: Duration = Duration::from_secs(1);

fn client() -> RemotingClient {
    RemotingClient::new(ClientConfig {
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_secs(2),
        ..Default::default()
    })
}

#[tokio::test]
async fn concurrent_calls_share_one_connection_and_match_out_of_order() {
    let peers = Arc::new(Mutex::new(HashSet::new()));
    let seen = peers.clone();
    let handler = FnHandler::new(move |peer: SocketAddr, req: RemotingCommand| -> BoxFut {
        seen.lock().unwrap().insert(peer);
        Box::pin(async move {
            // Later requests answer first: responses come back out of order.
            let id: u64 = req.ext("id").unwrap().parse().unwrap();
            tokio::time::sleep(Duration::from_millis(60 - (id % 60))).await;
            net::echo(peer, req).await
        })
    });
    let server = TestServer::start(handler.clone(), ServerConfig::default()).await;
    let client = client();
    let calls = (0..200u64).map(|i| {
        let client = client.clone();
        let addr = server.addr.clone();
        async move {
            let req = RemotingCommand::request(RequestCode::GET_KV_CONFIG)
                .with_ext_field("id", i.to_string())
                .with_body(format!("body-{i}"));
            let resp = client.invoke(&addr, req, None).await.unwrap();
            assert!(resp.is_response());
            assert_eq!(resp.ext("id"), Some(i.to_string().as_str()));
            assert_eq!(&resp.body[..], format!("body-{i}").as_bytes());
        }
    });
    futures::future::join_all(calls).await;
    assert_eq!(handler.calls(), 200);
    assert_eq!(peers.lock().unwrap().len(), 1, "one reused connection");
    assert_eq!(client.pending_requests(&server.addr), 0);
    assert!(client.is_connected(&server.addr));
}

#[tokio::test]
async fn timeout_removes_pending_entry_and_connection_stays_usable() {
    let peers = Arc::new(Mutex::new(HashSet::new()));
    let seen = peers.clone();
    let handler = FnHandler::new(move |peer: SocketAddr, req: RemotingCommand| -> BoxFut {
        seen.lock().unwrap().insert(peer);
        Box::pin(async move {
            if req.ext("hang").is_some() {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            net::echo(peer, req).await
        })
    });
    let server = TestServer::start(handler, ServerConfig::default()).await;
    let client = client();
    let addr = server.addr.as_str();
    let hang = RemotingCommand::request(RequestCode::GET_KV_CONFIG).with_ext_field("hang", "1");
    let err = client
        .invoke(addr, hang, Some(Duration::from_millis(200)))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        RemotingError::Timeout {
            addr: addr.to_string(),
            ms: 200
        }
    );
    assert!(err.to_string().contains(addr), "{err}");
    assert_eq!(client.pending_requests(addr), 0, "no leaked pending entry");
    assert!(client.is_connected(addr));
    let ok = client
        .invoke(
            addr,
            RemotingCommand::request(RequestCode::GET_KV_CONFIG),
            None,
        )
        .await
        .unwrap();
    assert_eq!(ok.code, 0);
    assert_eq!(
        peers.lock().unwrap().len(),
        1,
        "same connection after the timeout"
    );
}

#[tokio::test]
async fn connect_refused_is_its_own_kind() {
    let addr = net::dead_addr().await;
    let err = client()
        .invoke(&addr, RemotingCommand::request(106), None)
        .await
        .unwrap_err();
    assert_eq!(err, RemotingError::ConnectionRefused { addr: addr.clone() });
    assert!(err.is_transport());
    assert!(err.to_string().contains(&addr), "{err}");
}

#[tokio::test]
async fn connect_timeout_is_a_timeout() {
    let Some(hole) = net::black_hole().await else {
        panic!("could not fill a listen backlog on 127.0.0.1 to provoke a connect timeout");
    };
    let client = RemotingClient::new(ClientConfig {
        connect_timeout: Duration::from_millis(300),
        ..Default::default()
    });
    let started = tokio::time::Instant::now();
    let err = client
        .invoke(&hole.addr, RemotingCommand::request(106), None)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        RemotingError::Timeout {
            addr: hole.addr.clone(),
            ms: 300
        }
    );
    assert!(started.elapsed() < 3 * SECOND);
}

#[tokio::test]
async fn bad_addresses_are_unreachable() {
    for addr in ["127.0.0.1", "127.0.0.1:notaport"] {
        let err = client()
            .invoke(addr, RemotingCommand::request(106), None)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, RemotingError::Unreachable { addr: a, .. } if a == addr),
            "{addr}: {err:?}"
        );
        assert!(err.to_string().contains(addr), "{err}");
    }
}

#[tokio::test]
async fn peer_closing_mid_call_fails_with_closed_and_next_call_reconnects() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let peer = tokio::spawn(async move {
        // First connection: read the request, then hang up without answering.
        let (mut s, _) = listener.accept().await.unwrap();
        net::read_raw_frame(&mut s, 2 * SECOND).await.unwrap();
        drop(s);
        // Second connection: answer properly.
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = BytesMut::new();
        let req = net::read_frame(&mut s, &mut buf, 2 * SECOND).await.unwrap();
        net::write_all(&mut s, &net::frame(&req.respond_to(0, None)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    });
    let client = client();
    let err = client
        .invoke(&addr, RemotingCommand::request(105), None)
        .await
        .unwrap_err();
    assert_eq!(err, RemotingError::Closed { addr: addr.clone() });
    assert_eq!(client.pending_requests(&addr), 0);
    let ok = client
        .invoke(&addr, RemotingCommand::request(105), None)
        .await
        .unwrap();
    assert_eq!(ok.code, 0);
    peer.await.unwrap();
}

#[tokio::test]
async fn error_codes_are_answers_and_into_success_maps_them() {
    let handler = FnHandler::new(|_peer, req: RemotingCommand| -> BoxFut {
        Box::pin(async move { Some(req.respond_to(17, Some("No topic route info".to_string()))) })
    });
    let server = TestServer::start(handler, ServerConfig::default()).await;
    let resp = client()
        .invoke(&server.addr, RemotingCommand::request(105), None)
        .await
        .unwrap();
    assert_eq!(resp.code, 17);
    let err = resp.into_success(&server.addr).unwrap_err();
    assert_eq!(
        err,
        RemotingError::Remote {
            addr: server.addr.clone(),
            code: 17,
            remark: "No topic route info".to_string()
        }
    );
    assert!(!err.is_transport());
    assert!(err.to_string().contains("TOPIC_NOT_EXIST"), "{err}");
}

#[tokio::test]
async fn requests_carry_serialize_type_json_and_fresh_opaques() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let peer = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut headers = Vec::new();
        for _ in 0..2 {
            let raw = net::read_raw_frame(&mut s, 2 * SECOND).await.unwrap();
            let req = RemotingCommand::decode(bytes::Bytes::from(raw[4..].to_vec())).unwrap();
            headers.push((net::header_text(&raw), req.opaque));
            net::write_all(&mut s, &net::frame(&req.respond_to(0, None)))
                .await
                .unwrap();
        }
        headers
    });
    let client = client();
    // Even a request built with the binary header and stale flags goes out as JSON.
    let req = RemotingCommand::request(RequestCode::GET_TOPIC_STATS_INFO)
        .with_ext_field("topic", "T")
        .with_serialize_type(ferry_remoting::SerializeType::RocketMq)
        .with_opaque(77);
    let mut stale = req.clone();
    stale.flag = FLAG_RESPONSE | FLAG_ONEWAY;
    client.invoke(&addr, req, None).await.unwrap();
    client.invoke(&addr, stale, None).await.unwrap();
    let headers = peer.await.unwrap();
    for (text, _) in &headers {
        assert!(
            text.contains(r#""serializeTypeCurrentRPC":"JSON""#),
            "{text}"
        );
        assert!(text.contains(r#""flag":0"#), "{text}");
        assert!(text.contains(r#""extFields":{"topic":"T"}"#), "{text}");
    }
    assert_ne!(
        headers[0].1, headers[1].1,
        "each request gets its own opaque"
    );
}

#[tokio::test]
async fn peer_requests_get_not_supported_without_a_handler() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let peer = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = BytesMut::new();
        let req = net::read_frame(&mut s, &mut buf, 2 * SECOND).await.unwrap();
        // Broker -> client requests over the same connection: 40 oneway, 39 two-way.
        let mut notify =
            RemotingCommand::request(RequestCode::NOTIFY_CONSUMER_IDS_CHANGED).with_opaque(9000);
        notify.mark_oneway();
        let check =
            RemotingCommand::request(RequestCode::CHECK_TRANSACTION_STATE).with_opaque(9001);
        net::write_all(&mut s, &net::frame(&notify)).await.unwrap();
        net::write_all(&mut s, &net::frame(&check)).await.unwrap();
        let answer = net::read_frame(&mut s, &mut buf, 2 * SECOND).await.unwrap();
        net::write_all(&mut s, &net::frame(&req.respond_to(0, None)))
            .await
            .unwrap();
        // Nothing else may arrive (in particular no answer to the oneway 40).
        let extra = net::read_frame(&mut s, &mut buf, Duration::from_millis(300)).await;
        (answer, extra)
    });
    let client = client();
    let resp = client
        .invoke(&addr, RemotingCommand::request(34), None)
        .await
        .unwrap();
    assert_eq!(resp.code, 0);
    let (answer, extra) = peer.await.unwrap();
    assert_eq!(answer.opaque, 9001);
    assert!(answer.is_response());
    assert_eq!(answer.code, 3);
    assert_eq!(
        answer.remark.as_deref(),
        Some(" request type 39 not supported")
    );
    assert!(extra.is_none(), "{extra:?}");
}

struct RunningInfo;

#[async_trait::async_trait]
impl RequestHandler for RunningInfo {
    async fn handle(&self, _peer: SocketAddr, req: RemotingCommand) -> Option<RemotingCommand> {
        Some(
            req.respond_to(0, None)
                .with_body(&b"{\"running\":true}"[..]),
        )
    }
}

#[tokio::test]
async fn peer_requests_go_to_an_installed_handler() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let peer = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = BytesMut::new();
        let req = net::read_frame(&mut s, &mut buf, 2 * SECOND).await.unwrap();
        let ask = RemotingCommand::request(RequestCode::GET_CONSUMER_RUNNING_INFO).with_opaque(-5);
        net::write_all(&mut s, &net::frame(&ask)).await.unwrap();
        let answer = net::read_frame(&mut s, &mut buf, 2 * SECOND).await.unwrap();
        net::write_all(&mut s, &net::frame(&req.respond_to(0, None)))
            .await
            .unwrap();
        answer
    });
    let client = client();
    client.set_request_handler(Arc::new(RunningInfo));
    client
        .invoke(&addr, RemotingCommand::request(34), None)
        .await
        .unwrap();
    let answer = peer.await.unwrap();
    assert_eq!(answer.opaque, -5);
    assert!(answer.is_response());
    assert_eq!(answer.code, 0);
    assert_eq!(&answer.body[..], b"{\"running\":true}");
}

#[tokio::test]
async fn oneway_requests_are_flagged_and_unanswered() {
    let handler = FnHandler::new(|_peer, req: RemotingCommand| -> BoxFut {
        Box::pin(async move {
            assert!(req.is_oneway());
            // Returned, but the server must not send it.
            Some(req.respond_to(0, None))
        })
    });
    let server = TestServer::start(handler.clone(), ServerConfig::default()).await;
    let client = client();
    client
        .invoke_oneway(
            &server.addr,
            RemotingCommand::request(RequestCode::UNREGISTER_CLIENT),
        )
        .await
        .unwrap();
    assert!(net::eventually(2 * SECOND, || handler.calls() == 1).await);
    assert_eq!(client.pending_requests(&server.addr), 0);
}

#[tokio::test]
async fn dropping_the_last_client_clone_closes_its_connections() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let peer = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = BytesMut::new();
        let req = net::read_frame(&mut s, &mut buf, 2 * SECOND).await.unwrap();
        net::write_all(&mut s, &net::frame(&req.respond_to(0, None)))
            .await
            .unwrap();
        net::closed_within(&mut s, 2 * SECOND).await
    });
    let client = client();
    let clone = client.clone();
    client
        .invoke(&addr, RemotingCommand::request(34), None)
        .await
        .unwrap();
    drop(client);
    assert!(clone.is_connected(&addr), "a clone keeps the pool alive");
    drop(clone);
    assert!(
        peer.await.unwrap(),
        "connection closed after the last clone dropped"
    );
}

#[tokio::test]
async fn close_connection_fails_waiting_calls_and_reconnects() {
    let peers = Arc::new(Mutex::new(HashSet::new()));
    let seen = peers.clone();
    let handler = FnHandler::new(move |peer: SocketAddr, req: RemotingCommand| -> BoxFut {
        seen.lock().unwrap().insert(peer);
        Box::pin(async move {
            if req.ext("hang").is_some() {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            net::echo(peer, req).await
        })
    });
    let server = TestServer::start(handler, ServerConfig::default()).await;
    let client = client();
    let addr = server.addr.clone();
    let waiting = {
        let client = client.clone();
        let addr = addr.clone();
        tokio::spawn(async move {
            let req = RemotingCommand::request(34).with_ext_field("hang", "1");
            client.invoke(&addr, req, None).await
        })
    };
    assert!(net::eventually(2 * SECOND, || client.pending_requests(&addr) == 1).await);
    client.close_connection(&addr);
    assert_eq!(
        waiting.await.unwrap().unwrap_err(),
        RemotingError::Closed { addr: addr.clone() }
    );
    client
        .invoke(&addr, RemotingCommand::request(34), None)
        .await
        .unwrap();
    assert_eq!(peers.lock().unwrap().len(), 2, "reconnected");
}

#[tokio::test]
async fn oversized_requests_are_refused_locally() {
    let handler = FnHandler::new(net::echo);
    let server = TestServer::start(handler.clone(), ServerConfig::default()).await;
    let client = RemotingClient::new(ClientConfig {
        max_frame_length: 1024,
        ..Default::default()
    });
    let err = client
        .invoke(
            &server.addr,
            RemotingCommand::request(34).with_body(vec![b'x'; 4096]),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RemotingError::FrameTooLarge { .. }), "{err}");
    assert_eq!(client.pending_requests(&server.addr), 0);
    assert_eq!(handler.calls(), 0);
}
