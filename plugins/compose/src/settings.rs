//! `[compose]` (with a stage's `[stages.<stage>.compose]` merged over it):
//! parsed and checked against the compose file itself, so that a typo'd
//! service or a variable the file never uses is reported when the project
//! loads, not when a push arrives.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use wharf_plugin_api::ports::PortSpec;
use wharf_plugin_api::routes::{RawRoute, Route};
use wharf_plugin_api::{DeployRequest, Settings, SettingsError};
use wharf_registry::reference;

use crate::file::{ComposeFile, ServiceFacts, Template};

/// Default limit for a whole deployment (pull, up, wait, and a rollback's
/// start).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// Default limit for the service to be running (and healthy) after `up`.
const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(120);
/// Default time a service without a healthcheck must keep running.
const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// `[compose]` as written in a project file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    file: String,
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    tag_variable: Option<String>,
    #[serde(default)]
    image_variable: Option<String>,
    #[serde(default)]
    project_name: Option<String>,
    #[serde(default)]
    env_file: Option<String>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    health_timeout: Option<String>,
    #[serde(default)]
    grace: Option<String>,
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    route: Option<RawRoute>,
}

/// Which variable carries the pushed image into the compose file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Variable {
    /// `tag_variable`: set to the pushed tag (`v1.2.0`).
    Tag(String),
    /// `image_variable`: set to the pushed image (`registry/acme/web:v1.2.0`).
    Image(String),
}

impl Variable {
    pub fn name(&self) -> &str {
        match self {
            Variable::Tag(name) | Variable::Image(name) => name,
        }
    }

    /// This deployment's value of the variable.
    pub fn value_for(&self, request: &DeployRequest) -> String {
        match self {
            Variable::Tag(_) => request.tag.clone(),
            Variable::Image(_) => request.image(),
        }
    }

    fn key(&self) -> &'static str {
        match self {
            Variable::Tag(_) => "tag_variable",
            Variable::Image(_) => "image_variable",
        }
    }
}

/// Which compose the operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandChoice {
    /// `docker compose` when it works, else `docker-compose`.
    Auto,
    /// `docker compose`, the v2 plugin.
    V2,
    /// `docker-compose`, v1 (what Debian ships as a package).
    V1,
}

/// Validated `[compose]` settings.
#[derive(Debug, Clone)]
pub struct ComposeSettings {
    /// Absolute path of the compose file.
    pub file: PathBuf,
    pub service: String,
    pub variable: Variable,
    /// The service's `image:` as written, with its variable references.
    pub template: Template,
    pub project_name: Option<String>,
    /// Absolute path (a relative one is resolved against the compose file's folder).
    pub env_file: Option<PathBuf>,
    pub timeout: Duration,
    pub health_timeout: Duration,
    pub grace: Duration,
    pub command: CommandChoice,
    /// `[compose.route]`: the service keeps a stable address; a
    /// deployment scales it to two and switches the proxy.
    pub route: Option<Route>,
}

