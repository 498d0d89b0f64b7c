//! ACL signing through the client, and the secret key never showing up in logs or
//! errors.

#[path = "support/net.rs"]
mod net;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_remoting::{
    BrokerAdmin, ClientConfig, Credentials, NameServerClient, RemotingClient, RemotingCommand,
    ServerConfig, SubscriptionGroupConfig, verify_request,
};
use net::{BoxFut, FnHandler, TestServer};

const SECRET: &str = "s3cr3t-Key-never-logged";
const TOKEN: &str = "t0ken-never-logged";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn signed_requests_verify_and_the_secret_never_leaks() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // The test runtime is single-threaded, so every task logs through this.
    let _guard = tracing::subscriber::set_default(subscriber);

    let verified = Arc::new(Mutex::new(Vec::new()));
    let record = verified.clone();
    let handler = FnHandler::new(move |_peer, req: RemotingCommand| -> BoxFut {
        let ok = verify_request(&req, SECRET).unwrap();
        record.lock().unwrap().push((
            req.code,
            ok,
            req.ext("AccessKey").map(str::to_string),
            req.ext("SecurityToken").map(str::to_string),
            req.ext_fields.values().any(|v| v.contains(SECRET)),
        ));
        Box::pin(async move {
            match req.code {
                // Answer slowly to provoke a timeout.
                28 => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    None
                }
                105 => Some(req.respond_to(17, Some("no route".into()))),
                _ => Some(req.respond_to(0, None)),
            }
        })
    });
    let server = TestServer::start(handler, ServerConfig::default()).await;
    let creds = Credentials::new("ferryAK", SECRET).with_security_token(TOKEN);
    let client = RemotingClient::new(ClientConfig {
        credentials: Some(creds),
        request_timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_millis(300),
        ..Default::default()
    });

    // Requests with headers, with a body, and from both typed clients.
    let ns = NameServerClient::new(&server.addr, client.clone()).unwrap();
    assert_eq!(ns.topic_route("TopicTest").await.unwrap(), None);
    let admin = BrokerAdmin::new(client.clone());
    let group = SubscriptionGroupConfig {
        group_name: "G".into(),
        ..Default::default()
    };
    admin.create_group(&server.addr, &group).await.unwrap();
    // A request already carrying a stale signature is re-signed.
    let stale = RemotingCommand::request(34)
        .with_ext_field("Signature", "bogus")
        .with_body(&b"{}"[..]);
    client.invoke(&server.addr, stale, None).await.unwrap();

    let seen = verified.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    for (code, ok, ak, token, leaked) in &seen {
        assert!(ok, "signature of request {code} does not verify");
        assert_eq!(ak.as_deref(), Some("ferryAK"));
        assert_eq!(token.as_deref(), Some(TOKEN));
        assert!(!leaked);
    }

    // Failures of every kind, with credentials configured.
    let mut errors = Vec::new();
    errors.push(admin.broker_runtime_info(&server.addr).await.unwrap_err());
    errors.push(
        client
            .invoke(&net::dead_addr().await, RemotingCommand::request(105), None)
            .await
            .unwrap_err(),
    );
    let dead_ns = NameServerClient::new(
        &format!("{};127.0.0.1", net::dead_addr().await),
        client.clone(),
    );
    errors.push(dead_ns.unwrap_err());
    let all_dead = NameServerClient::new(&net::dead_addr().await, client.clone()).unwrap();
    errors.push(all_dead.cluster_info().await.unwrap_err());
    let texts: Vec<String> = errors
        .iter()
        .flat_map(|e| [e.to_string(), format!("{e:?}")])
        .chain([format!("{client:?}"), format!("{:?}", client.config())])
        .collect();
    for t in &texts {
        assert!(!t.contains(SECRET), "secret in {t}");
        assert!(!t.contains(TOKEN), "token in {t}");
    }

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("timed out"),
        "expected captured logs, got: {logs}"
    );
    assert!(!logs.contains(SECRET), "secret key in logs");
    assert!(!logs.contains(TOKEN), "security token in logs");
}
