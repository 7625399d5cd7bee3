//! Published ports as Docker writes them (`[ip:][host_port:]container_port[/protocol]`),
//! parsed once for every plugin that publishes ports or checks them: the
//! docker deployer's `ports`, the compose deployer's view of a compose file,
//! and the route checks that keep two stages off one host address.

use std::net::{IpAddr, SocketAddr};

/// One published port: `[ip:][host_port:]container_port[/protocol]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// Empty for "all interfaces", as Docker.
    pub host_ip: String,
    /// `None`: the engine picks a free port.
    pub host_port: Option<u16>,
    pub container_port: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
}

impl PortSpec {
    /// The engine's key for the container side: `80/tcp`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.container_port, self.protocol)
    }
}

impl PortSpec {
    /// Whether this entry publishes a fixed host port that `address`
    /// (an address wharf would listen on) also needs: same port, TCP, and
    /// host IPs that overlap (either side "all interfaces", or equal).
    pub fn claims(&self, address: SocketAddr) -> bool {
        self.protocol == "tcp"
            && self.host_port == Some(address.port())
            && (self.host_ip.is_empty()
                || address.ip().is_unspecified()
                || self
                    .host_ip
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_unspecified() || ip == address.ip()))
    }

    /// The host address this entry fixes, when it fixes one (all
    /// interfaces as `0.0.0.0`).
    pub fn fixed_address(&self) -> Option<SocketAddr> {
        let port = self.host_port?;
        let ip = if self.host_ip.is_empty() {
            IpAddr::from([0, 0, 0, 0])
        } else {
            self.host_ip.parse().ok()?
        };
        Some(SocketAddr::new(ip, port))
    }
}

/// Parse one entry as Docker's `-p` takes it (no ranges).
///
/// # Errors
/// What is wrong with the entry, for a message that names the key.
pub fn parse_port(text: &str) -> Result<PortSpec, String> {
    let (spec, protocol) = match text.rsplit_once('/') {
        Some((spec, protocol)) => (spec, protocol.to_ascii_lowercase()),
        None => (text, "tcp".to_string()),
    };
    if !matches!(protocol.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("protocol '{protocol}' must be tcp, udp or sctp"));
    }
    let (host_ip, rest) = if let Some(after) = spec.strip_prefix('[') {
        let (ip, rest) = after
            .split_once(']')
            .ok_or("an IPv6 address needs its closing ']'")?;
        let rest = rest
            .strip_prefix(':')
            .ok_or("expected ':' after the IPv6 address")?;
        (Some(ip.to_string()), rest)
    } else {
        match spec.matches(':').count() {
            0 | 1 => (None, spec),
            2 => match spec.split_once(':') {
                Some((ip, rest)) => (Some(ip.to_string()), rest),
                None => (None, spec),
            },
            _ => return Err("expected [ip:][host_port:]container_port[/protocol]".into()),
        }
    };
    if let Some(ip) = &host_ip {
        if !ip.is_empty() && ip.parse::<IpAddr>().is_err() {
            return Err(format!("'{ip}' is not an IP address"));
        }
    }
    let (host_port, container_port) = match rest.split_once(':') {
        Some((host, container)) => (Some(host), container),
        None => (None, rest),
    };
    let number = |text: &str, what: &str| -> Result<u16, String> {
        if text.contains('-') {
            return Err("port ranges are not supported; list each port".into());
        }
        match text.parse::<u16>() {
            Ok(0) | Err(_) => Err(format!("{what} '{text}' is not a port number (1-65535)")),
            Ok(port) => Ok(port),
        }
    };
    let container_port = number(container_port, "container port")?;
    let host_port = match host_port {
        None | Some("") => None,
        Some(text) => Some(number(text, "host port")?),
    };
    Ok(PortSpec {
        host_ip: host_ip.unwrap_or_default(),
        host_port,
        container_port,
        protocol,
    })
}
