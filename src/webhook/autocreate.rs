//! Auto-created projects (SPEC "Auto-creation"): a pushed image that no
//! project names, allowed by `auto_create.allow`, becomes
//! `<projects_dir>/<name>.toml`, and the push that created it is deployed.
//!
//! - The file is written from what the image declares: wharf writes the
//!   header (where it came from, the image's OCI labels), `image` and the
//!   stage; the deployer (`auto_create.deployer`) drafts its own table and
//!   says which defaults it chose ([`wharf_plugin_api::Drafter`]; docker's:
//!   the first EXPOSEd TCP port on 127.0.0.1 only, restart
//!   `unless-stopped`, nothing privileged). A deployer that cannot draft a
//!   table is refused before anything is pulled or written.
//! - One push at a time creates a project for a repository (a lock per
//!   repository, [`lock`]); under the lock the live catalog and the folder
//!   itself are checked again, so concurrent pushes of one new image make
//!   exactly one project, while pushes of other images do not wait for it.
//! - Looking at the folder and writing the file (with its fsyncs) run on the
//!   blocking pool; the file is loaded by the reload task, the one writer of
//!   the live catalog ([`Engine::reload_files`]).
//! - An image that cannot be inspected (no engine, pull refused) still gets
//!   a project, without ports, and the file and the log say why.
//! - The name comes from the repository's last path component, reduced to
//!   `[a-z0-9-]`, so it can never name a path outside `projects_dir`.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

use tracing::{info, warn};
use wharf_plugin_api::draft::{comment_text, quoted};
use wharf_plugin_api::routes::Claim;
use wharf_plugin_api::{Deployer, DraftInput, Drafter, ImageFacts};
use wildmatch::WildMatch;

use super::matching::Push;
use crate::config::atomic::write_atomic;
use crate::config::catalog::{is_project_file, Catalog};
use crate::config::project::is_valid_name;
use crate::config::DaemonConfig;
use crate::deploy::engine::Engine;
use crate::reference::normalize_repository;
use lock::RepoLocks;

mod lock;

/// One creation at a time per repository in this process: check, inspect,
/// write, load. Pushes of other repositories go on meanwhile; an image pull
/// may hold one for up to [`INSPECT_LIMIT`].
static CREATING: LazyLock<RepoLocks> = LazyLock::new(RepoLocks::default);

/// Inspecting may pull the image; past this, the project is created without.
const INSPECT_LIMIT: Duration = Duration::from_secs(120);
/// Longest project name written (container names add a prefix and a stage).
const MAX_NAME: usize = 48;

/// What became of a push whose repository no project names.
#[derive(Debug, PartialEq, Eq)]
pub enum AutoCreate {
    /// A project file was written and is now in the live catalog.
    Created(String),
    /// A project for the repository exists after all (a concurrent push made
    /// it, or its file was not loaded yet): match the push again.
    Exists,
    /// Nothing was created; why, for the response's `ignored`.
    Skipped(String),
}