impl ComposeSettings {
    /// Parse `[compose]` and check it against the compose file on disk.
    ///
    /// # Errors
    /// A message that starts with `[compose]`, names the key and says how to
    /// fix it.
    pub fn parse(settings: &Settings) -> Result<ComposeSettings, SettingsError> {
        let fail = |message: String| SettingsError::new(format!("[compose] {message}"));
        if !settings.contains_key("file") {
            return Err(fail(
                "file is missing: set file = \"/srv/app/compose.yml\", the compose file that defines the service".into(),
            ));
        }
        let raw: RawSettings = Settings::try_into(settings.clone())
            .map_err(|e| fail(e.message().trim().to_string()))?;

        let file = PathBuf::from(&raw.file);
        if !file.is_absolute() {
            return Err(fail(format!(
                "file '{}' is a relative path: give an absolute one (wharf's working directory is / under systemd)",
                raw.file
            )));
        }
        if !file.is_file() {
            return Err(fail(format!(
                "file '{}' does not exist (or is not a file): create it or fix the path",
                raw.file
            )));
        }
        let compose = ComposeFile::read(&file).map_err(|e| fail(format!("file: {e}")))?;

        let Some(service) = raw.service else {
            return Err(fail(format!(
                "service is missing: set service = \"<name>\", one of the services of {}: {}",
                file.display(),
                compose.service_list()
            )));
        };
        let Some(image) = compose.services.get(&service) else {
            let hint = closest(&service, compose.services.keys().map(String::as_str))
                .map(|name| format!("; did you mean '{name}'?"))
                .unwrap_or_default();
            return Err(fail(format!(
                "service '{service}' is not in {}: its services are {}{hint}",
                file.display(),
                compose.service_list()
            )));
        };

        let variable = match (raw.tag_variable, raw.image_variable) {
            (Some(name), None) => Variable::Tag(name),
            (None, Some(name)) => Variable::Image(name),
            (Some(_), Some(_)) => {
                return Err(fail(
                    "tag_variable and image_variable are both set: keep exactly one".into(),
                ))
            }
            (None, None) => {
                return Err(fail(format!(
                    "set tag_variable (the variable the service's image uses for its tag, e.g. image: registry/acme/{0}:${{TAG}} with tag_variable = \"TAG\") or image_variable (for the whole image, image: ${{IMAGE}})",
                    service
                )))
            }
        };
        check_variable_name(&variable).map_err(fail)?;

        let Some(image) = image else {
            return Err(fail(format!(
                "service '{service}' in {} has no image: give it one that uses ${{{}}}, so the pushed image reaches it",
                file.display(),
                variable.name()
            )));
        };
        let template = Template::parse(image);
        if !template.uses(variable.name()) {
            return Err(fail(format!(
                "{} '{}': service '{service}' has image '{image}', which does not use ${{{}}}, so a push would never change it: write image: {}",
                variable.key(),
                variable.name(),
                variable.name(),
                suggested_image(image, &variable)
            )));
        }

        if let Some(name) = &raw.project_name {
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
            if !valid {
                return Err(fail(format!(
                    "project_name '{name}': compose accepts lowercase letters, digits, '-' and '_', starting with a letter or digit"
                )));
            }
        }

        let env_file = match &raw.env_file {
            None => None,
            Some(text) => {
                let path = resolve(&file, text);
                if !path.is_file() {
                    return Err(fail(format!(
                        "env_file '{}' does not exist (relative paths start at the compose file's folder)",
                        path.display()
                    )));
                }
                Some(path)
            }
        };

        let command = match raw.command.as_deref() {
            None | Some("auto") => CommandChoice::Auto,
            Some("docker compose") => CommandChoice::V2,
            Some("docker-compose") => CommandChoice::V1,
            Some(other) => {
                return Err(fail(format!(
                    "command '{other}': use \"auto\" (the default: docker compose if it works, else docker-compose), \"docker compose\" (v2) or \"docker-compose\" (v1)"
                )))
            }
        };

        let route = match &raw.route {
            None => None,
            Some(raw_route) => {
                let route = Route::parse(raw_route).map_err(|e| fail(format!("route: {e}")))?;
                let facts = compose.facts.get(&service).cloned().unwrap_or_default();
                check_routable(&service, &file, &facts, &route)
                    .map_err(|e| fail(format!("route: {e}")))?;
                Some(route)
            }
        };

        Ok(ComposeSettings {
            route,
            file,
            service,
            variable,
            template,
            project_name: raw.project_name,
            env_file,
            timeout: duration("timeout", raw.timeout.as_deref(), DEFAULT_TIMEOUT).map_err(fail)?,
            health_timeout: duration(
                "health_timeout",
                raw.health_timeout.as_deref(),
                DEFAULT_HEALTH_TIMEOUT,
            )
            .map_err(fail)?,
            grace: duration("grace", raw.grace.as_deref(), DEFAULT_GRACE).map_err(fail)?,
            command,
        })
    }

    /// The compose file's folder: the project directory compose uses, and
    /// where it finds its own `.env`.
    pub fn folder(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("/"))
    }
}

/// Whether `service` can be scaled to two behind `route`: no fixed
/// container name, the route's port published on an engine-chosen host
/// port (a fixed one could not be bound twice), and nothing of its own on
/// the route's address.
fn check_routable(
    service: &str,
    file: &Path,
    facts: &ServiceFacts,
    route: &Route,
) -> Result<(), String> {
    if let Some(name) = &facts.container_name {
        return Err(format!(
            "service '{service}' sets container_name: {name}, so a second container cannot start beside the first; remove container_name from {}",
            file.display()
        ));
    }
    if let Some(clash) = facts
        .ports
        .iter()
        .flatten()
        .find(|p| p.claims(route.listen))
    {
        return Err(format!(
            "listen {} is also published by service '{service}' ({}:{}): the proxy owns the route's address; drop that ports entry",
            route.listen,
            clash.host_port.unwrap_or_default(),
            clash.container_port
        ));
    }
    let wanted = format!("{}/tcp", route.port);
    let published: Vec<&PortSpec> = facts
        .ports
        .iter()
        .flatten()
        .filter(|p| p.key() == wanted)
        .collect();
    let example = format!("ports: [\"127.0.0.1::{}\"]", route.port);
    match published.as_slice() {
        [] => Err(format!(
            "service '{service}' does not publish port {} in {}: the proxy reaches each container there; add {example} (an engine-chosen loopback port)",
            route.port,
            file.display()
        )),
        [port] if port.host_port.is_some() => Err(format!(
            "service '{service}' publishes port {} on the fixed host port {}: a second container could not bind it during a deployment; write {example} and let clients use the route's listen {}",
            route.port,
            port.host_port.unwrap_or_default(),
            route.listen
        )),
        [_] => Ok(()),
        _ => Err(format!(
            "service '{service}' publishes port {} more than once: keep one entry, {example}",
            route.port
        )),
    }
}

