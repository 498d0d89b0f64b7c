//! `serve_connections`: framing limits, idle handling, backpressure, shutdown.

#[path = "support/net.rs"]
mod net;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use ferry_remoting::{
    ClientConfig, RemotingClient, RemotingCommand, RemotingError, SerializeType, ServerConfig,
};
use net::{BoxFut, FnHandler, TestServer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

const SECOND: Duration = Duration::from_secs(1);

fn config() -> ServerConfig {
    ServerConfig {
        max_frame_length: 64 * 1024,
        idle_timeout: 5 * SECOND,
        drain_timeout: 2 * SECOND,
        ..Default::default()
    }
}

async fn connect(addr: &str) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

fn req(code: i32, opaque: i32) -> RemotingCommand {
    RemotingCommand::request(code).with_opaque(opaque)
}

#[tokio::test]
async fn oversized_frame_closes_connection_before_the_handler() {
    let handler = FnHandler::new(net::echo);
    let server = TestServer::start(handler.clone(), config()).await;
    let mut s = connect(&server.addr).await;
    // Announces ~2 GiB; only the 4-byte prefix and a few bytes ever arrive.
    let mut bytes = 0x7fff_fff0i32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0, 0, 0, 2, b'{', b'}']);
    s.write_all(&bytes).await.unwrap();
    assert!(net::closed_within(&mut s, 2 * SECOND).await);
    // Just over the configured limit, too.
    let mut s = connect(&server.addr).await;
    s.write_all(&(64 * 1024 - 3i32).to_be_bytes())
        .await
        .unwrap();
    assert!(net::closed_within(&mut s, 2 * SECOND).await);
    assert_eq!(handler.calls(), 0);
}

#[tokio::test]
async fn malformed_or_oversized_headers_close_the_connection() {
    let handler = FnHandler::new(net::echo);
    let server = TestServer::start(handler.clone(), ServerConfig::default()).await;

    let header = b"{not json";
    let mut bad = ((4 + header.len()) as i32).to_be_bytes().to_vec();
    bad.extend_from_slice(&(header.len() as u32).to_be_bytes());
    bad.extend_from_slice(header);
    let mut s = connect(&server.addr).await;
    s.write_all(&bad).await.unwrap();
    assert!(net::closed_within(&mut s, 2 * SECOND).await);

    // A header over the 64 KiB header limit is refused as soon as its length is known.
    let mut s = connect(&server.addr).await;
    let mut big = (4 + 100_000i32).to_be_bytes().to_vec();
    big.extend_from_slice(&100_000u32.to_be_bytes());
    s.write_all(&big).await.unwrap();
    assert!(net::closed_within(&mut s, 2 * SECOND).await);

    // Unknown serialize type.
    let mut s = connect(&server.addr).await;
    let mut odd = net::frame(&req(105, 1));
    odd[4] = 7;
    s.write_all(&odd).await.unwrap();
    assert!(net::closed_within(&mut s, 2 * SECOND).await);
    assert_eq!(handler.calls(), 0);
}

#[tokio::test]
async fn lenient_requests_are_served_and_answered_by_opaque() {
    let handler = FnHandler::new(|_peer, req: RemotingCommand| -> BoxFut {
        Box::pin(async move {
            let n = req.ext("n").unwrap_or("-").to_string();
            Some(req.respond_to(0, None).with_ext_field("n", n))
        })
    });
    let server = TestServer::start(handler, ServerConfig::default()).await;
    let mut s = connect(&server.addr).await;
    // A Go-style header: no serializeTypeCurrentRPC, a number in extFields.
    let header = br#"{"code":105,"language":"GO","version":317,"opaque":41,"flag":0,"remark":"","extFields":{"topic":"T","n":5}}"#;
    let mut go = ((4 + header.len()) as i32).to_be_bytes().to_vec();
    go.extend_from_slice(&(header.len() as u32).to_be_bytes());
    go.extend_from_slice(header);
    s.write_all(&go).await.unwrap();
    // And a binary (ROCKETMQ) header.
    let binary = req(105, 42)
        .with_ext_field("n", "7")
        .with_serialize_type(SerializeType::RocketMq);
    s.write_all(&net::frame(&binary)).await.unwrap();
    let mut buf = BytesMut::new();
    let mut answers = Vec::new();
    for _ in 0..2 {
        let resp = net::read_frame(&mut s, &mut buf, 2 * SECOND).await.unwrap();
        assert!(resp.is_response());
        answers.push((resp.opaque, resp.ext("n").unwrap().to_string()));
    }
    answers.sort();
    assert_eq!(answers, [(41, "5".to_string()), (42, "7".to_string())]);
}

