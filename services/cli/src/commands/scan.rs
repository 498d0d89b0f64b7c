//! `ferry scan`: inventory a source cluster (clusters, brokers, topics, groups, ACL users).
//!
//! By default the scan runs on the Ferry server behind `--addr` and is stored as a snapshot
//! (list, diff and export it later); `--local` scans from this process and stores nothing;
//! `--dry-run` scans on the server and stores nothing (only the summary comes back).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use ferry_api::common::v1 as pb_common;
use ferry_api::scanner::v1 as pb;
use ferry_api::scanner::v1::scanner_service_client::ScannerServiceClient;
use ferry_remoting::Credentials;
use ferry_scanner::convert::{group_to_pb, inventory_to_pb, topic_to_pb};
use ferry_scanner::{Inventory, ScanEngine, SourceSpec};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::connect::FerryChannel;
use crate::output::{OutputFormat, print_json, print_table};

/// Exit code of a scan or export that could not read every part of the cluster.
pub const EXIT_PARTIAL: u8 = 2;

/// How to reach the source cluster. `Debug` never shows the secret key.
#[derive(Clone, clap::Args)]
pub struct SourceArgs {
    /// Name server address list of the source, `host:port;host:port`.
    #[arg(long, env = "FERRY_SOURCE_NAMESRV")]
    pub namesrv: Option<String>,
    /// Cluster to read (default: every cluster the name servers know).
    #[arg(long, env = "FERRY_SOURCE_CLUSTER")]
    pub cluster: Option<String>,
    /// ACL admin access key of the source, when its ACL is on.
    #[arg(long, env = "FERRY_SOURCE_ACCESS_KEY")]
    pub access_key: Option<String>,
    /// ACL admin secret key. Prefer the environment variable: flags show up in `ps`.
    #[arg(long, env = "FERRY_SOURCE_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// Per-request timeout towards name servers and brokers, in milliseconds.
    #[arg(long, env = "FERRY_SOURCE_TIMEOUT_MS", default_value_t = 10_000)]
    pub timeout_ms: u64,
}

impl std::fmt::Debug for SourceArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceArgs")
            .field("namesrv", &self.namesrv)
            .field("cluster", &self.cluster)
            .field("access_key", &self.access_key)
            .field("secret_key", &self.secret_key.as_ref().map(|_| "***"))
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

impl SourceArgs {
    pub fn credentials(&self) -> anyhow::Result<Option<Credentials>> {
        match (&self.access_key, &self.secret_key) {
            (None, None) => Ok(None),
            (Some(ak), Some(sk)) if !ak.is_empty() => Ok(Some(Credentials::new(ak, sk))),
            (Some(_), None) => {
                bail!("--access-key needs --secret-key (or FERRY_SOURCE_SECRET_KEY)")
            }
            _ => bail!("--secret-key needs --access-key"),
        }
    }

    pub fn spec(&self, namesrv: &str, cluster: Option<&str>) -> anyhow::Result<SourceSpec> {
        Ok(SourceSpec {
            namesrv_addrs: namesrv.to_string(),
            cluster_name: cluster.map(str::to_string),
            credentials: self.credentials()?,
        })
    }

    pub fn endpoint(&self, namesrv: &str) -> pb_common::ClusterEndpoint {
        pb_common::ClusterEndpoint {
            namesrv_addrs: namesrv.to_string(),
            cluster_name: self.cluster.clone().unwrap_or_default(),
            credentials: self.access_key.as_ref().map(|ak| pb_common::Credentials {
                access_key: ak.clone(),
                secret_key: self.secret_key.clone().unwrap_or_default(),
            }),
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1))
    }
}

/// Flags of `ferry scan`.
#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Label of the source for its snapshots (default: the cluster name).
    #[arg(long)]
    source_id: Option<String>,
    /// Scan from this process, without a Ferry server; nothing is stored.
    #[arg(long)]
    local: bool,
    /// Scan on the Ferry server but store no snapshot: shows the clusters, counts and missing
    /// parts only (topics and groups are listed from a stored snapshot).
    #[arg(long, conflicts_with = "local")]
    dry_run: bool,
    /// Also list system, retry and DLQ topics and system groups.
    #[arg(long)]
    all: bool,
}