fn check_variable_name(variable: &Variable) -> Result<(), String> {
    let name = variable.name();
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "{} '{name}' is not a variable name: letters, digits and '_', not starting with a digit",
            variable.key()
        ));
    }
    if ["COMPOSE_", "DOCKER_", "WHARF_"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
    {
        return Err(format!(
            "{} '{name}': COMPOSE_*, DOCKER_* and WHARF_* variables configure the tools themselves; pick a name of your own, e.g. WEB_TAG",
            variable.key()
        ));
    }
    Ok(())
}

fn duration(key: &str, text: Option<&str>, default: Duration) -> Result<Duration, String> {
    let Some(text) = text else {
        return Ok(default);
    };
    let parsed = wharf_plugin_api::duration::parse(text).map_err(|e| format!("{key} {e}"))?;
    if parsed.is_zero() {
        return Err(format!("{key} must be more than 0"));
    }
    Ok(parsed)
}

fn resolve(compose_file: &Path, text: &str) -> PathBuf {
    let path = Path::new(text);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        compose_file.parent().unwrap_or(Path::new("/")).join(path)
    }
}

/// `image` rewritten to use the variable: the tag replaced by `${TAG}`, or
/// the whole reference by `${IMAGE}`.
fn suggested_image(image: &str, variable: &Variable) -> String {
    match variable {
        Variable::Image(name) => format!("${{{name}}}"),
        // Cut as written, not parsed: the line may hold other `${…}`
        // templates, and a registry's port is no tag.
        Variable::Tag(name) => format!("{}:${{{name}}}", reference::split(image).name),
    }
}

/// The candidate nearest to `wanted` by edit distance, if it is near enough
/// to be a typo.
fn closest<'a>(wanted: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|candidate| (edit_distance(wanted, candidate), candidate))
        .filter(|(distance, candidate)| *distance <= 2.max(candidate.len() / 3))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Edits (insert, delete, substitute, swap two neighbours) from `a` to `b`:
