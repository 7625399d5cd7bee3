//! Properties of the three files an operator writes — project files,
//! `wharf.toml`, `settings.toml` (issue 14: a non-ASCII tag glob once
//! panicked `wharf serve` and `wharf check`). Whatever the text, parsing
//! returns; every rejection renders as `file:line: reason` on one line, with
//! a line inside the text; and one bad project file never costs the good
//! ones their place in the catalog.
//!
//! The texts are arbitrary UTF-8, and TOML-shaped documents built from the
//! keys each file has (values typical of the key, or arbitrary), cut short
//! at any point for syntax errors on any line. `cargo fuzz run config`
//! (fuzz/) searches the same invariants far longer.

// A panic in a test is a failed test: the no-panic lints are for the daemon.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::string_slice
)]

use std::path::Path;
use std::sync::LazyLock;

use proptest::prelude::*;
use proptest::sample::{select, Index};
use wharf::config::catalog::Catalog;
use wharf::config::project;
use wharf::config::settings::Secrets;
use wharf::config::{ConfigError, DaemonConfig};
use wharf_plugin_api::Registry;

static REGISTRY: LazyLock<Registry> =
    LazyLock::new(|| wharf::plugins::registry(&Default::default()));

const PROJECT: &str = "/etc/wharf/projects/web.toml";
const DAEMON: &str = "/etc/wharf/wharf.toml";
const SETTINGS: &str = "/var/lib/wharf/settings.toml";

/// Enough cases to cover the generators' shapes, few enough that the file
/// runs in a few seconds; `PROPTEST_CASES` raises it.
fn config() -> ProptestConfig {
    ProptestConfig::with_cases(96)
}

/// `rendered` is `file:line: reason`: one line, `line` within the text (its
/// line count + 1 for "at the end"), a reason after it.
fn located(rendered: &str, file: &str, text: &str) -> Result<usize, TestCaseError> {
    let rest = rendered
        .strip_prefix(file)
        .and_then(|r| r.strip_prefix(':'));
    let Some((line, reason)) = rest.and_then(|r| r.split_once(": ")) else {
        return Err(TestCaseError::fail(format!(
            "not '{file}:line: reason': {rendered:?}"
        )));
    };
    let line: usize = line
        .parse()
        .map_err(|_| TestCaseError::fail(format!("line is not a number: {rendered:?}")))?;
    let last = text.lines().count() + 1;
    prop_assert!(
        (1..=last).contains(&line),
        "line {line} outside 1..={last}: {rendered:?}"
    );
    prop_assert!(!reason.trim().is_empty(), "no reason: {rendered:?}");
    prop_assert!(
        !reason.contains(char::is_control),
        "control character (a line break, an escape sequence) in: {rendered:?}"
    );
    Ok(line)
}

fn check_project(text: &str) -> Result<(), TestCaseError> {
    if let Err(error) = project::parse(Path::new(PROJECT), text, &REGISTRY) {
        let line = located(&error.to_string(), PROJECT, text)?;
        prop_assert_eq!(line, error.line);
    }
    Ok(())
}

fn check_daemon(text: &str) -> Result<(), TestCaseError> {
    match DaemonConfig::from_toml(Path::new(DAEMON), text) {
        Ok(_) => Ok(()),
        Err(error @ ConfigError::At { .. }) => located(&error.to_string(), DAEMON, text).map(drop),
        // The tests run without WHARF_* settings: every error is the text's.
        Err(other) => Err(TestCaseError::fail(format!(
            "not located in the file: {other}"
        ))),
    }
}

