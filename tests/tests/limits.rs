//! Every request is bounded: streams per caller, journaled refusals per source, and the HTTP
//! listener's connections, headers and bodies; `/metrics` and the lists behind credentials.
//! HTTP is driven by curl and by raw sockets, as firewalls and attackers drive it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use parapet_tests::{Parapet, block, v1 as pb};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};
use tonic::Code;

fn watch_all() -> pb::WatchIntentsRequest {
    pb::WatchIntentsRequest::default()
}

#[tokio::test]
async fn watch_streams_are_capped_per_caller_and_in_all() {
    let p = Parapet::start_configured(None, |c, _| {
        c.limits.watches_per_caller = 2;
        c.limits.watches = 3;
    })
    .await
    .unwrap();
    let mut open = Vec::new();
    for _ in 0..2 {
        open.push(p.intents().watch(watch_all()).await.unwrap().into_inner());
    }
    let third = p.intents().watch(watch_all()).await.unwrap_err();
    assert_eq!(third.code(), Code::ResourceExhausted);
    assert!(
        third
            .message()
            .starts_with("`127.0.0.1` holds 2 watch streams already"),
        "{}",
        third.message()
    );
    // a stream that ends gives its place back
    drop(open.pop());
    let again = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match p.intents().watch(watch_all()).await {
                Ok(s) => break s.into_inner(),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
    .expect("the closed stream's place never came back");
    open.push(again);
    // a stream still sees what happens
    p.submit(block("seen", "198.51.100.1")).await.unwrap();
    let event = open[0].message().await.unwrap().unwrap();
    assert_eq!(event.event, "received");
    let metrics = metrics(&p, None).await;
    assert!(
        metrics.contains(
            "parapet_calls_refused_total{cause=\"watch_limit\",code=\"ResourceExhausted\""
        ),
        "{metrics}"
    );
}

fn denied(key: &str) -> pb::SubmitIntentRequest {
    // the example policy refuses a /8 outright
    let mut r = block(key, "198.51.100.1");
    r.steps[0].target.as_mut().unwrap().id = "10.0.0.0/8".into();
    r
}

#[tokio::test]
async fn denied_intents_count_against_their_sources_quota() {
    let p = Parapet::start_configured(None, |c, _| {
        c.limits.denials_per_minute = 60.try_into().unwrap();
        c.limits.denial_burst = 3.try_into().unwrap();
    })
    .await
    .unwrap();
    for i in 0..3 {
        let r = p.submit(denied(&format!("d{i}"))).await.unwrap();
        assert_eq!(r.state, pb::IntentState::Denied as i32);
    }
    let refused = p.submit(denied("d3")).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused
            .message()
            .starts_with("source `xdr` had more than 60 intents denied in a minute"),
        "{}",
        refused.message()
    );
    // what may act still goes through, and another source has its own quota
    p.submit(block("fine", "198.51.100.2")).await.unwrap();
    let mut other = denied("o1");
    other.source = "siem".into();
    assert!(p.submit(other).await.is_ok());
    // the refused one left nothing in the journal
    let denials = p
        .entries(pb::QueryJournalRequest {
            events: vec!["decided".into()],
            outcome: pb::Outcome::Deny as i32,
            ..Default::default()
        })
        .await;
    assert_eq!(denials.len(), 4, "{denials:?}");
    // the quota refills with time
    p.clock.advance(Duration::from_secs(2));
    assert!(p.submit(denied("d4")).await.is_ok());
    let metrics = metrics(&p, None).await;
    assert!(
        metrics.contains(
            "parapet_calls_refused_total{cause=\"denial_quota\",code=\"ResourceExhausted\""
        ),
        "{metrics}"
    );
}

/// `curl` against the HTTP listener: status code and body. (Run as a child the runtime
/// awaits: the server answering it runs on the same runtime.)
async fn curl(args: &[&str], url: &str) -> (u16, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-s", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .await
        .expect("curl");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap_or(0), body.to_owned())
}

async fn metrics(p: &Parapet, token: Option<&str>) -> String {
    let auth = token.map(|t| format!("Authorization: Bearer {t}"));
    let args: Vec<&str> = auth.iter().flat_map(|a| ["-H", a.as_str()]).collect();
    let (code, body) = curl(&args, &format!("http://{}/metrics", p.http_addr)).await;
    assert_eq!(code, 200, "{body}");
    body
}

