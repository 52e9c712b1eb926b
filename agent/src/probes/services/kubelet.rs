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

/// The process named `kubelet` (the oldest, should it have a helper of the same name) and
/// its seconds since start, from `/proc/<pid>/stat` and `/proc/uptime`; `None` when there
/// is none (or the kubelet runs inside another binary, as in k3s). `known` is the pid found
/// last time: while it is still the kubelet, `/proc` is not scanned again.
pub fn up_seconds(host: &HostRoot, known: Option<u32>) -> Option<(u32, f64)> {
    let uptime: procfs_core::Uptime = host.parse("/proc/uptime").ok()?;
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let age = |pid: u32| {
        let dir = host.path(&format!("/proc/{pid}"));
        if !std::fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim_end() == "kubelet") {
            return None;
        }
        let stat = std::fs::read(dir.join("stat")).ok()?;
        let stat =
            <procfs_core::process::Stat as procfs_core::FromRead>::from_read(stat.as_slice())
                .ok()?;
        Some((
            pid,
            (uptime.uptime - stat.starttime as f64 / ticks).max(0.0),
        ))
    };
    if let Some(found) = known.and_then(age) {
        return Some(found);
    }
    std::fs::read_dir(host.path("/proc"))
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(age)
        .reduce(|a, b| if b.1 > a.1 { b } else { a })
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
