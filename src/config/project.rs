//! One project file, `<projects_dir>/<name>.toml`: parsed, validated, and
//! resolved into stages that each know their deployer and its settings.
//!
//! Every error carries the file's line, so `wharf check` and the admin API can
//! point an operator at the exact place to fix.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use wharf_plugin_api::routes::Claim;
use wharf_plugin_api::{Registry, Settings, StagePlan};
use wildmatch::WildMatch;

use super::locate::key_offset;
use super::settings::line_of;
use crate::reference::{is_valid_tag, normalize_repository};

pub use crate::plugins::DEFAULT_DEPLOYER;

/// A project, ready to match pushes against.
#[derive(Debug, Clone)]
pub struct Project {
    /// The file stem.
    pub name: String,
    pub source: PathBuf,
    /// Normalized repository, `docker.io/library/nginx`.
    pub repository: String,
    /// The project-level deployer (a stage may override it).
    pub deployer: String,
    pub stages: BTreeMap<String, Stage>,
}

/// One stage of a project.
#[derive(Debug, Clone)]
pub struct Stage {
    pub name: String,
    /// The globs as written, for display.
    pub tags: Vec<String>,
    matchers: Vec<WildMatch>,
    pub auto_deploy: bool,
    pub deployer: String,
    /// The deployer's table: the project's, with the stage's keys over it,
    /// as written (for display); deployments run [`Stage::plan`].
    pub settings: Settings,
    /// What its deployer made of `settings` when the file loaded
    /// ([`wharf_plugin_api::Deployer::prepare`]): what a deployment runs.
    pub plan: Arc<dyn StagePlan>,
    /// The host addresses its settings take (a route's `listen`, fixed
    /// host ports), as its deployer names them; the catalog keeps routes
    /// off addresses other stages claim.
    pub claims: Vec<Claim>,
    /// `poll = "5m"`: how often the poller checks the registry for this
    /// stage; `None` means webhooks only.
    pub poll: Option<Duration>,
    /// `prerelease = true`: polling may deploy semver pre-releases.
    pub prerelease: bool,
}

/// The shortest `poll` interval a project may set (SPEC: "at least 1s");
/// the poller also spaces requests per registry host, so a short interval
/// costs the registry one request at a time, never a burst.
pub const MIN_POLL: Duration = Duration::from_secs(1);

impl Stage {
    /// Whether a pushed tag belongs to this stage.
    pub fn matches(&self, tag: &str) -> bool {
        self.matchers.iter().any(|m| m.matches(tag))
    }
}

/// A project file that could not be used: where and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProjectError {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for ProjectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// Project and stage names appear in container names, URLs and file names.
pub fn is_valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 128
        && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// wharf's own keys of a project file; every other top-level key is a
/// deployer's table (`[docker]`, `[script]`, …), checked against the
/// registry. The tables are plain values, not `Spanned`: a table TOML
/// creates implicitly (`[docker.route]` with no `[docker]`) has no span of
/// its own, and its line is found in the document instead.
#[derive(Deserialize)]
struct RawProject {
    image: Spanned<String>,
    #[serde(default)]
    deployer: Option<Spanned<String>>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    stages: Option<BTreeMap<String, Spanned<RawStage>>>,
    #[serde(flatten)]
    tables: BTreeMap<String, toml::Value>,
}

/// Keys of the project file's top level that are wharf's.
const PROJECT_KEYS: &[&str] = &["image", "deployer", "description", "stages"];

/// A stage's own keys; every other key is a deployer's table overriding
/// the project's (`[stages.prod.docker]`).
#[derive(Deserialize)]
struct RawStage {
    tags: Option<Spanned<Vec<String>>>,
    #[serde(default = "default_true")]
    auto_deploy: bool,
    #[serde(default)]
    deployer: Option<Spanned<String>>,
    #[serde(default)]
    poll: Option<Spanned<String>>,
    #[serde(default)]
    prerelease: Option<Spanned<bool>>,
    #[serde(flatten)]
    tables: BTreeMap<String, toml::Value>,
}