/// Create a project for `push` if the config allows it.
pub async fn for_push(engine: &Arc<Engine>, config: &DaemonConfig, push: &Push) -> AutoCreate {
    let settings = &config.auto_create;
    if !settings.enabled {
        return AutoCreate::Skipped("auto_create is disabled".into());
    }
    let reference = format!("{}:{}", push.repository, push.tag);
    let Some(pattern) = settings
        .allow
        .iter()
        .find(|glob| allows(glob, &push.repository, &reference))
    else {
        return AutoCreate::Skipped("the image is not in auto_create.allow".into());
    };
    let plugin = match drafting_plugin(engine, &settings.deployer) {
        Ok(plugin) => plugin,
        Err(why) => return AutoCreate::Skipped(why),
    };
    let _creating = CREATING.lock(&push.repository).await;

    // Re-check under the lock: another push may have created it meanwhile,
    // or the file may exist without being in the catalog yet.
    if !engine.catalog().matching(&push.repository).is_empty() {
        return AutoCreate::Exists;
    }
    let dir = config.projects_dir.clone();
    let repository = push.repository.clone();
    let existing = match blocking(move || file_naming(&dir, &repository)).await {
        Ok(existing) => existing,
        Err(why) => return AutoCreate::Skipped(why),
    };
    if let Some(existing) = existing {
        let catalog = engine.reload_files(vec![existing.clone()]).await;
        if !catalog.matching(&push.repository).is_empty() {
            return AutoCreate::Exists;
        }
        return AutoCreate::Skipped(format!(
            "{} names this image but does not load; fix it rather than have wharf create another",
            existing.display()
        ));
    }

    let pull_reference = match &push.digest {
        Some(digest) => format!("{}@{digest}", push.repository),
        None => reference.clone(),
    };
    let facts = inspect(engine, &settings.deployer, &pull_reference).await;
    if let Err(why) = &facts {
        warn!(image = %reference, "auto-create: cannot inspect the image, the project gets no ports: {why}");
    }
    let job = Job {
        dir: config.projects_dir.clone(),
        catalog: engine.catalog(),
        repository: push.repository.clone(),
        reference: reference.clone(),
        pattern: pattern.clone(),
        stage: settings.default_stage.clone(),
        deployer: settings.deployer.clone(),
        plugin,
        facts,
    };
    let (name, path) = match blocking(move || write_project(&job)).await.and_then(|r| r) {
        Ok(written) => written,
        Err(why) => return AutoCreate::Skipped(why),
    };
    let catalog = engine.reload_files(vec![path.clone()]).await;
    if catalog.project(&name).is_none() {
        let why = catalog
            .errors()
            .find(|e| e.file == path)
            .map(|e| e.to_string())
            .unwrap_or_else(|| "it did not load".into());
        warn!(file = %path.display(), "auto-created project does not load: {why}");
        return AutoCreate::Skipped(format!(
            "auto-created {} does not load: {why}",
            path.display()
        ));
    }
    info!(project = %name, file = %path.display(), image = %reference, "project auto-created");
    AutoCreate::Created(name)
}

/// The `auto_create.deployer` plugin, when it can draft a table; else why
/// no project can be created (before anything is pulled or written).
fn drafting_plugin(engine: &Engine, deployer: &str) -> Result<Arc<dyn Deployer>, String> {
    let registry = engine.registry();
    let Some(plugin) = registry.get(deployer) else {
        return Err(format!(
            "auto_create.deployer '{deployer}' is not available in this build (available: {})",
            registry.names().join(", ")
        ));
    };
    if plugin.as_drafter().is_none() {
        return Err(format!(
            "auto_create.deployer '{deployer}' cannot draft a project from an image: write the project file yourself, or choose a deployer that can"
        ));
    }
    Ok(plugin.clone())
}

/// Run file-system work on the blocking pool; an error is the reason for
/// the response's `ignored`.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| format!("auto-create failed: {e}"))
}

/// What the file is written from, owned, to hand to the blocking pool.
struct Job {
    dir: PathBuf,
    catalog: Arc<Catalog>,
    repository: String,
    reference: String,
    pattern: String,
    stage: String,
    deployer: String,
    /// The deployer, which drafts its table.
    plugin: Arc<dyn Deployer>,
    facts: Result<ImageFacts, String>,
}

/// Choose a free name and write the project file. Blocking: it looks at the
/// folder, probes host ports and fsyncs. Returns the name and the path, or
/// why nothing was written.
fn write_project(job: &Job) -> Result<(String, PathBuf), String> {
    let Some(name) = choose_name(&job.dir, &job.catalog, &job.repository) else {
        return Err(format!(
            "no free project name for {} in {}",
            job.repository,
            job.dir.display()
        ));
    };
    let path = job.dir.join(format!("{name}.toml"));
    let Some(drafter) = job.plugin.as_drafter() else {
        return Err(format!(
            "the {} deployer cannot draft a project",
            job.deployer
        ));
    };
    let text = render(&Draft {
        repository: &job.repository,
        reference: &job.reference,
        pattern: &job.pattern,
        stage: &job.stage,
        deployer: &job.deployer,
        drafter,
        facts: job.facts.as_ref().map_err(String::as_str),
        taken_ports: &ports_in_use(&job.catalog),
    });
    if let Err(e) = write_atomic(&path, text.as_bytes(), 0o644) {
        warn!(file = %path.display(), "auto-create: cannot write the project file: {e}");
        return Err(format!("cannot write {}: {e}", path.display()));
    }
    Ok((name, path))
}

