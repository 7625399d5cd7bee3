//! From a pushed image to deployments: every project naming the repository,
//! every stage of it whose tag globs match.

use crate::config::catalog::Catalog;
use crate::deploy::status::Status;
use crate::deploy::store::NewDeployment;

/// A push that passed validation: normalized repository, valid tag and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    pub repository: String,
    pub tag: String,
    pub digest: Option<String>,
    pub event_id: Option<String>,
}

/// What a push leads to.
#[derive(Debug, Default)]
pub struct Matched {
    pub deployments: Vec<NewDeployment>,
    /// Why parts of the push lead nowhere, for the response's `ignored`.
    pub ignored: Vec<String>,
    /// No project names this repository at all (a candidate for auto-create).
    pub unknown_repository: bool,
}

/// Match `push` against the projects of `catalog`.
pub fn match_push(catalog: &Catalog, push: &Push, trigger: &'static str) -> Matched {
    let mut matched = Matched::default();
    let projects = catalog.matching(&push.repository);
    if projects.is_empty() {
        matched.unknown_repository = true;
        matched
            .ignored
            .push(format!("no project for image {}", push.repository));
        return matched;
    }
    for project in projects {
        let before = matched.deployments.len();
        for stage in project.stages.values().filter(|s| s.matches(&push.tag)) {
            matched.deployments.push(NewDeployment {
                project: project.name.clone(),
                stage: stage.name.clone(),
                repository: push.repository.clone(),
                tag: push.tag.clone(),
                digest: push.digest.clone(),
                deployer: stage.deployer.clone(),
                status: if stage.auto_deploy {
                    Status::Queued
                } else {
                    Status::AwaitingApproval
                },
                trigger,
            });
        }
        if matched.deployments.len() == before {
            matched.ignored.push(format!(
                "project {}: no stage matches tag '{}'",
                project.name, push.tag
            ));
        }
    }
    matched
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_matching_stage_of_every_project_deploys() {
        let dir = tempfile::tempdir().unwrap();
        let script = "deployer = \"script\"\n[script]\ncommand = [\"/bin/true\"]\n";
        std::fs::write(
            dir.path().join("web.toml"),
            format!("image = \"acme/web\"\n{script}[stages.staging]\ntags = [\"main-*\", \"*\"]\n[stages.prod]\ntags = [\"v*\"]\nauto_deploy = false\n"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("mirror.toml"),
            format!("image = \"docker.io/acme/web\"\n{script}[stages.only]\ntags = [\"x\"]\n"),
        )
        .unwrap();
        let catalog = Catalog::load_dir(dir.path(), &crate::plugins::registry(&Default::default()));
        let push = Push {
            repository: "docker.io/acme/web".into(),
            tag: "v1.2".into(),
            digest: None,
            event_id: None,
        };
        let matched = match_push(&catalog, &push, "webhook");
        let got: Vec<_> = matched
            .deployments
            .iter()
            .map(|d| (d.project.as_str(), d.stage.as_str(), d.status))
            .collect();
        assert_eq!(
            got,
            [
                ("web", "prod", Status::AwaitingApproval),
                ("web", "staging", Status::Queued)
            ]
        );
        assert_eq!(
            matched.ignored,
            ["project mirror: no stage matches tag 'v1.2'"]
        );
        assert!(!matched.unknown_repository);

        let other = Push {
            repository: "docker.io/acme/api".into(),
            ..push
        };
        let matched = match_push(&catalog, &other, "webhook");
        assert!(matched.unknown_repository);
        assert!(matched.deployments.is_empty());
    }
}