/// Keys of a stage that are wharf's.
const STAGE_KEYS: &[&str] = &["tags", "auto_deploy", "deployer", "poll", "prerelease"];

fn default_true() -> bool {
    true
}

/// Parse and validate one project file's text.
///
/// # Errors
/// The first problem found, with its line.
pub fn parse(path: &Path, text: &str, registry: &Registry) -> Result<Project, ProjectError> {
    // Messages echo the operator's values, which may hold control chars.
    let fail = |offset: usize, message: String| ProjectError {
        file: path.to_path_buf(),
        line: line_of(text, offset),
        message: super::locate::escape_controls(&message),
    };
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !is_valid_name(&name) {
        return Err(fail(
            0,
            format!("project name '{name}' (the file name) must be letters, digits, '.', '_' or '-', starting with a letter or digit"),
        ));
    }
    let raw: RawProject = toml::from_str(text).map_err(|e| {
        fail(
            e.span().map(|s| s.start).unwrap_or(0),
            super::locate::toml_reason(text, &e),
        )
    })?;
    let _ = raw.description;
    let project_tables = plugin_tables(text, &[], raw.tables, PROJECT_KEYS, registry, &fail)?;
    let repository = normalize_repository(raw.image.get_ref())
        .map_err(|e| fail(raw.image.span().start, format!("image: {e}")))?;
    let project_deployer = match &raw.deployer {
        Some(d) => known_deployer(d, registry, &fail)?,
        None => DEFAULT_DEPLOYER.to_string(),
    };
    let raw_stages = raw.stages.unwrap_or_default();
    if raw_stages.is_empty() {
        return Err(fail(
            text.find("[stages").unwrap_or(0),
            "no stages: add e.g. [stages.prod] with tags = [\"v*\"]".into(),
        ));
    }
    let mut stages = BTreeMap::new();
    for (stage_name, raw_stage) in raw_stages {
        let at = raw_stage.span().start;
        let raw_stage = raw_stage.into_inner();
        if !is_valid_name(&stage_name) {
            return Err(fail(
                at,
                format!("stage name '{stage_name}' must be letters, digits, '.', '_' or '-'"),
            ));
        }
        let Some(tags) = raw_stage.tags else {
            return Err(fail(
                at,
                format!("stage '{stage_name}' has no tags: add tags = [\"*\"] to match every tag"),
            ));
        };
        let tags_at = tags.span().start;
        let tags = tags.into_inner();
        if tags.is_empty() {
            return Err(fail(
                tags_at,
                format!("stage '{stage_name}': tags is empty, so no push could ever match"),
            ));
        }
        if let Some(bad) = tags.iter().find(|t| !is_valid_tag_glob(t)) {
            return Err(fail(
                tags_at,
                format!("stage '{stage_name}': tag pattern '{bad}' can never match a tag (tags are letters, digits, '.', '_', '-'; globs add '*' and '?')"),
            ));
        }
        let (poll, prerelease) =
            poll_keys(&stage_name, &raw_stage.poll, &raw_stage.prerelease, &fail)?;
        let deployer = match &raw_stage.deployer {
            Some(d) => known_deployer(d, registry, &fail)?,
            None => project_deployer.clone(),
        };
        let stage_tables = plugin_tables(
            text,
            &["stages", &stage_name],
            raw_stage.tables,
            STAGE_KEYS,
            registry,
            &fail,
        )?;
        let mut settings = project_tables
            .get(deployer.as_str())
            .map(|(_, table)| table.clone())
            .unwrap_or_default();
        let mut table_at = project_tables.get(deployer.as_str()).map(|(at, _)| *at);
        if let Some((at, table)) = stage_tables.get(deployer.as_str()) {
            settings.extend(table.clone());
            table_at = Some(*at);
        }
        let plugin = registry.get(&deployer).ok_or_else(|| {
            fail(
                at,
                format!("stage '{stage_name}': deployer '{deployer}' is not available"),
            )
        })?;
        let plan = plugin.prepare(&settings).map_err(|e| {
            fail(
                table_at.unwrap_or(at),
                format!("stage '{stage_name}': {}", e.message),
            )
        })?;
        let matchers = tags.iter().map(|t| WildMatch::new(t)).collect();
        let claims = plan.claims();
        stages.insert(
            stage_name.clone(),
            Stage {
                name: stage_name,
                tags,
                matchers,
                auto_deploy: raw_stage.auto_deploy,
                deployer,
                settings,
                plan,
                claims,
                poll,
                prerelease,
            },
        );
    }
    Ok(Project {
        name,
        source: path.to_path_buf(),
        repository,
        deployer: project_deployer,
        stages,
    })
}