fn check_settings(text: &str) -> Result<(), TestCaseError> {
    if let Err(error) = Secrets::parse(Path::new(SETTINGS), text) {
        let rendered = error.to_string();
        located(&rendered, SETTINGS, text)?;
        for secret in SECRET_SAMPLES.iter().filter(|s| s.len() >= 6) {
            if text.contains(&quoted(secret)) {
                prop_assert!(!rendered.contains(secret), "secret echoed: {rendered:?}");
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Generators of TOML-shaped documents.

/// Strings typical of some key of the three files, and their edge cases.
const SAMPLES: &[&str] = &[
    "",
    " ",
    "a b",
    "é",
    "ü-*",
    "😀?",
    "\u{0}",
    "\u{7f}",
    "line\nbreak",
    "-1",
    "0",
    "*",
    "v*",
    "main-*",
    "sha-?",
    "é*",
    "*é",
    ".v1",
    "-rc",
    "v1.*",
    "5m",
    "30s",
    "0s",
    "1ms",
    "99999999999999999999h",
    "18446744073709551615s",
    "5 years",
    "127.0.0.1:8080",
    "127.0.0.1:8080:80",
    "0.0.0.0:0",
    "[::1]:80",
    "80",
    "8080/udp",
    "65536:80",
    "127.0.0.1::80",
    "/bin/true",
    "relative/path",
    "/srv/web/compose.yml",
    "/dev/null",
    "tcp://10.0.0.5:2375",
    "unix:///var/run/docker.sock",
    "ssh://deploy@10.0.0.6",
    "10.0.0.5:2375",
    "http://x",
    "https://deploy.example.com",
    "ftp://x",
    "docker",
    "script",
    "compose",
    "swarm",
    "kubernetes",
    "acme/web",
    "nginx",
    "localhost:5000/acme/web",
    "Registry.Example.com/A",
    "a//b",
    "64m",
    "1.5g",
    "-5m",
    "unless-stopped",
    "always",
    "on-failure:3",
    "on-failure:-1",
    "start-first",
    "stop-first",
    "rollback",
    "pause",
    "WEB_TAG",
    "${TAG}",
    "normal",
    "full",
    "json",
    "slack",
    "succeeded",
    "failed",
    "queued",
    "info",
    "wharf=debug,info",
    "web1",
    "dev",
];

const IMAGES: &[&str] = &[
    "acme/web",
    "nginx",
    "localhost:5000/acme/web",
    "registry.example.com/acme/web",
    "Registry.Example.com:5000/acme/web",
];

/// Tag globs, good and never-matching, ASCII and not.
const GLOBS: &[&str] = &[
    "*", "v*", "main-*", "sha-?", "*-rc?", "é*", "*é", "😀?", "ü-*", "ß", ".v1", "-x", "a b", "",
];

const SECRET_SAMPLES: &[&str] = &[
    "d8f2a1e9-3c4b-4f7a-9e21-5b6c7d8e9f00",
    "0123456789abcdef0123456789abcdef0123456789abcdef",
    "short-secret",
    "has a space in it, long enough",
    "slash/in/the/secret/value/here",
    "ünïcödé-ünïcödé-ünïcödé-ünïcödé",
];

/// A TOML basic string holding `s`, escaped as `toml` writes it.
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A key as written: bare when TOML allows, else quoted.
fn key_text(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        key.to_string()
    } else {
        quoted(key)
    }
}

fn any_string() -> BoxedStrategy<String> {
    prop_oneof![
        3 => select(SAMPLES).prop_map(quoted),
        2 => any::<String>().prop_map(|s| quoted(&s)),
        // Literal strings too, which toml reads without escapes.
        1 => "[^'\\p{Cc}]{0,12}".prop_map(|s| format!("'{s}'")),
        // Control characters, which messages echoing a value must escape.
        1 => "[a-z\\p{Cc}\u{1b}\u{85}]{1,6}".prop_map(|s| quoted(&s)),
    ]
    .boxed()
}

fn scalar() -> BoxedStrategy<String> {
    prop_oneof![
        4 => any_string(),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => prop_oneof![Just(0i64), Just(1), Just(-1), Just(65535), Just(65536)]
            .prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_map(|x| toml::Value::Float(x).to_string()),
        1 => any::<bool>().prop_map(|b| b.to_string()),
        1 => Just("1979-05-27T07:32:00Z".to_string()),
    ]
    .boxed()
}

/// Any value: scalars, arrays and inline tables of them, a few levels deep.
fn value() -> BoxedStrategy<String> {
    scalar()
        .prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|items| format!("[{}]", items.join(", "))),
                inline_table(&["http", "path", "port", "a"], inner),
            ]
        })
        .boxed()
}

/// `{ k = v, … }` with some of `keys`, each at most once (a repeated key
/// is a syntax error, and would hide everything after it).
fn inline_table(
    keys: &'static [&'static str],
    values: BoxedStrategy<String>,
) -> BoxedStrategy<String> {
    prop::sample::subsequence(keys, 0..=keys.len())
        .prop_flat_map(move |keys| {
            keys.into_iter()
                .map(|k| {
                    values
                        .clone()
                        .prop_map(move |v| format!("{} = {v}", key_text(k)))
                })
                .collect::<Vec<_>>()
        })
        .prop_map(|entries| format!("{{ {} }}", entries.join(", ")))
        .boxed()
}