#[tokio::test]
async fn oneway_requests_run_the_handler_without_a_reply() {
    let handler = FnHandler::new(net::echo);
    let server = TestServer::start(handler.clone(), config()).await;
    let mut s = connect(&server.addr).await;
    let mut oneway = req(40, 1);
    oneway.mark_oneway();
    s.write_all(&net::frame(&oneway)).await.unwrap();
    assert!(net::eventually(2 * SECOND, || handler.calls() == 1).await);
    // The echo handler returned a response for the oneway request; it must not be
    // written, so the first frame back answers the next request.
    s.write_all(&net::frame(&req(105, 2))).await.unwrap();
    let mut buf = BytesMut::new();
    let resp = net::read_frame(&mut s, &mut buf, 2 * SECOND).await.unwrap();
    assert_eq!(resp.opaque, 2);
    assert!(
        net::read_frame(&mut s, &mut buf, Duration::from_millis(200))
            .await
            .is_none()
    );
}

fn idle_config() -> ServerConfig {
    ServerConfig {
        idle_timeout: Duration::from_millis(300),
        ..config()
    }
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let server = TestServer::start(FnHandler::new(net::echo), idle_config()).await;
    let mut s = connect(&server.addr).await;
    let started = tokio::time::Instant::now();
    assert!(net::closed_within(&mut s, 3 * SECOND).await);
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn slowloris_trickling_a_frame_is_closed_after_the_idle_timeout() {
    let handler = FnHandler::new(net::echo);
    let server = TestServer::start(handler.clone(), idle_config()).await;
    let s = connect(&server.addr).await;
    let (mut rd, mut wr) = s.into_split();
    // A valid frame, one byte every 50 ms (would take seconds to complete).
    let frame = net::frame(&req(105, 1).with_body(vec![b'x'; 200]));
    let trickle = tokio::spawn(async move {
        for b in frame {
            if wr.write_all(&[b]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    });
    let started = tokio::time::Instant::now();
    let mut chunk = [0u8; 64];
    let closed = tokio::time::timeout(
        3 * SECOND,
        tokio::io::AsyncReadExt::read(&mut rd, &mut chunk),
    )
    .await
    .is_ok_and(|r| matches!(r, Ok(0) | Err(_)));
    assert!(closed, "slowloris connection still open");
    assert!(started.elapsed() < 2 * SECOND);
    trickle.abort();
    assert_eq!(handler.calls(), 0);
}

#[tokio::test]
async fn busy_connections_are_not_idle() {
    let handler = FnHandler::new(|peer, req: RemotingCommand| -> BoxFut {
        Box::pin(async move {
            if req.ext("slow").is_some() {
                // Longer than the idle timeout, with nothing else on the connection.
                tokio::time::sleep(Duration::from_millis(700)).await;
            }
            net::echo(peer, req).await
        })
    });
    let server = TestServer::start(handler, idle_config()).await;
    let client = RemotingClient::new(ClientConfig::default());
    for _ in 0..8 {
        client
            .invoke(&server.addr, RemotingCommand::request(105), None)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let slow = RemotingCommand::request(105).with_ext_field("slow", "1");
    client.invoke(&server.addr, slow, None).await.unwrap();
}

#[tokio::test]
async fn in_flight_requests_per_connection_are_bounded() {
    let gate = Arc::new(Semaphore::new(0));
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let handler = {
        let (gate, running, peak) = (gate.clone(), running.clone(), peak.clone());
        FnHandler::new(move |peer, req: RemotingCommand| -> BoxFut {
            let (gate, running, peak) = (gate.clone(), running.clone(), peak.clone());
            Box::pin(async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                gate.acquire().await.unwrap().forget();
                running.fetch_sub(1, Ordering::SeqCst);
                net::echo(peer, req).await
            })
        })
    };
    let cfg = ServerConfig {
        max_in_flight_per_connection: 4,
        ..config()
    };
    let server = TestServer::start(handler.clone(), cfg).await;
    let mut s = connect(&server.addr).await;
    let mut all = Vec::new();
    for i in 0..200 {
        all.extend_from_slice(&net::frame(&req(105, i)));
    }
    s.write_all(&all).await.unwrap();
    assert!(net::eventually(2 * SECOND, || handler.calls() == 4).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(handler.calls(), 4, "reading paused at the in-flight limit");
    gate.add_permits(200);
    let mut buf = BytesMut::new();
    let mut opaques = Vec::new();
    for _ in 0..200 {
        let resp = net::read_frame(&mut s, &mut buf, 2 * SECOND).await.unwrap();
        opaques.push(resp.opaque);
    }
    opaques.sort();
    assert_eq!(opaques, (0..200).collect::<Vec<_>>());
    assert!(peak.load(Ordering::SeqCst) <= 4);
}

#[tokio::test]
async fn a_client_that_never_reads_cannot_grow_server_buffers() {
    let handler = FnHandler::new(|_peer, req: RemotingCommand| -> BoxFut {
        Box::pin(async move { Some(req.respond_to(0, None).with_body(vec![b'r'; 256 * 1024])) })
    });
    let cfg = ServerConfig {
        max_frame_length: 1024 * 1024,
        max_in_flight_per_connection: 8,
        ..config()
    };
    let server = TestServer::start(handler.clone(), cfg).await;
    let s = connect(&server.addr).await;
    let (_rd, mut wr) = s.into_split();
    let sent = 2000;
    let writer = tokio::spawn(async move {
        for i in 0..sent {
            if wr.write_all(&net::frame(&req(105, i))).await.is_err() {
                break;
            }
        }
        wr
    });
    // Handler calls level off once socket buffers are full: the server stops reading.
    let mut last = usize::MAX;
    let mut stable_rounds = 0;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = handler.calls();
        stable_rounds = if now == last { stable_rounds + 1 } else { 0 };
        last = now;
        if stable_rounds >= 3 {
            break;
        }
    }
    assert!(stable_rounds >= 3, "handler calls kept growing: {last}");
    assert!(
        (last as i32) < sent / 4,
        "server handled {last} of {sent} requests for a client that reads nothing"
    );
    writer.abort();
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests() {
    let handler = FnHandler::new(|peer, req: RemotingCommand| -> BoxFut {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            net::echo(peer, req).await
        })
    });
    let mut server = TestServer::start(handler.clone(), config()).await;
    let addr = server.addr.clone();
    let client = RemotingClient::new(ClientConfig::default());
    let call = {
        let client = client.clone();
        let addr = addr.clone();
        tokio::spawn(async move {
            client
                .invoke(&addr, RemotingCommand::request(105), None)
                .await
        })
    };
    assert!(net::eventually(2 * SECOND, || handler.calls() == 1).await);
    server.trigger_shutdown();
    let resp = call.await.unwrap().unwrap();
    assert_eq!(resp.code, 0, "in-flight request answered during the drain");
    assert!(
        server.shutdown(2 * SECOND).await,
        "serve_connections returned"
    );
    // The listener is gone.
    let err = client
        .invoke(&addr, RemotingCommand::request(105), None)
        .await
        .unwrap_err();
    assert!(err.is_transport(), "{err}");
}

#[tokio::test]
async fn drain_timeout_closes_stuck_requests() {
    let handler = FnHandler::new(|_peer, _req: RemotingCommand| -> BoxFut {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            None
        })
    });
    let cfg = ServerConfig {
        drain_timeout: Duration::from_millis(200),
        ..config()
    };
    let server = TestServer::start(handler.clone(), cfg).await;
    let addr = server.addr.clone();
    let client = RemotingClient::new(ClientConfig {
        request_timeout: 10 * SECOND,
        ..Default::default()
    });
    let call = {
        let client = client.clone();
        let addr = addr.clone();
        tokio::spawn(async move {
            client
                .invoke(&addr, RemotingCommand::request(105), None)
                .await
        })
    };
    assert!(net::eventually(2 * SECOND, || handler.calls() == 1).await);
    let started = tokio::time::Instant::now();
    assert!(
        server.shutdown(3 * SECOND).await,
        "serve_connections returned"
    );
    assert!(started.elapsed() < 2 * SECOND);
    assert_eq!(
        call.await.unwrap().unwrap_err(),
        RemotingError::Closed { addr }
    );
}