#[tokio::test]
async fn the_lists_and_metrics_ask_for_credentials_when_configured() {
    let p = Parapet::start_configured(None, |c, dir| {
        for (name, secret) in [
            ("edl-token", "list-reader-token"),
            ("edl-password", "s3cret"),
            ("metrics-token", "scraper-token"),
        ] {
            std::fs::write(dir.join(name), format!("{secret}\n")).unwrap();
        }
        c.edl_access.token_file = Some(dir.join("edl-token"));
        c.edl_access.username = Some("firewall".into());
        c.edl_access.password_file = Some(dir.join("edl-password"));
        c.http.metrics_token_file = Some(dir.join("metrics-token"));
    })
    .await
    .unwrap();
    p.submit(block("a", "198.51.100.1")).await.unwrap();
    let list = format!("http://{}/edl/block", p.http_addr);
    let (code, _) = curl(&[], &list).await;
    assert_eq!(code, 401);
    let out = tokio::process::Command::new("curl")
        .args(["-s", "-D", "-", "-o", "/dev/null", &list])
        .output()
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("www-authenticate: Basic realm=\"parapet\""),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(curl(&["-u", "firewall:wrong"], &list).await.0, 401);
    assert_eq!(curl(&["-u", "intruder:s3cret"], &list).await.0, 401);
    assert_eq!(
        curl(&["-u", "firewall:s3cret"], &list).await,
        (200, "198.51.100.1\n".into())
    );
    assert_eq!(
        curl(&["-H", "Authorization: Bearer list-reader-token"], &list).await,
        (200, "198.51.100.1\n".into())
    );
    // liveness needs nothing
    assert_eq!(
        curl(&[], &format!("http://{}/healthz", p.http_addr))
            .await
            .0,
        200
    );
    let scrape = format!("http://{}/metrics", p.http_addr);
    assert_eq!(curl(&[], &scrape).await.0, 401);
    assert_eq!(
        curl(&["-H", "Authorization: Bearer list-reader-token"], &scrape)
            .await
            .0,
        401
    );
    assert!(
        metrics(&p, Some("scraper-token"))
            .await
            .contains("parapet_intents_decided")
    );
}

#[tokio::test]
async fn metrics_can_have_an_address_of_their_own() {
    let p = Parapet::start_configured(None, |c, _| {
        c.http.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    })
    .await
    .unwrap();
    let port = p.metrics_addr.unwrap();
    assert_eq!(
        curl(&[], &format!("http://{}/metrics", p.http_addr))
            .await
            .0,
        404
    );
    let (code, body) = curl(&[], &format!("http://{port}/metrics")).await;
    assert_eq!(code, 200);
    assert!(body.contains("parapet_journal_entries_total"), "{body}");
    assert_eq!(curl(&[], &format!("http://{port}/edl/block")).await.0, 404);
}

/// A connection from `from` (any 127/8 address works on loopback).
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// Whether the server closed the connection within `within`.
async fn closed_within(conn: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, conn.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn slow_and_idle_clients_cannot_starve_the_lists() {
    let p = Parapet::start_configured(None, |c, _| {
        c.http.limits.header_timeout = Duration::from_secs(1);
        c.http.limits.max_connections_per_ip = 8;
        c.http.limits.max_connections = 64;
        c.http.limits.max_body_bytes = 4096;
    })
    .await
    .unwrap();
    p.submit(block("a", "198.51.100.1")).await.unwrap();
    let addr = p.http_addr;

    // a slow-loris: headers a byte at a time; the server hangs up once the time is up
    let mut slow = connect_from("127.0.0.1", addr).await;
    let writer = async {
        for b in b"GET /edl/block HTTP/1.1\r\nHost: x\r\nX-Slow: " {
            if slow.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), writer)
        .await
        .ok();
    assert!(
        closed_within(&mut slow, Duration::from_secs(10)).await,
        "the slow client was never cut off"
    );

    // thousands of idle connections from one address: a handful are kept, the rest closed
    let mut idle = Vec::new();
    for _ in 0..2000 {
        match TcpStream::connect(addr).await {
            Ok(c) => idle.push(c),
            Err(_) => break,
        }
    }
    let mut kept = 0;
    for c in &mut idle {
        if !closed_within(c, Duration::from_millis(20)).await {
            kept += 1;
        }
    }
    assert!(kept <= 8, "{kept} idle connections from one address kept");
    // a firewall polling from elsewhere is served meanwhile
    let (code, body) = curl(
        &["--interface", "127.0.0.2"],
        &format!("http://{addr}/edl/block"),
    )
    .await;
    assert_eq!((code, body.as_str()), (200, "198.51.100.1\n"));
    // and once the idle ones time out, so is the first address again
    drop(idle);
    let served = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            if curl(&[], &format!("http://{addr}/edl/block")).await.0 == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(served.is_ok());

    // a body larger than the limit is refused before it is read
    let big = "x".repeat(10_000);
    let (code, _) = curl(
        &[
            "-X",
            "GET",
            "-H",
            "Content-Type: text/plain",
            "--data-binary",
            &big,
        ],
        &format!("http://{addr}/edl/block"),
    )
    .await;
    assert_eq!(code, 413);
    let metrics = metrics(&p, None).await;
    assert!(
        metrics.contains(
            "parapet_calls_refused_total{cause=\"http_connections\",code=\"Unavailable\""
        ),
        "{metrics}"
    );
}