fn strings_array() -> BoxedStrategy<String> {
    prop::collection::vec(any_string(), 0..4)
        .prop_map(|items| format!("[{}]", items.join(", ")))
        .boxed()
}

/// A value for `key`: mostly of the shape the key takes, sometimes anything.
fn value_for(name: &str) -> BoxedStrategy<String> {
    let typical = match name {
        // Mostly valid, so that documents get past the image to the stages.
        "image" => prop_oneof![
            9 => select(IMAGES).prop_map(quoted),
            1 => any_string(),
        ]
        .boxed(),
        "deployer" => prop_oneof![
            4 => select(PLUGINS).prop_map(quoted),
            1 => any_string(),
        ]
        .boxed(),
        "tags" => prop::collection::vec(
            prop_oneof![
                3 => select(GLOBS).prop_map(quoted),
                1 => any::<String>().prop_map(|s| quoted(&s)),
            ],
            0..4,
        )
        .prop_map(|items| format!("[{}]", items.join(", ")))
        .boxed(),
        "ports" | "volumes" | "command" | "entrypoint" | "hosts" | "allow" | "events" => {
            strings_array()
        }
        "env" | "labels" => inline_table(&["RUST_LOG", "PORT", "é", "A B"], scalar()),
        "health" => (value(), any_string(), any_string())
            .prop_map(|(port, grace, path)| {
                format!("{{ http = {{ path = {path}, port = {port} }}, grace = {grace} }}")
            })
            .boxed(),
        "auto_deploy" | "pull" | "enabled" | "require_signature" | "registry_auth"
        | "prerelease" => any::<bool>().prop_map(|b| b.to_string()).boxed(),
        "replicas" | "keep_images" | "body_limit" | "max_concurrent" | "cpus" | "memory" => {
            scalar()
        }
        _ => any_string(),
    };
    prop_oneof![12 => typical, 1 => value()].boxed()
}

/// A key from `names`, sometimes any other.
fn key(names: &'static [&'static str]) -> BoxedStrategy<String> {
    prop_oneof![
        6 => select(names).prop_map(key_text),
        1 => any::<String>().prop_map(|k| key_text(&k)),
    ]
    .boxed()
}

/// `key = value` lines for a table whose keys are `names`: up to `most` of
/// them, each once, and now and then a key the table does not have.
fn entries(names: &'static [&'static str], most: usize) -> BoxedStrategy<Vec<String>> {
    let known = prop::sample::subsequence(names, 0..=most.min(names.len())).prop_flat_map(|keys| {
        keys.into_iter()
            .map(|k| value_for(k).prop_map(move |v| format!("{} = {v}", key_text(k))))
            .collect::<Vec<_>>()
    });
    let odd = prop::option::weighted(
        0.1,
        (any::<String>().prop_map(|k| key_text(&k)), value())
            .prop_map(|(k, v)| format!("{k} = {v}")),
    );
    (known, odd)
        .prop_map(|(mut lines, odd)| {
            lines.extend(odd);
            lines
        })
        .boxed()
}

const PLUGINS: &[&str] = &["docker", "script", "compose", "swarm"];
const DOCKER_KEYS: &[&str] = &[
    "name",
    "ports",
    "env",
    "env_file",
    "volumes",
    "network",
    "networks",
    "restart",
    "command",
    "entrypoint",
    "memory",
    "cpus",
    "labels",
    "health",
    "strategy",
    "keep_images",
    "pull",
    "stop_timeout",
    "host",
    "hosts",
    "tls_ca",
    "tls_cert",
    "tls_key",
    "route",
];
const SCRIPT_KEYS: &[&str] = &["command", "timeout", "workdir", "env"];
const COMPOSE_KEYS: &[&str] = &[
    "file",
    "service",
    "tag_variable",
    "image_variable",
    "project_name",
    "env_file",
    "timeout",
    "health_timeout",
    "grace",
    "command",
];
const SWARM_KEYS: &[&str] = &[
    "service",
    "timeout",
    "registry_auth",
    "host",
    "hosts",
    "create",
];

fn plugin_keys(plugin: &str) -> &'static [&'static str] {
    match plugin {
        "docker" => DOCKER_KEYS,
        "script" => SCRIPT_KEYS,
        "compose" => COMPOSE_KEYS,
        _ => SWARM_KEYS,
    }
}

/// `[<prefix><plugin>]` and its lines.
fn plugin_table(prefix: String, plugin: &'static str) -> BoxedStrategy<String> {
    let header = format!("[{prefix}{plugin}]");
    entries(plugin_keys(plugin), 5)
        .prop_map(move |lines| format!("{header}\n{}\n", lines.join("\n")))
        .boxed()
}