/// The polling keys of a stage: `poll` a duration of at least
/// [`MIN_POLL`], `prerelease` only beside `poll` (alone it would do nothing,
/// which is more likely a forgotten `poll` than an intent).
fn poll_keys(
    stage_name: &str,
    poll: &Option<Spanned<String>>,
    prerelease: &Option<Spanned<bool>>,
    fail: &dyn Fn(usize, String) -> ProjectError,
) -> Result<(Option<Duration>, bool), ProjectError> {
    let poll = match poll {
        None => None,
        Some(text) => {
            let at = text.span().start;
            let interval = wharf_plugin_api::duration::parse(text.get_ref())
                .map_err(|e| fail(at, format!("stage '{stage_name}': poll: {e}")))?;
            if interval < MIN_POLL {
                return Err(fail(
                    at,
                    format!("stage '{stage_name}': poll must be at least 1s"),
                ));
            }
            Some(interval)
        }
    };
    let prerelease = match prerelease {
        Some(flag) if poll.is_none() => {
            return Err(fail(
                flag.span().start,
                format!("stage '{stage_name}': prerelease only applies to polling: add poll = \"5m\" or remove it"),
            ));
        }
        Some(flag) => *flag.get_ref(),
        None => false,
    };
    Ok((poll, prerelease))
}

/// A tag glob is a tag with `*` and `?` allowed anywhere.
fn is_valid_tag_glob(glob: &str) -> bool {
    if glob.is_empty() || glob.len() > 128 {
        return false;
    }
    let literal: String = glob
        .chars()
        .map(|c| if c == '*' || c == '?' { 'a' } else { c })
        .collect();
    // With each wildcard standing for one allowed char, the glob must be a
    // tag itself: a literal char no tag may hold (a non-ASCII letter, a
    // leading '.' or '-') means the glob can never match. The text is the
    // operator's and may be any UTF-8, so it is only ever handled as chars.
    is_valid_tag(&literal)
}

/// The deployer tables (`[docker]`, `[script]`, …) among the keys of the
/// table at `path` (the top level, or a stage) that are not wharf's own, by
/// name, with the offset where each starts. A key that names no registered
/// deployer, or is not a table, is an error at its line.
fn plugin_tables(
    text: &str,
    path: &[&str],
    tables: BTreeMap<String, toml::Value>,
    own: &[&str],
    registry: &Registry,
    fail: &dyn Fn(usize, String) -> ProjectError,
) -> Result<BTreeMap<String, (usize, Settings)>, ProjectError> {
    let mut found = BTreeMap::new();
    for (name, value) in tables {
        let mut key_path = path.to_vec();
        key_path.push(&name);
        let at = key_offset(text, &key_path).unwrap_or(0);
        let where_ = match path {
            [] => String::new(),
            _ => format!(" in [{}]", path.join(".")),
        };
        if registry.get(&name).is_none() {
            return Err(fail(
                at,
                format!(
                    "unknown key '{name}'{where_}: expected one of {}, or a deployer's table ({})",
                    own.join(", "),
                    registry.names().join(", ")
                ),
            ));
        }
        let toml::Value::Table(table) = value else {
            return Err(fail(
                at,
                format!(
                    "{name}{where_}: the {name} deployer's settings must be a table ([{name}])"
                ),
            ));
        };
        found.insert(name, (at, table));
    }
    Ok(found)
}