/// What `ferry scan` prints, from a server snapshot or a local scan alike.
pub struct Listing {
    pub snapshot: pb::Snapshot,
    pub topics: Vec<pb::TopicInfo>,
    pub groups: Vec<pb::GroupInfo>,
    /// A server-side dry run: a summary only, no topics or groups to list.
    pub dry_run: bool,
}

/// A progress bar on stderr when it is a terminal, hidden otherwise.
pub fn progress_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} scanning brokers {pos}/{len} [{elapsed}] {wide_bar}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Scans in this process, with a progress bar on a terminal.
pub async fn scan_locally(
    source: &SourceArgs,
    namesrv: &str,
    cluster: Option<&str>,
    source_id: Option<&str>,
) -> anyhow::Result<Inventory> {
    let spec = source.spec(namesrv, cluster)?;
    let bar = progress_bar();
    let b = bar.clone();
    let result = ScanEngine::default()
        .scan(&spec, source_id, Some(source.timeout()), &move |p| {
            b.set_length(p.brokers_total as u64);
            b.set_position(p.brokers_done as u64);
        })
        .await;
    bar.finish_and_clear();
    Ok(result?)
}

fn local_listing(inv: &Inventory, all: bool) -> Listing {
    let snapshot = inventory_to_pb(inv);
    Listing {
        snapshot,
        topics: inv
            .topics
            .iter()
            .filter(|t| all || t.class == ferry_core::TopicClass::User)
            .map(topic_to_pb)
            .collect(),
        groups: inv
            .groups
            .iter()
            .filter(|g| all || !g.system)
            .map(group_to_pb)
            .collect(),
        dry_run: false,
    }
}

pub async fn connect(addr: &str) -> anyhow::Result<ScannerServiceClient<FerryChannel>> {
    let channel = crate::connect::endpoint(addr)?
        .connect()
        .await
        .with_context(|| {
            format!("cannot reach Ferry at {addr} (start `ferry standalone`, or scan with --local)")
        })?;
    // Pages and exports are bounded; a large snapshot's export is streamed.
    Ok(
        ScannerServiceClient::new(crate::connect::authorized(channel)?)
            .max_decoding_message_size(64 * 1024 * 1024),
    )
}

