//! What the plugin reads from the operator's compose file — read only, never
//! written: the services it declares, a service's `image:` template, and
//! whether that template uses the deployment's variable.
//!
//! Compose interpolates `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
//! `${VAR:?error}`, `${VAR?error}` and `${VAR:+alternative}`; `$$` is a
//! literal `$`. [`Template`] understands that much, so that the value a
//! running container was started with can be read back from its image
//! reference (for the rollback).

use std::collections::BTreeMap;
use std::path::Path;

use wharf_plugin_api::ports::{parse_port, PortSpec};
use yaml_serde::Value;

/// The parts of a compose file the plugin cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeFile {
    /// Service name → its `image:` (`None` for a build-only service).
    pub services: BTreeMap<String, Option<String>>,
    /// Service name → what a route needs to know of it.
    pub facts: BTreeMap<String, ServiceFacts>,
}

/// What a route needs to know of a service: it is scaled to two during a
/// deployment, so it may not fix its container's name, and the proxy needs
/// the route's port published on a host port the engine chooses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceFacts {
    /// `container_name:`, which makes a second container impossible.
    pub container_name: Option<String>,
    /// `ports:` entries, short or long syntax, as Docker's `-p` would read
    /// them; an entry with `${…}` in it (or otherwise unreadable) is kept
    /// as written.
    pub ports: Vec<Result<PortSpec, String>>,
}

impl ComposeFile {
    /// Read and parse `path`.
    ///
    /// # Errors
    /// A message naming the file and what is wrong (unreadable, not YAML,
    /// no services).
    pub fn read(path: &Path) -> Result<ComposeFile, String> {
        let text = wharf_plugin_api::files::read_limited_to_string(path)
            .map_err(|e| format!("cannot read compose file {}: {e}", path.display()))?;
        ComposeFile::parse(&text).map_err(|e| format!("compose file {} {e}", path.display()))
    }

    /// Parse a compose file's text: the `services:` mapping of the v2/v3
    /// and Compose Specification layouts, or — for a file with neither
    /// `services:` nor `version:` — the legacy v1 layout where every
    /// top-level key is a service. YAML merge keys (`<<: *base`) are applied.
    ///
    /// # Errors
    /// "is not valid YAML: …" or "declares no services".
    pub fn parse(text: &str) -> Result<ComposeFile, String> {
        let mut value: Value =
            yaml_serde::from_str(text).map_err(|e| format!("is not valid YAML: {e}"))?;
        value
            .apply_merge()
            .map_err(|e| format!("is not valid YAML: {e}"))?;
        let Value::Mapping(top) = &value else {
            return Err("is not a mapping of keys (expected `services:`)".into());
        };
        let services = match (top.get("services"), top.get("version")) {
            (Some(Value::Mapping(services)), _) => services,
            (Some(_), _) => return Err("has a `services:` key that is not a mapping".into()),
            (None, Some(_)) => return Err("declares no services (no `services:` key)".into()),
            (None, None) => top,
        };
        let mut found = BTreeMap::new();
        let mut facts = BTreeMap::new();
        for (name, service) in services {
            let Some(name) = name.as_str() else { continue };
            let image = service
                .get("image")
                .and_then(Value::as_str)
                .map(str::to_string);
            found.insert(name.to_string(), image);
            facts.insert(name.to_string(), ServiceFacts::of(service));
        }
        if found.is_empty() {
            return Err("declares no services".into());
        }
        Ok(ComposeFile {
            services: found,
            facts,
        })
    }