/// Some of the deployer tables, each at most once, under `prefix`.
fn plugin_tables(prefix: String, most: usize) -> BoxedStrategy<String> {
    prop::sample::subsequence(PLUGINS, 0..=most)
        .prop_flat_map(move |plugins| {
            plugins
                .into_iter()
                .map(|plugin| plugin_table(prefix.clone(), plugin))
                .collect::<Vec<_>>()
        })
        .prop_map(|tables| tables.join("\n"))
        .boxed()
}

/// `line` or nothing, `line` with probability `p`.
fn maybe(p: f64, line: BoxedStrategy<String>) -> BoxedStrategy<String> {
    prop::option::weighted(p, line)
        .prop_map(Option::unwrap_or_default)
        .boxed()
}

fn keyed(key: &'static str, p: f64) -> BoxedStrategy<String> {
    maybe(
        p,
        value_for(key)
            .prop_map(move |v| format!("{key} = {v}\n"))
            .boxed(),
    )
}

fn stage_name() -> BoxedStrategy<String> {
    prop_oneof![
        8 => select(&["prod", "staging", "dev", "a.b", "v1_x"][..]).prop_map(key_text),
        1 => select(&["-x", "é", "", "a b", "*"][..]).prop_map(key_text),
        1 => any::<String>().prop_map(|k| key_text(&k)),
    ]
    .boxed()
}

/// `[stages.<name>]`: mostly tags, auto_deploy and deployer as they should
/// be (so the document gets as far as the tags and the deployer's
/// settings), sometimes keys a stage does not have, and the stage's own
/// deployer tables.
fn stage(name: String) -> BoxedStrategy<String> {
    (
        keyed("tags", 0.9),
        keyed("auto_deploy", 0.4),
        keyed("deployer", 0.3),
        maybe(
            0.05,
            entries(&["poll", "prerelease"], 2)
                .prop_map(|l| l.join("\n"))
                .boxed(),
        ),
        maybe(0.3, plugin_tables(format!("stages.{name}."), 2)),
    )
        .prop_map(move |(tags, auto, deployer, odd, tables)| {
            format!("[stages.{name}]\n{tags}{auto}{deployer}{odd}\n{tables}")
        })
        .boxed()
}

/// A project file: `image`, `deployer`, stages, deployer tables.
fn project_doc() -> BoxedStrategy<String> {
    let stages = prop::collection::btree_set(stage_name(), 1..4)
        .prop_flat_map(|names| names.into_iter().map(stage).collect::<Vec<_>>());
    (
        keyed("image", 0.97),
        keyed("deployer", 0.5),
        keyed("description", 0.1),
        maybe(
            0.05,
            entries(&["images", "stage"], 2)
                .prop_map(|l| l.join("\n"))
                .boxed(),
        ),
        stages,
        plugin_tables(String::new(), 3),
    )
        .prop_map(|(image, deployer, description, odd, stages, tables)| {
            format!(
                "{image}{deployer}{description}{odd}\n\n{}\n{tables}",
                stages.join("\n")
            )
        })
        .boxed()
}

const DAEMON_ROOT: &[&str] = &[
    "listen",
    "public_url",
    "projects_dir",
    "state_dir",
    "log_level",
];
const DAEMON_TABLES: &[(&str, &[&str])] = &[
    (
        "webhook",
        &["body_limit", "hmac_secret", "require_signature"],
    ),
    (
        "auto_create",
        &["enabled", "allow", "default_stage", "deployer"],
    ),
    ("deploy", &["max_concurrent", "shutdown_grace"]),
    ("store", &["synchronous"]),
];
const NOTIFY_KEYS: &[&str] = &["url", "events", "format"];
const HOST_KEYS: &[&str] = &["docker_host", "tls_ca", "tls_cert", "tls_key", "ssh_key"];