async fn server_listing(
    client: &mut ScannerServiceClient<FerryChannel>,
    snapshot: pb::Snapshot,
    all: bool,
) -> anyhow::Result<Listing> {
    let mut topics = Vec::new();
    let mut token = String::new();
    let classes = if all {
        vec![
            pb::TopicClass::User as i32,
            pb::TopicClass::Retry as i32,
            pb::TopicClass::Dlq as i32,
            pb::TopicClass::System as i32,
        ]
    } else {
        Vec::new()
    };
    // Bounded: a page holds up to 1000 and a cluster has far fewer than 10^7 topics.
    for _ in 0..10_000 {
        let page = client
            .list_snapshot_topics(pb::ListSnapshotTopicsRequest {
                snapshot_id: snapshot.snapshot_id.clone(),
                classes: classes.clone(),
                page_size: 1000,
                page_token: token.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        topics.extend(page.topics);
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    let mut groups = Vec::new();
    let mut token = String::new();
    for _ in 0..10_000 {
        let page = client
            .list_snapshot_groups(pb::ListSnapshotGroupsRequest {
                snapshot_id: snapshot.snapshot_id.clone(),
                include_system: all,
                page_size: 1000,
                page_token: token.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        groups.extend(page.groups);
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    Ok(Listing {
        snapshot,
        topics,
        groups,
        dry_run: false,
    })
}

pub async fn run(addr: &str, output: OutputFormat, args: ScanArgs) -> anyhow::Result<ExitCode> {
    let Some(namesrv) = args.source.namesrv.clone() else {
        bail!(
            "--namesrv (or FERRY_SOURCE_NAMESRV) is required: the source's name server list, host:port;host:port"
        );
    };
    let listing = if args.local {
        let inv = scan_locally(
            &args.source,
            &namesrv,
            args.source.cluster.as_deref(),
            args.source_id.as_deref(),
        )
        .await?;
        local_listing(&inv, args.all)
    } else {
        args.source.credentials()?;
        let mut client = connect(addr).await?;
        let bar = progress_bar();
        let snapshot = client
            .scan(pb::ScanRequest {
                source: Some(args.source.endpoint(&namesrv)),
                source_id: args.source_id.clone().unwrap_or_default(),
                timeout_ms: args.source.timeout_ms.min(u64::from(u32::MAX)) as u32,
                dry_run: args.dry_run,
            })
            .await;
        bar.finish_and_clear();
        let snapshot = snapshot?
            .into_inner()
            .snapshot
            .context("the server answered without a snapshot")?;
        if args.dry_run {
            Listing {
                snapshot,
                topics: Vec::new(),
                groups: Vec::new(),
                dry_run: true,
            }
        } else {
            server_listing(&mut client, snapshot, args.all).await?
        }
    };
    print_listing(&listing, output)?;
    Ok(if listing.snapshot.partial {
        ExitCode::from(EXIT_PARTIAL)
    } else {
        ExitCode::SUCCESS
    })
}

fn class_name(c: i32) -> &'static str {
    match pb::TopicClass::try_from(c) {
        Ok(pb::TopicClass::User) => "user",
        Ok(pb::TopicClass::Retry) => "retry",
        Ok(pb::TopicClass::Dlq) => "dlq",
        Ok(pb::TopicClass::System) => "system",
        _ => "?",
    }
}

fn message_type_name(t: i32) -> &'static str {
    match pb::MessageType::try_from(t) {
        Ok(pb::MessageType::Normal) => "NORMAL",
        Ok(pb::MessageType::Fifo) => "FIFO",
        Ok(pb::MessageType::Delay) => "DELAY",
        Ok(pb::MessageType::Transaction) => "TRANSACTION",
        Ok(pb::MessageType::Mixed) => "MIXED",
        _ => "-",
    }
}

fn taken_at_ms(s: &pb::Snapshot) -> i64 {
    s.taken_at
        .as_ref()
        .map_or(0, |t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
}

pub fn print_listing(l: &Listing, output: OutputFormat) -> anyhow::Result<()> {
    let s = &l.snapshot;
    match output {
        OutputFormat::Json => {
            let topics: Vec<Value> = l
                .topics
                .iter()
                .map(|t| {
                    json!({
                        "name": t.name,
                        "namespace": t.namespace,
                        "class": class_name(t.topic_class),
                        "read_queue_nums": t.read_queue_nums,
                        "write_queue_nums": t.write_queue_nums,
                        "total_read_queue_nums": t.total_read_queue_nums,
                        "total_write_queue_nums": t.total_write_queue_nums,
                        "perm": t.perm,
                        "order": t.order,
                        "message_type": message_type_name(t.message_type),
                        "topic_filter_type": t.topic_filter_type,
                        "brokers": t.brokers,
                        "attributes": t.attributes,
                    })
                })
                .collect();
            let groups: Vec<Value> = l
                .groups
                .iter()
                .map(|g| {
                    json!({
                        "name": g.name,
                        "namespace": g.namespace,
                        "system": g.system,
                        "consume_enable": g.consume_enable,
                        "consume_broadcast_enable": g.consume_broadcast_enable,
                        "consume_message_orderly": g.consume_message_orderly,
                        "retry_queue_nums": g.retry_queue_nums,
                        "retry_max_times": g.retry_max_times,
                        "brokers": g.brokers,
                    })
                })
                .collect();
            let clusters: Vec<Value> = s
                .clusters
                .iter()
                .map(|c| {
                    json!({
                        "name": c.name,
                        "brokers": c.brokers.iter().map(|b| json!({
                            "name": b.name,
                            "master_addr": b.master_addr,
                            "addrs": b.addrs,
                            "version": b.version,
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            let mut out = json!({
                "snapshot_id": s.snapshot_id,
                "source_id": s.source_id,
                "namesrv_addrs": s.namesrv_addrs,
                "taken_at_ms": taken_at_ms(s),
                "partial": s.partial,
                "missing": s.missing,
                "notes": s.notes,
                "counts": {
                    "user_topics": s.user_topic_count,
                    "system_topics": s.system_topic_count,
                    "user_groups": s.user_group_count,
                    "system_groups": s.system_group_count,
                    "acl_users": s.acl_user_count,
                },
                "clusters": clusters,
                "acl_users": s.acl_users.iter().map(|u| json!({
                    "username": u.username, "user_type": u.user_type,
                    "user_status": u.user_status, "brokers": u.brokers,
                })).collect::<Vec<_>>(),
                "topics": topics,
                "groups": groups,
            });
            if l.dry_run {
                // Nothing stored, so no topics or groups to list: not empty lists.
                if let Some(o) = out.as_object_mut() {
                    o.remove("topics");
                    o.remove("groups");
                    o.insert("dry_run".into(), json!(true));
                }
            }
            print_json(&out)?;
        }
        OutputFormat::Table => {
            if s.snapshot_id.is_empty() {
                println!("Scan of {} ({}), not stored", s.source_id, s.namesrv_addrs);
            } else {
                println!(
                    "Snapshot {} of {} ({})",
                    s.snapshot_id, s.source_id, s.namesrv_addrs
                );
            }
            println!();
            let rows: Vec<Vec<String>> = s
                .clusters
                .iter()
                .flat_map(|c| {
                    c.brokers.iter().map(move |b| {
                        vec![
                            c.name.clone(),
                            b.name.clone(),
                            if b.master_addr.is_empty() {
                                "-".into()
                            } else {
                                b.master_addr.clone()
                            },
                            if b.version.is_empty() {
                                "?".into()
                            } else {
                                b.version.clone()
                            },
                        ]
                    })
                })
                .collect();
            print_table(&["CLUSTER", "BROKER", "MASTER", "VERSION"], &rows);
            println!();
            if !l.dry_run {
                print_items_tables(l);
            }
            println!(
                "{} user topics, {} system/retry/DLQ topics, {} user groups, {} system groups, {} ACL users",
                s.user_topic_count,
                s.system_topic_count,
                s.user_group_count,
                s.system_group_count,
                s.acl_user_count
            );
            for note in &s.notes {
                println!("note: {note}");
            }
            if l.dry_run {
                println!("dry run: nothing stored");
            }
        }
    }
    if s.partial {
        eprintln!("PARTIAL SCAN: these parts could not be read and are not in the inventory:");
        for m in &s.missing {
            eprintln!("  - {m}");
        }
    }
    Ok(())
}

/// The topic and group tables of a listing, each followed by an empty line.
fn print_items_tables(l: &Listing) {
    let rows: Vec<Vec<String>> = l
        .topics
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                class_name(t.topic_class).into(),
                t.read_queue_nums.to_string(),
                t.write_queue_nums.to_string(),
                ferry_core::perm::perm_to_string(t.perm as u8),
                t.order.to_string(),
                message_type_name(t.message_type).into(),
                t.brokers.join(","),
            ]
        })
        .collect();
    print_table(
        &[
            "TOPIC", "CLASS", "READ", "WRITE", "PERM", "ORDER", "TYPE", "BROKERS",
        ],
        &rows,
    );
    println!();
    let rows: Vec<Vec<String>> = l
        .groups
        .iter()
        .map(|g| {
            vec![
                g.name.clone(),
                g.consume_message_orderly.to_string(),
                g.consume_broadcast_enable.to_string(),
                g.retry_max_times.to_string(),
                g.retry_queue_nums.to_string(),
                g.brokers.join(","),
            ]
        })
        .collect();
    print_table(
        &[
            "GROUP",
            "ORDERLY",
            "BROADCAST",
            "RETRY-MAX",
            "RETRY-QUEUES",
            "BROKERS",
        ],
        &rows,
    );
    println!();
}