    /// Service names, comma-separated, for error messages.
    pub fn service_list(&self) -> String {
        self.services
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl ServiceFacts {
    fn of(service: &Value) -> ServiceFacts {
        let ports = match service.get("ports") {
            Some(Value::Sequence(entries)) => entries.iter().map(port_entry).collect(),
            _ => Vec::new(),
        };
        ServiceFacts {
            container_name: service.get("container_name").and_then(scalar_text),
            ports,
        }
    }
}

/// A YAML scalar as compose reads it: a string, or a number written bare.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// One `ports:` entry: `"127.0.0.1::80"`, `80`, or the long syntax
/// (`target`, `published`, `host_ip`, `protocol`).
fn port_entry(entry: &Value) -> Result<PortSpec, String> {
    let text = match entry {
        Value::Mapping(_) => {
            let field = |key: &str| entry.get(key).and_then(scalar_text);
            let target =
                field("target").ok_or_else(|| "a ports entry without target".to_string())?;
            let published = field("published").unwrap_or_default();
            let host_ip = match field("host_ip") {
                Some(ip) if ip.contains(':') => format!("[{ip}]:"),
                Some(ip) => format!("{ip}:"),
                None => String::new(),
            };
            let protocol = field("protocol")
                .map(|p| format!("/{p}"))
                .unwrap_or_default();
            format!("{host_ip}{published}:{target}{protocol}")
        }
        other => scalar_text(other).ok_or_else(|| "a ports entry that is not text".to_string())?,
    };
    if text.contains('$') {
        return Err(text);
    }
    parse_port(&text).map_err(|_| text)
}

/// One piece of an interpolated string.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    /// A variable whose value is substituted as is (`$V`, `${V}`, `${V:-d}`, …).
    Value(String),
    /// Something whose text we cannot know (`${V:+alt}`, a broken reference).
    Unknown,
}

/// An `image:` value, split into literal text and variable references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    pub fn parse(text: &str) -> Template {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        let flush = |literal: &mut String, pieces: &mut Vec<Piece>| {
            if !literal.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(literal)));
            }
        };
        while let Some((at, c)) = chars.next() {
            if c != '$' {
                literal.push(c);
                continue;
            }
            match chars.peek().map(|(_, c)| *c) {
                Some('$') => {
                    chars.next();
                    literal.push('$');
                }
                Some('{') => {
                    let rest = text.get(at + 2..).unwrap_or_default();
                    let Some(end) = rest.find('}') else {
                        flush(&mut literal, &mut pieces);
                        pieces.push(Piece::Unknown);
                        break;
                    };
                    let inner = rest.get(..end).unwrap_or_default();
                    // Skip past the closing brace.
                    while chars.next_if(|(i, _)| *i <= at + 2 + end).is_some() {}
                    flush(&mut literal, &mut pieces);
                    let name_len = inner
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(inner.len());
                    let (name, modifier) = inner.split_at(name_len);
                    // `${V:+alt}` and `${V+alt}` substitute `alt`, not the value.
                    let substitutes_value = modifier.is_empty()
                        || ["-", ":-", "?", ":?"]
                            .iter()
                            .any(|m| modifier.starts_with(m));
                    if name.is_empty() || !substitutes_value {
                        pieces.push(Piece::Unknown);
                    } else {
                        pieces.push(Piece::Value(name.to_string()));
                    }
                }
                Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                    flush(&mut literal, &mut pieces);
                    let mut name = String::new();
                    while let Some((_, c)) =
                        chars.next_if(|(_, c)| c.is_ascii_alphanumeric() || *c == '_')
                    {
                        name.push(c);
                    }
                    pieces.push(Piece::Value(name));
                }
                _ => literal.push('$'),
            }
        }
        flush(&mut literal, &mut pieces);
        Template { pieces }
    }

    /// Whether `variable`'s value ends up in the rendered string.
    pub fn uses(&self, variable: &str) -> bool {
        self.pieces
            .iter()
            .any(|p| matches!(p, Piece::Value(name) if name == variable))
    }

    /// The value `variable` must have had for this template to render as
    /// `rendered`, the other variables being whatever they were. With
    /// `tag_like`, the value is a Docker tag (`[A-Za-z0-9_.-]`, which keeps
    /// it from swallowing a registry or repository part). `None` when the
    /// template cannot produce `rendered`.
    pub fn value_of(&self, variable: &str, rendered: &str, tag_like: bool) -> Option<String> {
        let mut value = None;
        matches(&self.pieces, rendered, variable, tag_like, &mut value).then_some(())?;
        value
    }
}

