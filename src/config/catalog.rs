//! The set of projects in force: an immutable snapshot, swapped whole.
//!
//! A request loads one snapshot and uses it to the end, and a deployment runs
//! with the snapshot it started with. Reloading builds a new snapshot and
//! swaps it in (`ArcSwap`), so readers never lock and never see half a reload.
//!
//! A file that fails to load keeps the previous good version of its project
//! active and records the error; deleting a file removes its project.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use wharf_plugin_api::routes::Claim;
use wharf_plugin_api::Registry;

use super::project::{self, Project, ProjectError, Stage};

/// One snapshot of all projects.
#[derive(Debug, Default, Clone)]
pub struct Catalog {
    /// By project name (file stem).
    projects: BTreeMap<String, Arc<Project>>,
    /// Files that failed to load, by path, with why.
    errors: BTreeMap<PathBuf, ProjectError>,
    /// Normalized repository → every project naming it.
    by_repository: HashMap<String, Vec<Arc<Project>>>,
}

/// Whether `path` is a project file wharf should read: `*.toml`, not hidden
/// (editors' and wharf's own temporary files start with `.`).
pub fn is_project_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.starts_with('.') && name.ends_with(".toml") && name.len() > ".toml".len()
}

/// The project files in `dir`, sorted; none when it cannot be read.
fn list_project_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_project_file(p))
            .collect(),
        Err(_) => Vec::new(),
    };
    sort_paths(&mut files);
    files
}

/// Paths of one folder, in order: comparing them as bytes orders them like
/// `Path`'s component-wise comparison, several times faster (it matters
/// with thousands of project files).
fn sort_paths(paths: &mut [PathBuf]) {
    paths.sort_unstable_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
}

/// Each stage's claimed host addresses, with the stage.
fn claims(project: &Project) -> impl Iterator<Item = (&Stage, Claim)> + '_ {
    project
        .stages
        .values()
        .flat_map(|s| s.claims.iter().map(move |c| (s, *c)))
}

/// How another stage's claim reads in a message.
fn describe(claim: &Claim) -> String {
    match claim {
        Claim::Route(listen) => format!("routes {listen}"),
        Claim::Published(address) => format!("publishes {address} (a ports entry)"),
    }
}

/// The project name a file would have.
pub fn project_name(path: &Path) -> Option<String> {
    path.file_stem().map(|s| s.to_string_lossy().into_owned())
}

impl Catalog {
    /// Read every project file in `dir`. A missing folder is an empty catalog
    /// (wharf creates it on start); a file that fails is recorded in
    /// [`Catalog::errors`] and the others still load.
    pub fn load_dir(dir: &Path, registry: &Registry) -> Catalog {
        let mut catalog = Catalog::default();
        for path in list_project_files(dir) {
            catalog.apply_file(&path, registry);
        }
        catalog.index();
        catalog
    }

    /// A new snapshot with the given files re-read (changed, added or
    /// deleted); everything else is shared with `self`.
    pub fn with_files_reloaded(&self, paths: &[PathBuf], registry: &Registry) -> Catalog {
        // The index is rebuilt below: copying it first would be wasted work.
        let mut next = Catalog {
            projects: self.projects.clone(),
            errors: self.errors.clone(),
            by_repository: HashMap::new(),
        };
        for path in paths.iter().filter(|p| is_project_file(p)) {
            next.apply_file(path, registry);
        }
        next.index();
        next
    }

    /// A new snapshot with every file of `dir` re-read, and projects whose
    /// file is gone removed. Unlike [`Catalog::load_dir`], a file that now
    /// fails keeps its previous good version.
    pub fn with_dir_reloaded(&self, dir: &Path, registry: &Registry) -> Catalog {
        let mut paths = list_project_files(dir);
        paths.extend(self.projects.values().map(|p| p.source.clone()));
        paths.extend(self.errors.keys().cloned());
        sort_paths(&mut paths);
        paths.dedup();
        self.with_files_reloaded(&paths, registry)
    }

