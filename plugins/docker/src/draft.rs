//! The `[docker]` table of an auto-created project, from what the image
//! declares: its first EXPOSEd TCP port (or the `wharf.port` label)
//! published on 127.0.0.1 only, a health probe when the image names its
//! path (`wharf.health.path`), restart `unless-stopped`; nothing
//! privileged, no host mounts, no host network.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, TcpListener};

use wharf_plugin_api::draft::{comment_text, quoted};
use wharf_plugin_api::{Draft, DraftInput, ImageFacts};

/// How far above its first choice a host port is looked for.
pub const PORT_SEARCH: u16 = 100;

/// The draft for `input`. Blocking: it probes host ports.
pub fn draft(input: &DraftInput<'_>) -> Draft {
    let defaults = [
        "Safe defaults: ports are published on 127.0.0.1 only (put a reverse proxy",
        "in front, or change the address deliberately); no privileged mode, no",
        "host mounts, no host network; restart unless-stopped.",
    ]
    .map(str::to_string)
    .to_vec();
    let port = input.facts.ok().and_then(container_port);
    let missing = match (input.facts, port) {
        (Err(why), _) => vec![
            "NO PORTS: wharf could not inspect the image when it created this file:".into(),
            format!("  {}", comment_text(why)),
            "Add e.g. ports = [\"127.0.0.1:8080:80\"] under [docker] once you know".into(),
            "the container's port.".into(),
        ],
        (Ok(_), None) => {
            vec!["NO PORTS: the image EXPOSEs no TCP port (nor sets a wharf.port label).".into()]
        }
        (Ok(_), Some(_)) => Vec::new(),
    };
    let mut table = String::new();
    if let (Ok(facts), Some(port)) = (input.facts, port) {
        let host = choose_host_port(port, input.taken_ports);
        let why = match (port < 1024, host == port || host == 8000 + port) {
            (false, true) => "the same number".to_string(),
            (true, true) => format!("8000 + the privileged port {port}"),
            (false, false) => format!("{port} was taken, the next free one"),
            (true, false) => format!("{} was taken, the next free one", 8000 + port),
        };
        let _ = writeln!(
            table,
            "# Container port {port}/tcp published on 127.0.0.1:{host} ({why}; free when\n# this file was written)."
        );
        let _ = writeln!(table, "ports = [\"127.0.0.1:{host}:{port}\"]");
        if let Some(path) = facts
            .labels
            .get("wharf.health.path")
            .map(|p| p.trim())
            .filter(|p| p.starts_with('/') && !p.chars().any(char::is_whitespace))
        {
            let _ = writeln!(
                table,
                "health = {{ http = {{ path = {}, port = {port} }} }}",
                quoted(path)
            );
        }
    }
    table.push_str("restart = \"unless-stopped\"\n");
    Draft {
        defaults,
        missing,
        table,
    }
}

/// The container port to publish: the `wharf.port` label, else the first
/// EXPOSEd TCP port.
fn container_port(facts: &ImageFacts) -> Option<u16> {
    if let Some(port) = facts
        .labels
        .get("wharf.port")
        .and_then(|p| p.trim().parse::<u16>().ok())
        .filter(|p| *p > 0)
    {
        return Some(port);
    }
    facts.exposed_ports.iter().find_map(|p| {
        let (number, protocol) = p.split_once('/').unwrap_or((p, "tcp"));
        (protocol == "tcp").then(|| number.parse().ok()).flatten()
    })
}

/// The host port for a container port: the same number when unprivileged,
/// else 8000 + it (80 → 8080, 443 → 8443); the next free one when taken by
/// another project or bound right now.
pub fn choose_host_port(container_port: u16, taken: &BTreeSet<u16>) -> u16 {
    let first = if container_port < 1024 {
        8000 + container_port
    } else {
        container_port
    };
    (0..PORT_SEARCH)
        .filter_map(|offset| first.checked_add(offset))
        .find(|port| {
            !taken.contains(port) && TcpListener::bind((Ipv4Addr::LOCALHOST, *port)).is_ok()
        })
        .unwrap_or(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taken_host_ports_are_skipped() {
        let taken: BTreeSet<u16> = [18081, 18082].into();
        let port = choose_host_port(18081, &taken);
        assert!(port > 18082 && port < 18081 + PORT_SEARCH, "{port}");
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let bound = listener.local_addr().unwrap().port();
        assert_ne!(choose_host_port(bound, &BTreeSet::new()), bound);
    }
}
