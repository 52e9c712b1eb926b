//! One DNS query to one nameserver over UDP or TCP, with a deadline, telling apart every way
//! it can end. Blocking sockets: the probe runs on a blocking thread and bounds its own
//! concurrency.

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpStream, UdpSocket},
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Message, Query, ResponseCode},
    rr::{Name, RecordType},
};

/// UDP or TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// UDP, as resolvers ask first.
    Udp,
    /// TCP, used after a truncated UDP answer (and always with `use-vc`).
    Tcp,
}

impl Protocol {
    /// `udp` or `tcp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
        }
    }
}

/// How a query ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The server answered.
    Answered {
        /// Time to the answer.
        latency: Duration,
        /// NOERROR, NXDOMAIN, SERVFAIL, ...
        rcode: ResponseCode,
        /// The TC bit: the answer did not fit (UDP).
        truncated: bool,
        /// The answer records' data, sorted (`10.96.0.1`).
        answers: Vec<String>,
    },
    /// No answer within the deadline.
    Timeout,
    /// Nothing listens: connection refused, or ICMP port unreachable for UDP.
    Unreachable(String),
    /// Something else failed (a malformed answer, a socket error).
    Failed(String),
}

impl Outcome {
    /// A short word for tables and messages.
    pub fn label(&self) -> String {
        match self {
            Outcome::Answered { rcode, .. } => rcode_name(*rcode),
            Outcome::Timeout => "timeout".to_owned(),
            Outcome::Unreachable(why) => format!("unreachable: {why}"),
            Outcome::Failed(why) => format!("failed: {why}"),
        }
    }
}

/// The response code as dig prints it: `NOERROR`, `NXDOMAIN`, `SERVFAIL`, ...
pub fn rcode_name(rcode: ResponseCode) -> String {
    match rcode {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        other => format!("{other:?}").to_uppercase(),
    }
}

/// Asks `server` for the A records of `name` (an absolute name: it is not expanded).
pub fn query(server: SocketAddr, name: &str, protocol: Protocol, timeout: Duration) -> Outcome {
    let request = match request(name) {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(format!("cannot encode a query for {name:?}: {e}")),
    };
    let started = Instant::now();
    let result = match protocol {
        Protocol::Udp => udp(server, &request.1, request.0, timeout, started),
        Protocol::Tcp => tcp(server, &request.1, timeout),
    };
    match result {
        Ok(bytes) => decode(&bytes, started.elapsed()),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            Outcome::Timeout
        }
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Outcome::Unreachable(e.to_string()),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

fn request(name: &str) -> Result<(u16, Vec<u8>), String> {
    let name = Name::from_ascii(name).map_err(|e| e.to_string())?;
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(name, RecordType::A));
    let id = message.metadata.id;
    message
        .to_vec()
        .map(|bytes| (id, bytes))
        .map_err(|e| e.to_string())
}

fn udp(
    server: SocketAddr,
    request: &[u8],
    id: u16,
    timeout: Duration,
    started: Instant,
) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .expect("a literal address");
    let socket = UdpSocket::bind(local)?;
    // Connected: an ICMP port unreachable comes back as ECONNREFUSED on recv.
    socket.connect(server)?;
    socket.send(request)?;
    let mut buf = vec![0u8; 4096];
    loop {
        let left = timeout
            .checked_sub(started.elapsed())
            .filter(|d| !d.is_zero())
            .ok_or(ErrorKind::TimedOut)?;
        socket.set_read_timeout(Some(left))?;
        let n = socket.recv(&mut buf)?;
        // A late answer to an earlier query is not this one's.
        if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

fn tcp(server: SocketAddr, request: &[u8], timeout: Duration) -> std::io::Result<Vec<u8>> {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&server, timeout)?;
    let left = timeout
        .saturating_sub(started.elapsed())
        .max(Duration::from_millis(1));
    stream.set_read_timeout(Some(left))?;
    stream.set_write_timeout(Some(left))?;
    let len = u16::try_from(request.len()).map_err(|_| ErrorKind::InvalidInput)?;
    let mut framed = Vec::with_capacity(request.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(request);
    stream.write_all(&framed)?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len)?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf)?;
    Ok(buf)
}

fn decode(bytes: &[u8], latency: Duration) -> Outcome {
    match Message::from_vec(bytes) {
        Ok(m) => {
            let mut answers: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
            answers.sort();
            Outcome::Answered {
                latency,
                rcode: m.metadata.response_code,
                truncated: m.metadata.truncation,
                answers,
            }
        }
        Err(e) => Outcome::Failed(format!("malformed answer: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_listening_is_unreachable_not_a_timeout() {
        // A UDP port just freed on loopback: the kernel answers ICMP port unreachable.
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let outcome = query(
            port,
            "kubernetes.default.svc.cluster.local.",
            Protocol::Udp,
            Duration::from_secs(1),
        );
        assert!(matches!(outcome, Outcome::Unreachable(_)), "{outcome:?}");
        let outcome = query(
            port,
            "kubernetes.default.svc.cluster.local.",
            Protocol::Tcp,
            Duration::from_secs(1),
        );
        assert!(matches!(outcome, Outcome::Unreachable(_)), "{outcome:?}");
    }

    #[test]
    fn a_silent_server_is_a_timeout() {
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let outcome = query(
            silent.local_addr().unwrap(),
            "a.example.",
            Protocol::Udp,
            Duration::from_millis(200),
        );
        assert_eq!(outcome, Outcome::Timeout);
    }

    #[test]
    fn garbage_answers_are_failures() {
        assert!(matches!(
            decode(&[1, 2, 3], Duration::ZERO),
            Outcome::Failed(_)
        ));
        assert!(matches!(
            query(
                "127.0.0.1:1".parse().unwrap(),
                "bad..name",
                Protocol::Udp,
                Duration::from_millis(10)
            ),
            Outcome::Failed(_)
        ));
    }
}