/// Backtracking match of `pieces` against all of `text`; the first
/// assignment of `variable` that works is left in `value`.
fn matches(
    pieces: &[Piece],
    text: &str,
    variable: &str,
    tag_like: bool,
    value: &mut Option<String>,
) -> bool {
    let Some((first, rest)) = pieces.split_first() else {
        return text.is_empty();
    };
    match first {
        Piece::Literal(literal) => text
            .strip_prefix(literal.as_str())
            .is_some_and(|after| matches(rest, after, variable, tag_like, value)),
        Piece::Value(name) if name == variable => {
            if let Some(known) = value.clone() {
                return text
                    .strip_prefix(known.as_str())
                    .is_some_and(|after| matches(rest, after, variable, tag_like, value));
            }
            let allowed = |c: char| !tag_like || c.is_ascii_alphanumeric() || "_.-".contains(c);
            let longest = text.find(|c| !allowed(c)).unwrap_or(text.len());
            for end in (1..=longest)
                .rev()
                .filter(|end| text.is_char_boundary(*end))
            {
                let (candidate, after) = text.split_at(end);
                *value = Some(candidate.to_string());
                if matches(rest, after, variable, tag_like, value) {
                    return true;
                }
            }
            *value = None;
            false
        }
        Piece::Value(_) | Piece::Unknown => (0..=text.len())
            .filter_map(|end| text.get(end..))
            .any(|after| matches(rest, after, variable, tag_like, value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_in_every_layout() {
        let v3 =
            "version: '3.8'\nservices:\n  web:\n    image: r/web:${TAG}\n  db:\n    build: .\n";
        let file = ComposeFile::parse(v3).unwrap();
        assert_eq!(file.service_list(), "db, web");
        assert_eq!(file.services["web"].as_deref(), Some("r/web:${TAG}"));
        assert_eq!(file.services["db"], None);

        let spec = "services:\n  web:\n    image: r/web\n";
        assert_eq!(ComposeFile::parse(spec).unwrap().service_list(), "web");

        let legacy = "web:\n  image: r/web\nworker:\n  image: r/worker\n";
        assert_eq!(
            ComposeFile::parse(legacy).unwrap().service_list(),
            "web, worker"
        );

        let merged = "x-base: &base\n  image: r/app:${TAG}\nservices:\n  app:\n    <<: *base\n";
        let file = ComposeFile::parse(merged).unwrap();
        assert_eq!(file.services["app"].as_deref(), Some("r/app:${TAG}"));
    }

    #[test]
    fn a_services_ports_and_fixed_name_are_read() {
        let text = "services:\n  web:\n    image: r/web:${TAG}\n    ports:\n      - \"127.0.0.1::80\"\n      - 9000\n      - \"${PORT}:81\"\n      - target: 82\n        host_ip: 127.0.0.1\n      - target: 83\n        published: \"8083\"\n        protocol: udp\n  db:\n    image: postgres\n    container_name: db\n";
        let file = ComposeFile::parse(text).unwrap();
        let web = &file.facts["web"];
        assert_eq!(web.container_name, None);
        let ports: Vec<String> = web
            .ports
            .iter()
            .map(|p| match p {
                Ok(p) => format!("{}|{:?}|{}", p.host_ip, p.host_port, p.key()),
                Err(text) => format!("unknown {text}"),
            })
            .collect();
        assert_eq!(
            ports,
            [
                "127.0.0.1|None|80/tcp",
                "|None|9000/tcp",
                "unknown ${PORT}:81",
                "127.0.0.1|None|82/tcp",
                "|Some(8083)|83/udp",
            ]
        );
        assert_eq!(file.facts["db"].container_name.as_deref(), Some("db"));
    }

    #[test]
    fn broken_files_say_why() {
        assert!(ComposeFile::parse("services: [web")
            .unwrap_err()
            .contains("not valid YAML"));
        assert!(ComposeFile::parse("version: '3'\n")
            .unwrap_err()
            .contains("no services"));
        assert!(ComposeFile::parse("services: web\n")
            .unwrap_err()
            .contains("not a mapping"));
        assert!(ComposeFile::parse("- a\n- b\n")
            .unwrap_err()
            .contains("mapping"));
    }

    #[test]
    fn templates_know_their_variables() {
        for (text, uses) in [
            ("r/web:${TAG}", true),
            ("r/web:$TAG", true),
            ("r/web:${TAG:-latest}", true),
            ("r/web:${TAG-latest}", true),
            ("r/web:${TAG:?set TAG}", true),
            ("r/web:${TAG:+x}", false),
            ("r/web:$${TAG}", false),
            ("r/web:${TAGS}", false),
            ("r/web:latest", false),
        ] {
            assert_eq!(Template::parse(text).uses("TAG"), uses, "{text}");
        }
    }

    #[test]
    fn a_running_image_gives_back_the_value() {
        let cases = [
            (
                "127.0.0.1:5000/acme/web:${TAG}",
                "127.0.0.1:5000/acme/web:v1",
                true,
                Some("v1"),
            ),
            (
                "${REGISTRY}/web:${TAG:-latest}",
                "127.0.0.1:5000/web:main-3f",
                true,
                Some("main-3f"),
            ),
            ("r/web:${TAG}-alpine", "r/web:v2-alpine", true, Some("v2")),
            ("r/web:$TAG", "other/web:v2", true, None),
            (
                "${IMAGE}",
                "127.0.0.1:5000/acme/web:v1",
                false,
                Some("127.0.0.1:5000/acme/web:v1"),
            ),
            (
                "${IMAGE}",
                "r/web@sha256:abc",
                false,
                Some("r/web@sha256:abc"),
            ),
            (
                "${REGISTRY}/${NAME}:${TAG}",
                "reg:5000/a/b:v3",
                true,
                Some("v3"),
            ),
        ];
        for (template, rendered, tag_like, expected) in cases {
            let variable = if tag_like { "TAG" } else { "IMAGE" };
            assert_eq!(
                Template::parse(template)
                    .value_of(variable, rendered, tag_like)
                    .as_deref(),
                expected,
                "{template} ~ {rendered}"
            );
        }
    }
}