/// Whether an `allow` glob admits the push: it is matched against the
/// normalized repository (`docker.io/acme/web`) and the reference with its
/// tag (`docker.io/acme/web:v1`).
fn allows(glob: &str, repository: &str, reference: &str) -> bool {
    let glob = WildMatch::new(glob);
    glob.matches(repository) || glob.matches(reference)
}

/// A project file in `dir` whose `image` is `repository`, loaded or not.
fn file_naming(dir: &Path, repository: &str) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_project_file(p))
        .find(|path| {
            wharf_plugin_api::files::read_limited_to_string(path)
                .ok()
                .and_then(|text| text.parse::<toml::Table>().ok())
                .and_then(|table| table.get("image")?.as_str().map(str::to_string))
                .and_then(|image| normalize_repository(&image).ok())
                .is_some_and(|image| image == repository)
        })
}

/// Ask the deployer (else any plugin that can) what the image declares.
async fn inspect(engine: &Engine, deployer: &str, reference: &str) -> Result<ImageFacts, String> {
    let registry = engine.registry();
    let inspector = registry
        .get(deployer)
        .and_then(|p| p.as_image_inspector())
        .or_else(|| {
            registry
                .names()
                .into_iter()
                .find_map(|n| registry.get(n).and_then(|p| p.as_image_inspector()))
        })
        .ok_or_else(|| "no deployer in this build can inspect images".to_string())?;
    match tokio::time::timeout(INSPECT_LIMIT, inspector.inspect_image(reference)).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!(
            "inspecting took longer than {}s",
            INSPECT_LIMIT.as_secs()
        )),
    }
}

/// The repository's last path component, lowercased, reduced to
/// `[a-z0-9-]`: `acme/Web_App.v2` → `web-app-v2`.
fn sanitize(component: &str) -> String {
    let mut name = String::new();
    for c in component.chars().map(|c| c.to_ascii_lowercase()) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            name.push(c);
        } else if !name.ends_with('-') {
            name.push('-');
        }
    }
    let name = name.trim_matches('-');
    let mut name: String = name.chars().take(MAX_NAME).collect();
    while name.ends_with('-') {
        name.pop();
    }
    name
}

/// The first free name among: the last component, the last two joined, then
/// the last component numbered. Free means no file of that name (loaded or
/// not) and no project of that name.
fn choose_name(dir: &Path, catalog: &Catalog, repository: &str) -> Option<String> {
    let mut parts = repository.rsplit('/');
    let last = sanitize(parts.next().unwrap_or_default());
    let last = if last.is_empty() {
        "app".to_string()
    } else {
        last
    };
    let parent = parts.next().map(sanitize).filter(|p| !p.is_empty());
    let mut candidates = vec![last.clone()];
    if let Some(parent) = parent {
        candidates.push(format!("{parent}-{last}"));
    }
    candidates.extend((2..100).map(|n| format!("{last}-{n}")));
    candidates.into_iter().find(|name| {
        is_valid_name(name)
            && catalog.project(name).is_none()
            && !dir.join(format!("{name}.toml")).exists()
    })
}

/// Host ports that stages of loaded projects already publish, as their
/// deployers claim them.
fn ports_in_use(catalog: &Catalog) -> BTreeSet<u16> {
    catalog
        .projects()
        .flat_map(|p| p.stages.values())
        .flat_map(|s| s.claims.iter())
        .filter_map(|c| match c {
            Claim::Published(address) => Some(address.port()),
            Claim::Route(_) => None,
        })
        .collect()
}