#[tokio::test]
async fn connections_over_the_limit_are_refused() {
    let cfg = ServerConfig {
        max_connections: 2,
        ..config()
    };
    let server = TestServer::start(FnHandler::new(net::echo), cfg).await;
    let mut buf = BytesMut::new();
    let mut first = connect(&server.addr).await;
    let mut second = connect(&server.addr).await;
    for s in [&mut first, &mut second] {
        s.write_all(&net::frame(&req(105, 1))).await.unwrap();
        assert!(net::read_frame(s, &mut buf, 2 * SECOND).await.is_some());
    }
    let mut third = connect(&server.addr).await;
    assert!(net::closed_within(&mut third, 2 * SECOND).await);
    // A freed slot is usable again.
    drop(first);
    let mut served = false;
    for _ in 0..20 {
        let mut s = connect(&server.addr).await;
        let _ = s.write_all(&net::frame(&req(105, 2))).await;
        let mut buf = BytesMut::new();
        if net::read_frame(&mut s, &mut buf, Duration::from_millis(200))
            .await
            .is_some()
        {
            served = true;
            break;
        }
    }
    assert!(served);
}

#[tokio::test]
async fn a_panicking_handler_answers_system_error() {
    let handler = FnHandler::new(|_peer, req: RemotingCommand| -> BoxFut {
        Box::pin(async move {
            if req.code == 999 {
                panic!("handler bug");
            }
            Some(req.respond_to(0, None))
        })
    });
    let server = TestServer::start(handler, config()).await;
    let client = RemotingClient::new(ClientConfig::default());
    let resp = client
        .invoke(&server.addr, RemotingCommand::request(999), None)
        .await
        .unwrap();
    assert_eq!(resp.code, 1);
    // The connection survives.
    let resp = client
        .invoke(&server.addr, RemotingCommand::request(105), None)
        .await
        .unwrap();
    assert_eq!(resp.code, 0);
}