/// A `wharf.toml`: every key of config.example.toml, `[[notify]]` entries
/// and `[hosts.<name>]` tables.
fn daemon_doc() -> BoxedStrategy<String> {
    let table = select(DAEMON_TABLES).prop_flat_map(|(name, keys)| {
        entries(keys, 4).prop_map(move |lines| format!("[{name}]\n{}\n", lines.join("\n")))
    });
    let notify =
        entries(NOTIFY_KEYS, 4).prop_map(|lines| format!("[[notify]]\n{}\n", lines.join("\n")));
    let host = (key(&["web1", "web2", "local", "é"]), entries(HOST_KEYS, 4))
        .prop_map(|(name, lines)| format!("[hosts.{name}]\n{}\n", lines.join("\n")));
    (
        entries(DAEMON_ROOT, 5),
        prop::collection::vec(table, 0..4),
        prop::collection::vec(notify, 0..3),
        prop::collection::vec(host, 0..3),
    )
        .prop_map(|(root, tables, notify, hosts)| {
            format!(
                "{}\n\n{}\n{}\n{}",
                root.join("\n"),
                tables.join("\n"),
                notify.join("\n"),
                hosts.join("\n")
            )
        })
        .boxed()
}

/// A `settings.toml`: the two keys with good, weak and odd values.
fn settings_doc() -> BoxedStrategy<String> {
    let entry = prop_oneof![
        4 => (
            select(&["webhook_secret", "admin_token"][..]),
            prop_oneof![3 => select(SECRET_SAMPLES).prop_map(quoted), 1 => value()],
        )
            .prop_map(|(k, v)| format!("{k} = {v}")),
        1 => (any::<String>().prop_map(|k| key_text(&k)), value()).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => Just("# wharf's secrets".to_string()),
    ];
    prop::collection::vec(entry, 0..4)
        .prop_map(|lines| lines.join("\n") + "\n")
        .boxed()
}

/// `doc`, or `doc` cut at some char: a syntax error at any line.
fn maybe_cut(doc: BoxedStrategy<String>) -> BoxedStrategy<String> {
    (doc, any::<Index>(), prop::bool::weighted(0.2))
        .prop_map(|(doc, at, cut)| {
            if !cut {
                return doc;
            }
            let boundaries: Vec<usize> = doc.char_indices().map(|(i, _)| i).collect();
            match boundaries.is_empty() {
                true => doc,
                false => doc[..boundaries[at.index(boundaries.len())]].to_string(),
            }
        })
        .boxed()
}

// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_text_is_a_project_or_a_located_error(text in any::<String>()) {
        check_project(&text)?;
    }

    #[test]
    fn any_project_shaped_file_is_a_project_or_a_located_error(text in maybe_cut(project_doc())) {
        check_project(&text)?;
    }

    #[test]
    fn any_text_is_a_daemon_config_or_a_located_error(text in any::<String>()) {
        check_daemon(&text)?;
    }

    #[test]
    fn any_wharf_toml_shaped_file_is_a_config_or_a_located_error(text in maybe_cut(daemon_doc())) {
        check_daemon(&text)?;
    }

    #[test]
    fn any_text_is_secrets_or_a_located_error(text in any::<String>()) {
        check_settings(&text)?;
    }

    #[test]
    fn any_settings_shaped_file_is_secrets_or_a_located_error(text in maybe_cut(settings_doc())) {
        check_settings(&text)?;
    }
}

/// Two projects that load, beside which the arbitrary file is dropped.
const GOOD: [(&str, &str); 2] = [
    (
        "api",
        "image = \"acme/api\"\ndeployer = \"script\"\n[script]\ncommand = [\"/bin/true\"]\n[stages.prod]\ntags = [\"v*\"]\n",
    ),
    (
        "web",
        "image = \"localhost:5000/acme/web\"\n[stages.dev]\ntags = [\"*\"]\n[docker]\nports = [\"127.0.0.1:18080:80\"]\n",
    ),
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn one_arbitrary_file_never_costs_the_good_projects(
        text in prop_oneof![maybe_cut(project_doc()), any::<String>()],
        name in select(&["aaa", "web-2", "zzz"][..]),
    ) {
        let dir = tempfile::tempdir().unwrap();
        for (good, text) in GOOD {
            std::fs::write(dir.path().join(format!("{good}.toml")), text).unwrap();
        }
        let odd = dir.path().join(format!("{name}.toml"));
        std::fs::write(&odd, &text).unwrap();
        let catalog = Catalog::load_dir(dir.path(), &REGISTRY);
        for (good, _) in GOOD {
            prop_assert!(catalog.project(good).is_some(), "{good} lost beside {text:?}");
        }
        prop_assert_eq!(catalog.matching("docker.io/acme/api").len(), 1);
        prop_assert_eq!(catalog.len() + catalog.errors().count(), 3);
        for error in catalog.errors() {
            prop_assert_eq!(&error.file, &odd);
            located(&error.to_string(), &odd.display().to_string(), &text)?;
        }
    }
}