/// What the file is written from.
struct Draft<'a> {
    repository: &'a str,
    reference: &'a str,
    pattern: &'a str,
    stage: &'a str,
    deployer: &'a str,
    /// The deployer's drafting capability, for its table.
    drafter: &'a dyn Drafter,
    facts: Result<&'a ImageFacts, &'a str>,
    taken_ports: &'a BTreeSet<u16>,
}

/// `text` as one TOML key: bare where TOML allows (`dev`), quoted
/// otherwise (`"v1.0"`), so a dot in a stage name never splits the key
/// into nested tables.
fn key(text: &str) -> String {
    let bare = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if bare {
        text.to_string()
    } else {
        quoted(text)
    }
}

/// One line of a deployer's comment text, safe in a comment: no control
/// character may end the comment early.
fn comment_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The project file's text.
fn render(draft: &Draft<'_>) -> String {
    let plugin = draft.drafter.draft(&DraftInput {
        facts: draft.facts,
        taken_ports: draft.taken_ports,
    });
    let comment = |out: &mut String, lines: &[String]| {
        if !lines.is_empty() {
            out.push_str("#\n");
            for line in lines {
                let _ = writeln!(out, "# {}", comment_line(line));
            }
        }
    };
    let mut out = String::new();
    let now = humantime::format_rfc3339_seconds(SystemTime::now());
    let _ = writeln!(
        out,
        "# Auto-created by wharf at {now} from a push of\n# {} (auto_create.allow matched {}).",
        comment_text(draft.reference),
        comment_text(&quoted(draft.pattern))
    );
    out.push_str("# This file is yours now: edit it (wharf reloads it on save) or delete it.\n");
    comment(&mut out, &plugin.defaults);
    let labels: HashMap<&str, &str> = match draft.facts {
        Ok(facts) => facts
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect(),
        Err(_) => HashMap::new(),
    };
    let described: Vec<_> = [
        ("title", "org.opencontainers.image.title"),
        ("description", "org.opencontainers.image.description"),
        ("source", "org.opencontainers.image.source"),
    ]
    .into_iter()
    .filter_map(|(what, key)| {
        labels
            .get(key)
            .map(|v| comment_text(v))
            .filter(|v| !v.is_empty())
            .map(|v| (what, v))
    })
    .collect();
    if !described.is_empty() {
        out.push_str("#\n# From the image's labels:\n");
        for (what, value) in &described {
            let _ = writeln!(out, "#   {what:<12} {value}");
        }
    }
    comment(&mut out, &plugin.missing);
    out.push('\n');
    let _ = writeln!(out, "image = {}", quoted(draft.repository));
    let _ = writeln!(out, "deployer = {}", quoted(draft.deployer));
    if let Some((_, description)) = described.iter().find(|(w, _)| *w == "description") {
        let _ = writeln!(out, "description = {}", quoted(description));
    }
    let _ = writeln!(
        out,
        "\n[stages.{}]\ntags = [\"*\"]\nauto_deploy = true",
        key(draft.stage)
    );
    let _ = write!(out, "\n[{}]\n{}", key(draft.deployer), plugin.table);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, TcpListener};
    use wharf_plugin_api::Registry;

    fn registry() -> Registry {
        crate::plugins::registry(&Default::default())
    }

    /// The host port of a Docker port spec: `127.0.0.1:8080:80/tcp` → 8080.
    fn host_port(spec: &str) -> Option<u16> {
        let spec = spec.split('/').next()?;
        let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
        parts.get(1)?.parse().ok()
    }

    fn docker() -> Arc<dyn Deployer> {
        registry().get("docker").unwrap().clone()
    }

    fn facts(ports: &[&str], labels: &[(&str, &str)]) -> ImageFacts {
        ImageFacts {
            exposed_ports: ports.iter().map(|p| p.to_string()).collect(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            has_healthcheck: false,
        }
    }

    fn draft<'a>(
        facts: Result<&'a ImageFacts, &'a str>,
        taken: &'a BTreeSet<u16>,
        docker: &'a Arc<dyn Deployer>,
    ) -> Draft<'a> {
        Draft {
            repository: "registry.example.com:5000/acme/web",
            reference: "registry.example.com:5000/acme/web:v1",
            pattern: "*",
            stage: "dev",
            deployer: "docker",
            drafter: docker.as_drafter().unwrap(),
            facts,
            taken_ports: taken,
        }
    }

    /// The rendered file must load as a project with the safe defaults.
    fn load(text: &str, name: &str) -> crate::config::project::Project {
        let path = PathBuf::from(format!("/p/{name}.toml"));
        crate::config::project::parse(&path, text, &registry())
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    #[test]
    fn stage_names_are_written_as_one_key() {
        assert_eq!(key("dev"), "dev");
        assert_eq!(key("v1.0"), "\"v1.0\"");
        let text = format!("[stages.{}]\ntags = [\"*\"]\n", key("v1.0"));
        let table: toml::Table = text.parse().unwrap();
        assert!(table["stages"].as_table().unwrap().contains_key("v1.0"));
    }

    #[test]
    fn names_are_sanitized_and_never_leave_the_folder() {
        assert_eq!(sanitize("Web_App.v2"), "web-app-v2");
        assert_eq!(sanitize("__x__"), "x");
        assert_eq!(sanitize(".."), "");
        assert_eq!(sanitize(&"a".repeat(100)).len(), MAX_NAME);
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::default();
        for repository in [
            "docker.io/library/nginx",
            "localhost:5000/acme/..",
            "ghcr.io/a/B-c",
        ] {
            let name = choose_name(dir.path(), &catalog, repository).unwrap();
            assert!(is_valid_name(&name), "{name}");
            assert!(name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
            assert_eq!(
                dir.path().join(format!("{name}.toml")).parent(),
                Some(dir.path())
            );
        }
        assert_eq!(
            choose_name(dir.path(), &catalog, "localhost:5000/acme/..").as_deref(),
            Some("app")
        );
    }

    #[test]
    fn collisions_get_a_distinct_name() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::default();
        std::fs::write(dir.path().join("web.toml"), "broken").unwrap();
        assert_eq!(
            choose_name(dir.path(), &catalog, "ghcr.io/acme/web").as_deref(),
            Some("acme-web")
        );
        std::fs::write(dir.path().join("acme-web.toml"), "x").unwrap();
        assert_eq!(
            choose_name(dir.path(), &catalog, "ghcr.io/acme/web").as_deref(),
            Some("web-2")
        );
    }

    #[test]
    fn the_file_publishes_the_first_tcp_port_on_loopback() {
        let taken = BTreeSet::new();
        let facts = facts(
            &["53/udp", "80/tcp", "9090/tcp"],
            &[
                ("org.opencontainers.image.title", "Web"),
                (
                    "org.opencontainers.image.description",
                    "The \"web\" app\nline two",
                ),
                (
                    "org.opencontainers.image.source",
                    "https://github.com/acme/web",
                ),
            ],
        );
        let docker = docker();
        let text = render(&draft(Ok(&facts), &taken, &docker));
        assert!(text.starts_with("# Auto-created by wharf at "), "{text}");
        assert!(
            text.contains("registry.example.com:5000/acme/web:v1"),
            "{text}"
        );
        assert!(
            text.contains("#   source       https://github.com/acme/web"),
            "{text}"
        );
        let project = load(&text, "web");
        assert_eq!(project.repository, "registry.example.com:5000/acme/web");
        let stage = &project.stages["dev"];
        assert!(stage.auto_deploy && stage.matches("anything"));
        assert_eq!(stage.deployer, "docker");
        let ports = stage.settings["ports"].as_array().unwrap();
        assert_eq!(ports.len(), 1);
        let port = ports[0].as_str().unwrap();
        assert!(
            port.starts_with("127.0.0.1:") && port.ends_with(":80"),
            "{port}"
        );
        let host = host_port(port).unwrap();
        assert!((8080..8180).contains(&host), "{port}");
        assert_eq!(stage.settings["restart"].as_str(), Some("unless-stopped"));
        for unsafe_key in ["privileged", "volumes", "network", "networks"] {
            assert!(!stage.settings.contains_key(unsafe_key), "{unsafe_key}");
        }
    }

    #[test]
    fn labels_may_choose_the_port_and_health_path() {
        let taken = BTreeSet::new();
        let facts = facts(
            &["80/tcp"],
            &[("wharf.port", "9123"), ("wharf.health.path", "/healthz")],
        );
        let docker = docker();
        let text = render(&draft(Ok(&facts), &taken, &docker));
        let project = load(&text, "web");
        let settings = &project.stages["dev"].settings;
        assert!(
            settings["ports"].as_array().unwrap()[0]
                .as_str()
                .unwrap()
                .ends_with(":9123"),
            "{text}"
        );
        assert_eq!(
            settings["health"]["http"]["path"].as_str(),
            Some("/healthz")
        );
    }

    /// The port choice itself is the docker plugin's (its `draft` tests);
    /// here, that a port another project publishes is not chosen again.
    #[test]
    fn taken_host_ports_are_skipped() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let bound = listener.local_addr().unwrap().port();
        drop(listener);
        let taken: BTreeSet<u16> = [bound].into();
        let facts = facts(&[&format!("{bound}/tcp")], &[]);
        let docker = docker();
        let text = render(&draft(Ok(&facts), &taken, &docker));
        let project = load(&text, "web");
        let port = project.stages["dev"].settings["ports"].as_array().unwrap()[0]
            .as_str()
            .unwrap()
            .to_string();
        assert_ne!(host_port(&port), Some(bound), "{text}");
        assert_eq!(host_port("127.0.0.1:8080:80/tcp"), Some(8080));
        assert_eq!(host_port("8443:443"), Some(8443));
        assert_eq!(host_port("[::1]:9000:90"), Some(9000));
        assert_eq!(host_port("80"), None);
    }

    #[test]
    fn a_failed_inspection_still_makes_a_usable_file_that_says_why() {
        let taken = BTreeSet::new();
        let docker = docker();
        let text = render(&draft(
            Err("cannot reach the Docker engine"),
            &taken,
            &docker,
        ));
        assert!(text.contains("NO PORTS"), "{text}");
        assert!(text.contains("cannot reach the Docker engine"), "{text}");
        let project = load(&text, "web");
        assert!(!project.stages["dev"].settings.contains_key("ports"));
    }

    #[test]
    fn allow_globs_see_the_normalized_reference() {
        let repo = "docker.io/acme/web";
        assert!(allows("*", repo, "docker.io/acme/web:v1"));
        assert!(allows("docker.io/acme/*", repo, "docker.io/acme/web:v1"));
        assert!(allows(
            "docker.io/acme/web:v*",
            repo,
            "docker.io/acme/web:v1"
        ));
        assert!(!allows("ghcr.io/*", repo, "docker.io/acme/web:v1"));
    }

    #[test]
    fn an_existing_file_naming_the_image_is_found() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("other.toml"), "image = \"nginx\"\n").unwrap();
        std::fs::write(dir.path().join(".hidden.toml"), "image = \"acme/web\"\n").unwrap();
        assert_eq!(file_naming(dir.path(), "docker.io/acme/web"), None);
        std::fs::write(
            dir.path().join("mine.toml"),
            "image = \"acme/web\"\n[broken",
        )
        .unwrap();
        assert_eq!(file_naming(dir.path(), "docker.io/acme/web"), None);
        std::fs::write(dir.path().join("mine.toml"), "image = \"acme/web\"\n").unwrap();
        assert_eq!(
            file_naming(dir.path(), "docker.io/acme/web"),
            Some(dir.path().join("mine.toml"))
        );
    }
}