/// the optimal string alignment distance, so "wbe" is one swap from "web".
fn edit_distance(a: &str, b: &str) -> usize {
    strsim::osa_distance(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(
                dir.path().join("compose.yml"),
                "services:\n  web:\n    image: 127.0.0.1:5000/acme/web:${WEB_TAG}\n  worker:\n    image: 127.0.0.1:5000/acme/worker:${WORKER_IMAGE_TAG:-latest}\n  db:\n    image: postgres:16\n  built:\n    build: .\n",
            )
            .unwrap();
            std::fs::write(dir.path().join("web.env"), "A=1\n").unwrap();
            Fixture { dir }
        }

        fn file(&self) -> String {
            self.dir.path().join("compose.yml").display().to_string()
        }

        fn parse(&self, extra: &str) -> Result<ComposeSettings, SettingsError> {
            let text = format!("file = {:?}\n{extra}", self.file());
            ComposeSettings::parse(&text.parse::<Settings>().unwrap())
        }
    }

    #[test]
    fn a_good_table_is_accepted_with_defaults() {
        let fixture = Fixture::new();
        let settings = fixture
            .parse("service = \"web\"\ntag_variable = \"WEB_TAG\"\nenv_file = \"web.env\"")
            .unwrap();
        assert_eq!(settings.variable, Variable::Tag("WEB_TAG".into()));
        assert_eq!(settings.timeout, DEFAULT_TIMEOUT);
        assert_eq!(settings.command, CommandChoice::Auto);
        assert_eq!(settings.env_file, Some(fixture.dir.path().join("web.env")));
        assert_eq!(settings.folder(), fixture.dir.path());

        let settings = fixture
            .parse("service = \"worker\"\ntag_variable = \"WORKER_IMAGE_TAG\"\ncommand = \"docker-compose\"\ntimeout = \"2m\"\nproject_name = \"shop_1\"")
            .unwrap();
        assert_eq!(settings.command, CommandChoice::V1);
        assert_eq!(settings.timeout, Duration::from_secs(120));
    }

    #[test]
    fn a_typo_in_the_service_lists_the_real_ones() {
        let error = Fixture::new()
            .parse("service = \"wbe\"\ntag_variable = \"WEB_TAG\"")
            .unwrap_err()
            .message;
        assert!(
            error.starts_with("[compose] service 'wbe' is not in"),
            "{error}"
        );
        assert!(error.contains("built, db, web, worker"), "{error}");
        assert!(error.contains("did you mean 'web'?"), "{error}");
    }

    #[test]
    fn each_mistake_names_its_key() {
        let fixture = Fixture::new();
        let cases = [
            ("service = \"web\"", "set tag_variable"),
            (
                "service = \"web\"\ntag_variable = \"WEB_TAG\"\nimage_variable = \"X\"",
                "both set",
            ),
            (
                "service = \"web\"\ntag_variable = \"TAG\"",
                "does not use ${TAG}",
            ),
            (
                "service = \"db\"\ntag_variable = \"DB_TAG\"",
                "image: postgres:${DB_TAG}",
            ),
            (
                "service = \"db\"\nimage_variable = \"DB_IMAGE\"",
                "image: ${DB_IMAGE}",
            ),
            ("service = \"built\"\ntag_variable = \"T\"", "has no image"),
            (
                "service = \"web\"\ntag_variable = \"1TAG\"",
                "not a variable name",
            ),
            (
                "service = \"web\"\ntag_variable = \"COMPOSE_FILE\"",
                "configure the tools",
            ),
            (
                "service = \"web\"\ntag_variable = \"WEB_TAG\"\ntimeout = \"soon\"",
                "timeout 'soon'",
            ),
            (
                "service = \"web\"\ntag_variable = \"WEB_TAG\"\ngrace = \"0s\"",
                "grace must be more than 0",
            ),
            (
                "service = \"web\"\ntag_variable = \"WEB_TAG\"\ncommand = \"podman\"",
                "command 'podman'",
            ),
            (
                "service = \"web\"\ntag_variable = \"WEB_TAG\"\nproject_name = \"Shop\"",
                "project_name 'Shop'",
            ),
            (
                "service = \"web\"\ntag_variable = \"WEB_TAG\"\nenv_file = \"nope.env\"",
                "env_file",
            ),
            (
                "service = \"web\"\ntag_variable = \"WEB_TAG\"\nservce = \"x\"",
                "unknown field `servce`",
            ),
            ("tag_variable = \"WEB_TAG\"", "service is missing"),
        ];
        for (extra, expected) in cases {
            let error = fixture.parse(extra).unwrap_err().message;
            assert!(error.starts_with("[compose] "), "{extra}: {error}");
            assert!(error.contains(expected), "{extra}: {error}");
        }
    }

    #[test]
    fn the_file_must_be_absolute_and_present() {
        let parse = |text: &str| {
            ComposeSettings::parse(&text.parse::<Settings>().unwrap())
                .unwrap_err()
                .message
        };
        assert!(parse("service = \"web\"").contains("file is missing"));
        assert!(
            parse("file = \"compose.yml\"\nservice = \"web\"\ntag_variable = \"T\"")
                .contains("relative path")
        );
        assert!(parse(
            "file = \"/nonexistent/compose.yml\"\nservice = \"web\"\ntag_variable = \"T\""
        )
        .contains("does not exist"));
        let dir = tempfile::tempdir().unwrap();
        let broken = dir.path().join("compose.yml");
        std::fs::write(&broken, "services: [web\n").unwrap();
        let text = format!(
            "file = {:?}\nservice = \"web\"\ntag_variable = \"T\"",
            broken.display().to_string()
        );
        assert!(parse(&text).contains("not valid YAML"));
    }

    #[test]
    fn near_names_only() {
        let names = ["web", "worker", "db"];
        assert_eq!(closest("wbe", names.iter().copied()), Some("web"));
        assert_eq!(closest("workr", names.iter().copied()), Some("worker"));
        assert_eq!(closest("frontend", names.iter().copied()), None);
        assert_eq!(edit_distance("wbe", "web"), 1);
        assert_eq!(edit_distance("", "db"), 2);
    }
}
