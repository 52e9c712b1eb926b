//! Asking the kubelet how it is: `GET /healthz` on its healthz port (plain HTTP on the
//! node's loopback; the agent runs on the host network), and how long its process has run.

use std::{
    io::{Read, Write},
    net::{TcpStream, ToSocketAddrs},
    time::Duration,
};

use crate::host::HostRoot;

/// The most of an answer read: `ok`, or a short list of failed checks.
const MAX_ANSWER: u64 = 4096;

/// `Ok(())` when `/healthz` at `address` answers 200; else what went wrong, in words.
pub fn healthz(address: &str, timeout: Duration) -> Result<(), String> {
    let addr = address
        .to_socket_addrs()
        .map_err(|e| format!("{address}: {e}"))?
        .next()
        .ok_or_else(|| format!("{address}: no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| describe(&e))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| describe(&e))?;
    write!(
        stream,
        "GET /healthz HTTP/1.0\r\nHost: {address}\r\nUser-Agent: nodemedic-agent\r\n\r\n"
    )
    .map_err(|e| describe(&e))?;
    let mut raw = Vec::new();
    stream
        .take(MAX_ANSWER)
        .read_to_end(&mut raw)
        .map_err(|e| describe(&e))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| {
            format!(
                "not an HTTP answer: {:?}",
                head.lines().next().unwrap_or("")
            )
        })?;
    if status == 200 {
        Ok(())
    } else {
        Err(format!("HTTP {status}: {}", one_line(body)))
    }
}

fn describe(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused (nothing listens)".into(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => "timed out".into(),
        _ => e.to_string(),
    }
}

fn one_line(body: &str) -> String {
    let joined: Vec<&str> = body.split_whitespace().collect();
    let mut s = joined.join(" ");
    s.truncate(200);
    s
}

/// Seconds since the process named `kubelet` started, from `/proc/<pid>/stat` and
/// `/proc/uptime`; `None` when there is none (or the kubelet runs inside another binary,
/// as in k3s).
pub fn up_seconds(host: &HostRoot) -> Option<f64> {
    let uptime: procfs_core::Uptime = host.parse("/proc/uptime").ok()?;
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let entries = std::fs::read_dir(host.path("/proc")).ok()?;
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim_end() == "kubelet")
        })
        .filter_map(|e| {
            let stat = std::fs::read(e.path().join("stat")).ok()?;
            <procfs_core::process::Stat as procfs_core::FromRead>::from_read(stat.as_slice()).ok()
        })
        .map(|s| (uptime.uptime - s.starttime as f64 / ticks).max(0.0))
        // The oldest, should the kubelet have a helper of the same name.
        .reduce(f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_and_garbled_answers_are_said_in_words() {
        // A port of the machine's loopback nobody listens on.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = free.local_addr().unwrap().to_string();
        drop(free);
        let e = healthz(&addr, Duration::from_secs(1)).unwrap_err();
        assert!(e.contains("refused"), "{e}");
        assert!(healthz("not an address", Duration::from_secs(1)).is_err());
    }
}