fn known_deployer(
    name: &Spanned<String>,
    registry: &Registry,
    fail: &dyn Fn(usize, String) -> ProjectError,
) -> Result<String, ProjectError> {
    let text = name.get_ref();
    if registry.get(text).is_some() {
        return Ok(text.clone());
    }
    Err(fail(
        name.span().start,
        format!(
            "unknown deployer '{text}' (available: {})",
            registry.names().join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::plugins::registry;

    #[test]
    fn globs_of_any_utf8_are_judged_not_sliced() {
        for glob in ["é*", "*é", "é", "😀?", "ü-*", "*"] {
            let _ = is_valid_tag_glob(glob);
        }
        assert!(!is_valid_tag_glob("é*"));
        assert!(is_valid_tag_glob("*-rc?"));
        assert!(is_valid_tag_glob("v1.*"));
    }

    fn load(text: &str) -> Result<Project, ProjectError> {
        parse(
            Path::new("/p/web.toml"),
            text,
            &registry(&Default::default()),
        )
    }

    const GOOD: &str = r#"
image = "Registry.example.com:5000/acme/web"
deployer = "script"

[script]
command = ["/bin/true"]
timeout = "1m"

[stages.staging]
tags = ["main-*", "sha-?"]

[stages.prod]
tags = ["v*"]
auto_deploy = false

[stages.prod.script]
timeout = "5m"
"#;

    #[test]
    fn a_good_project_resolves_stages_and_settings() {
        let project = load(GOOD).unwrap();
        assert_eq!(project.name, "web");
        assert_eq!(project.repository, "registry.example.com:5000/acme/web");
        let staging = &project.stages["staging"];
        assert!(staging.auto_deploy);
        assert!(staging.matches("main-3f2a"));
        assert!(staging.matches("sha-1"));
        assert!(!staging.matches("sha-12"));
        assert!(!staging.matches("v1.0"));
        let prod = &project.stages["prod"];
        assert!(!prod.auto_deploy);
        assert_eq!(prod.settings["timeout"].as_str(), Some("5m"));
        assert_eq!(prod.settings["command"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("image = \"web\"\n[stages.a]\ntags = [\"*\"\n", 4, "expected `]`"),            ("image = \"web\"\ndeployer = \"script\"\n[script]\ncommand = []\n[stages.a]\ntags = [\"*\"]\n", 3, "command is empty"),
            ("image = \"Web App\"\n", 1, "image"),
            ("image = \"web\"\n", 1, "no stages"),
            ("image = \"web\"\ndeployer = \"script\"\n[script]\ncommand = [\"/bin/true\"]\n[stages.a]\nauto_deploy = true\n", 5, "no tags"),
            ("image = \"web\"\ndeployer = \"kubernetes\"\n[stages.a]\ntags = [\"*\"]\n", 2, "unknown deployer"),
            ("image = \"web\"\ndeployer = \"swarm\"\n[stages.a]\ntags = [\"*\"]\n", 3, "[swarm] service is missing"),
            ("image = \"web\"\n[stages.a]\ntags = [\"*\"]\n[dockr]\nports = []\n", 4, "dockr"),
            ("image = \"web\"\ndeployer = \"script\"\n[script]\ncommand = [\"/bin/true\"]\n[stages.a]\ntags = [\"a b\"]\n", 6, "can never match"),
            ("image = \"web\"\nimage_typo = 1\n", 2, "image_typo"),
            ("image = \"web\"\n[stages.a]\ntags =", 3, "not valid TOML at column 7"),
            ("image = \"web\"\ndeployer = \"sw\\rm\"\n", 2, "unknown deployer 'sw\\rm'"),
            ("image = \"web\"\n[stages.\"a\\u001b[31m\"]\ntags = [\"*\"]\n", 2, "stage name 'a\\u{1b}[31m'"),
        ];
        for (text, line, needle) in cases {
            let error = load(text).unwrap_err();
            assert_eq!(error.line, line, "{text:?}: {error}");
            assert!(error.message.contains(needle), "{text:?}: {error}");
            assert!(error.to_string().starts_with("/p/web.toml:"), "{error}");
            assert!(!error.message.contains(char::is_control), "{error:?}");
        }
    }

    /// A deployer's table TOML creates implicitly, through a sub-table's
    /// header (`[docker.route]` with no `[docker]`), loads like a written
    /// one, and its errors name the header's line.
    #[test]
    fn a_table_written_only_through_its_sub_table_loads() {
        for (text, listen) in [
            ("image = \"web\"\n[stages.prod]\ntags = [\"v*\"]\n[docker.route]\nlisten = \"127.0.0.1:18990\"\nport = 80\n", "127.0.0.1:18990"),
            ("image = \"web\"\n[stages.prod]\ntags = [\"v*\"]\n[stages.prod.docker.route]\nlisten = \"127.0.0.1:18991\"\nport = 80\n", "127.0.0.1:18991"),
        ] {
            let project = load(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            let prod = &project.stages["prod"];
            assert_eq!(prod.claims, [Claim::Route(listen.parse().unwrap())], "{text:?}");
        }
        let error = load("image = \"web\"\n[stages.prod]\ntags = [\"v*\"]\n\n[stages.prod.docker.route]\nlisten = \"nowhere\"\nport = 80\n").unwrap_err();
        assert_eq!(error.line, 5, "{error}");
        assert!(error.message.contains("listen"), "{error}");
    }

    #[test]
    fn unknown_tables_name_the_deployers() {
        let error =
            load("image = \"web\"\n[stages.a]\ntags = [\"*\"]\n[stages.a.dokcer]\nports = []\n")
                .unwrap_err();
        assert_eq!(error.line, 4, "{error}");
        assert!(
            error.message.contains("unknown key 'dokcer' in [stages.a]")
                && error.message.contains("compose, docker, script, swarm"),
            "{error}"
        );
        let error = load("image = \"web\"\ndocker = 1\n[stages.a]\ntags = [\"*\"]\n").unwrap_err();
        assert_eq!(error.line, 2, "{error}");
        assert!(error.message.contains("must be a table"), "{error}");
    }

    #[test]
    fn poll_keys_are_checked_at_load() {
        let stage = |keys: &str| {
            format!("image = \"web\"\ndeployer = \"script\"\n[script]\ncommand = [\"/bin/true\"]\n[stages.a]\ntags = [\"v*\"]\n{keys}")
        };
        let a = &load(&stage("poll = \"5m\"\nprerelease = true\n"))
            .unwrap()
            .stages["a"];
        assert_eq!(a.poll, Some(Duration::from_secs(300)));
        assert!(a.prerelease);
        let a = &load(&stage("poll = \"1s\"\n")).unwrap().stages["a"];
        assert_eq!(a.poll, Some(MIN_POLL));
        assert!(!a.prerelease);
        let a = &load(&stage("")).unwrap().stages["a"];
        assert_eq!((a.poll, a.prerelease), (None, false));
        for (keys, needle) in [
            ("poll = \"500ms\"\n", "at least 1s"),
            ("poll = \"soon\"\n", "poll:"),
            ("poll = 5\n", "invalid type"),
            ("prerelease = true\n", "only applies to polling"),
        ] {
            let error = load(&stage(keys)).unwrap_err();
            assert_eq!(error.line, 7, "{keys}: {error}");
            assert!(error.message.contains(needle), "{keys}: {error}");
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(is_valid_name("web-1.prod_x"));
        for bad in ["", "-web", "a/b", "..", "a b", "ünï"] {
            assert!(!is_valid_name(bad), "{bad}");
        }
        let error = parse(
            Path::new("/p/-bad.toml"),
            GOOD,
            &registry(&Default::default()),
        )
        .unwrap_err();
        assert!(error.message.contains("project name"), "{error}");
    }
}