    fn apply_file(&mut self, path: &Path, registry: &Registry) {
        let Some(name) = project_name(path) else {
            return;
        };
        let text = match wharf_plugin_api::files::read_limited(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.projects.remove(&name);
                self.errors.remove(path);
                return;
            }
            Err(e) => {
                self.errors.insert(
                    path.to_path_buf(),
                    ProjectError {
                        file: path.to_path_buf(),
                        line: 1,
                        message: format!("cannot read: {e}"),
                    },
                );
                return;
            }
        };
        let parsed = match String::from_utf8(text) {
            Ok(text) => project::parse(path, &text, registry),
            Err(_) => Err(ProjectError {
                file: path.to_path_buf(),
                line: 1,
                message: "not UTF-8 text".into(),
            }),
        };
        let parsed = parsed.and_then(|project| match self.route_clash(&project) {
            Some(message) => Err(ProjectError {
                file: path.to_path_buf(),
                line: 1,
                message,
            }),
            None => Ok(project),
        });
        match parsed {
            Ok(project) => {
                self.errors.remove(path);
                self.projects.insert(name, Arc::new(project));
            }
            Err(error) => {
                self.errors.insert(path.to_path_buf(), error);
            }
        }
    }

    /// Why `project` cannot load beside the others: a route `listen`
    /// address that another stage (of it, or of another project) routes
    /// too or publishes as a fixed port. Each plugin checks one stage's
    /// table; only here are all stages seen together. Two stages that
    /// publish one port without a route are the engine's to refuse, as
    /// before routes existed.
    fn route_clash(&self, project: &Project) -> Option<String> {
        let mine: Vec<(&Stage, Claim)> = claims(project).collect();
        let others = || {
            self.projects
                .values()
                .filter(|p| p.name != project.name)
                .flat_map(|p| claims(p).map(move |(s, c)| (p, s, c)))
        };
        for (stage, claim) in &mine {
            let Claim::Route(listen) = claim else {
                // A fixed port of ours on an address another project routes.
                let routed =
                    others().find(|(_, _, c)| matches!(c, Claim::Route(_)) && c.overlaps(claim));
                if let Some((other, other_stage, theirs)) = routed {
                    return Some(format!(
                        "stage {} publishes {}, which {}/{} {}: the proxy owns a route's address; drop that ports entry or move the route",
                        stage.name,
                        claim.address(),
                        other.name,
                        other_stage.name,
                        describe(&theirs)
                    ));
                }
                continue;
            };
            let sibling = mine
                .iter()
                .find(|(other, c)| other.name != stage.name && c.overlaps(claim));
            match sibling {
                Some((other, Claim::Route(_))) => {
                    return Some(format!(
                        "stages {} and {} both route {listen}: give each stage its own [stages.<name>.{}.route] listen address",
                        other.name, stage.name, stage.deployer
                    ))
                }
                Some((other, theirs)) => {
                    return Some(format!(
                        "stage {} routes {listen}, which stage {} {} too: the proxy owns a route's address; drop that ports entry or move the route",
                        stage.name,
                        other.name,
                        describe(theirs)
                    ))
                }
                None => {}
            }
            if let Some((other, other_stage, theirs)) = others().find(|(_, _, c)| c.overlaps(claim))
            {
                return Some(format!(
                    "stage {} routes {listen}, which {}/{} already {}",
                    stage.name,
                    other.name,
                    other_stage.name,
                    describe(&theirs)
                ));
            }
        }
        None
    }

    /// Whether any stage has a route.
    pub fn has_routes(&self) -> bool {
        self.projects
            .values()
            .any(|p| claims(p).any(|(_, c)| matches!(c, Claim::Route(_))))
    }

    fn index(&mut self) {
        self.by_repository.clear();
        self.by_repository.reserve(self.projects.len());
        for project in self.projects.values() {
            self.by_repository
                .entry(project.repository.clone())
                .or_default()
                .push(project.clone());
        }
    }

    /// Every project naming `repository` (normalized).
    pub fn matching(&self, repository: &str) -> &[Arc<Project>] {
        self.by_repository
            .get(repository)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    pub fn project(&self, name: &str) -> Option<&Arc<Project>> {
        self.projects.get(name)
    }

    pub fn projects(&self) -> impl Iterator<Item = &Arc<Project>> {
        self.projects.values()
    }

    pub fn errors(&self) -> impl Iterator<Item = &ProjectError> {
        self.errors.values()
    }

    pub fn len(&self) -> usize {
        self.projects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.projects.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::plugins::registry;

    fn project_text(image: &str, tag: &str) -> String {
        format!(
            "image = \"{image}\"\ndeployer = \"script\"\n[script]\ncommand = [\"/bin/true\"]\n[stages.s]\ntags = [\"{tag}\"]\n"
        )
    }

    #[test]
    fn a_route_address_belongs_to_one_stage() {
        let dir = tempfile::tempdir().unwrap();
        let routed = |image: &str, listen: &str| {
            format!("image = \"{image}\"\n[stages.prod]\ntags = [\"v*\"]\n[docker]\n[docker.route]\nlisten = \"{listen}\"\nport = 80\n")
        };
        std::fs::write(dir.path().join("a.toml"), routed("a", "127.0.0.1:8080")).unwrap();
        std::fs::write(dir.path().join("b.toml"), routed("b", "127.0.0.1:8080")).unwrap();
        std::fs::write(dir.path().join("c.toml"), routed("c", "127.0.0.1:8081")).unwrap();
        // One project-wide route shared by two stages.
        std::fs::write(
            dir.path().join("d.toml"),
            "image = \"d\"\n[stages.dev]\ntags = [\"dev\"]\n[stages.prod]\ntags = [\"v*\"]\n[docker]\n[docker.route]\nlisten = \"127.0.0.1:8090\"\nport = 80\n",
        )
        .unwrap();
        let catalog = Catalog::load_dir(dir.path(), &registry(&Default::default()));
        let errors: Vec<String> = catalog.errors().map(|e| e.to_string()).collect();
        assert!(catalog.project("a").is_some(), "{errors:?}");
        assert!(catalog.project("c").is_some());
        let errors: Vec<String> = catalog.errors().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].contains("b.toml") && errors[0].contains("a/prod already routes"),
            "{errors:?}"
        );
        assert!(
            errors[1].contains("d.toml") && errors[1].contains("both route"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_route_address_is_nobody_elses_fixed_port() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        // a routes 8080 on loopback; b publishes 8080 on all interfaces,
        // which overlaps; c publishes 127.0.0.2:8080, which does not.
        write("a.toml", "image = \"a\"\n[stages.prod]\ntags = [\"v*\"]\n[docker]\n[docker.route]\nlisten = \"127.0.0.1:8080\"\nport = 80\n");
        write(
            "b.toml",
            "image = \"b\"\n[stages.prod]\ntags = [\"v*\"]\n[docker]\nports = [\"8080:80\"]\n",
        );
        write("c.toml", "image = \"c\"\n[stages.prod]\ntags = [\"v*\"]\n[docker]\nports = [\"127.0.0.2:8080:80\"]\n");
        // d routes 9090 while its own other stage publishes it.
        write("d.toml", "image = \"d\"\n[stages.dev]\ntags = [\"dev\"]\n[stages.dev.docker]\nports = [\"127.0.0.1:9090:80\"]\n[stages.prod]\ntags = [\"v*\"]\n[stages.prod.docker]\n[stages.prod.docker.route]\nlisten = \"127.0.0.1:9090\"\nport = 80\n");
        // e routes 7070 on all interfaces; f, loading after it, publishes
        // 127.0.0.1:7070 and is refused.
        write("e.toml", "image = \"e\"\n[stages.prod]\ntags = [\"v*\"]\n[docker]\n[docker.route]\nlisten = \"0.0.0.0:7070\"\nport = 80\n");
        write("f.toml", "image = \"f\"\n[stages.prod]\ntags = [\"v*\"]\n[docker]\nports = [\"127.0.0.1:7070:80\"]\n");
        let catalog = Catalog::load_dir(dir.path(), &registry(&Default::default()));
        let errors: Vec<String> = catalog.errors().map(|e| e.to_string()).collect();
        assert!(catalog.project("a").is_some(), "{errors:?}");
        assert!(catalog.project("c").is_some(), "{errors:?}");
        assert!(catalog.project("e").is_some(), "{errors:?}");
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(
            errors[0].contains("b.toml")
                && errors[0].contains("publishes 0.0.0.0:8080, which a/prod routes 127.0.0.1:8080"),
            "{errors:?}"
        );
        assert!(
            errors[1].contains("d.toml") && errors[1].contains("stage prod routes 127.0.0.1:9090, which stage dev publishes 127.0.0.1:9090 (a ports entry) too"),
            "{errors:?}"
        );
        assert!(
            errors[2].contains("f.toml") && errors[2].contains("e/prod routes 0.0.0.0:7070"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_bad_file_keeps_the_previous_version_and_others_load() {
        let dir = tempfile::tempdir().unwrap();
        let web = dir.path().join("web.toml");
        std::fs::write(&web, project_text("acme/web", "v*")).unwrap();
        std::fs::write(dir.path().join("api.toml"), project_text("nginx", "*")).unwrap();
        std::fs::write(dir.path().join("broken.toml"), "image = ").unwrap();
        std::fs::write(dir.path().join(".web.toml.123.tmp"), "junk").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "junk").unwrap();

        let registry = registry(&Default::default());
        let catalog = Catalog::load_dir(dir.path(), &registry);
        assert_eq!(catalog.len(), 2);
        assert_eq!(catalog.errors().count(), 1);
        assert_eq!(catalog.matching("docker.io/library/nginx").len(), 1);
        assert_eq!(catalog.matching("docker.io/acme/web").len(), 1);

        std::fs::write(&web, "image = [").unwrap();
        let next = catalog.with_files_reloaded(std::slice::from_ref(&web), &registry);
        assert_eq!(
            next.matching("docker.io/acme/web").len(),
            1,
            "old version kept"
        );
        assert_eq!(next.errors().count(), 2);

        std::fs::write(&web, project_text("acme/web2", "v*")).unwrap();
        let next = next.with_files_reloaded(std::slice::from_ref(&web), &registry);
        assert!(next.matching("docker.io/acme/web").is_empty());
        assert_eq!(next.matching("docker.io/acme/web2").len(), 1);
        assert_eq!(next.errors().count(), 1);

        std::fs::remove_file(&web).unwrap();
        let next = next.with_files_reloaded(std::slice::from_ref(&web), &registry);
        assert!(next.matching("docker.io/acme/web2").is_empty());
        assert_eq!(next.len(), 1);
    }

    #[test]
    fn a_full_reload_keeps_good_versions_of_broken_files() {
        let dir = tempfile::tempdir().unwrap();
        let registry = registry(&Default::default());
        let web = dir.path().join("web.toml");
        let api = dir.path().join("api.toml");
        std::fs::write(&web, project_text("acme/web", "*")).unwrap();
        std::fs::write(&api, project_text("acme/api", "*")).unwrap();
        let catalog = Catalog::load_dir(dir.path(), &registry);
        std::fs::write(&web, "image = [").unwrap();
        std::fs::remove_file(&api).unwrap();
        std::fs::write(dir.path().join("new.toml"), project_text("acme/new", "*")).unwrap();
        let next = catalog.with_dir_reloaded(dir.path(), &registry);
        assert_eq!(next.matching("docker.io/acme/web").len(), 1);
        assert!(next.matching("docker.io/acme/api").is_empty());
        assert_eq!(next.matching("docker.io/acme/new").len(), 1);
        assert_eq!(next.errors().count(), 1);
    }

    #[test]
    fn paths_of_a_folder_sort_as_path_does() {
        let names = [
            "b.toml", "a.toml", "a-b.toml", "a.b.toml", "A.toml", "a_1.toml", "ä.toml",
        ];
        let mut fast: Vec<PathBuf> = names.iter().map(|n| Path::new("/p").join(n)).collect();
        let mut reference = fast.clone();
        sort_paths(&mut fast);
        reference.sort();
        assert_eq!(fast, reference);
    }

    #[test]
    fn several_projects_may_name_one_image() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.toml"), project_text("nginx", "*")).unwrap();
        std::fs::write(
            dir.path().join("b.toml"),
            project_text("docker.io/library/nginx", "*"),
        )
        .unwrap();
        let catalog = Catalog::load_dir(dir.path(), &registry(&Default::default()));
        assert_eq!(catalog.matching("docker.io/library/nginx").len(), 2);
    }
}
