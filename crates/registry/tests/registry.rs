//! The registry client against a real registry: Debian's `docker-registry`
//! (CNCF distribution 2.8) on a free loopback port, with and without
//! htpasswd, images pushed as plain distribution API calls (blobs, then
//! Docker v2 and OCI manifests and an OCI index), so no engine is needed.
//!
//! Without `/usr/bin/docker-registry` the tests print why and pass, unless
//! `WHARF_REQUIRE_DOCKER=1` (CI), where they fail.

// A panic in a test is a failed test: the no-panic lints are for the daemon.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "../../../tests/common/registry.rs"]
mod server;

use std::time::Duration;

use server::{registry_or_skip, Pusher, Registry, OCI_MANIFEST};
use wharf_registry::auth::Credentials;
use wharf_registry::choose;
use wharf_registry::client::{Client, ClientConfig, RegistryError, Repository};

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

fn base(registry: &Registry) -> String {
    format!("http://{}", registry.host())
}

fn repository_on(registry: &Registry, path: &str) -> Repository {
    Repository::parse(&format!("{}/{path}", registry.host())).unwrap()
}

fn client(page_size: Option<u32>) -> Client {
    Client::new(ClientConfig {
        page_size,
        timeout: Duration::from_secs(10),
        ..ClientConfig::default()
    })
}

#[tokio::test]
async fn tags_are_read_page_by_page() {
    if !registry_or_skip("tags_are_read_page_by_page") {
        return;
    }
    let registry = Registry::start(None);
    let pusher = Pusher::new(&registry, None);
    let mut pushed = vec!["latest", "v1.2.0", "v1.9.0", "v1.10.0", "v2.0.0-rc.1"];
    for tag in &pushed {
        pusher.image("acme/web", tag, tag, OCI_MANIFEST).await;
    }

    // distribution 2.8 does not paginate tags/list: it answers `?n=2` with
    // every tag and no `Link` (pagination came with distribution 3; the
    // client's unit tests follow `Link` against a server that paginates).
    // Should the registry paginate, its first page has two tags.
    let first = reqwest::get(format!("{}/v2/acme/web/tags/list?n=2", base(&registry)))
        .await
        .unwrap();
    let paginates = first.headers().contains_key("link");
    let page: serde_json::Value = serde_json::from_str(&first.text().await.unwrap()).unwrap();
    let on_first_page = page["tags"].as_array().unwrap().len();
    assert_eq!(
        on_first_page,
        if paginates { 2 } else { pushed.len() },
        "{page}"
    );

    // The client follows every Link and returns every tag.
    let repository = repository_on(&registry, "acme/web");
    let mut tags = client(Some(2)).tags(&repository, None).await.unwrap();
    tags.sort();
    pushed.sort();
    assert_eq!(tags, pushed);
    // One tag per page, and the registry's own page size, give the same.
    let mut one_by_one = client(Some(1)).tags(&repository, None).await.unwrap();
    one_by_one.sort();
    assert_eq!(one_by_one, pushed);
    let mut whole = client(None).tags(&repository, None).await.unwrap();
    whole.sort();
    assert_eq!(whole, pushed);

    // What the chooser makes of them.
    let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
    assert_eq!(
        choose::choose(tags.iter().copied(), None, false),
        Some("v1.10.0")
    );
    assert_eq!(
        choose::choose(tags.iter().copied(), Some("v1.10.0"), false),
        None
    );
    assert_eq!(
        choose::choose(tags.iter().copied(), Some("v1.10.0"), true),
        Some("v2.0.0-rc.1")
    );

    // A repository that does not exist is a typed 404.
    let missing = client(None)
        .tags(&repository_on(&registry, "acme/nothing"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(missing, RegistryError::NotFound { .. }),
        "{missing:?}"
    );
}

#[tokio::test]
async fn a_moved_tag_shows_its_new_digest() {
    if !registry_or_skip("a_moved_tag_shows_its_new_digest") {
        return;
    }
    let registry = Registry::start(None);
    let pusher = Pusher::new(&registry, None);
    let client = client(None);
    let repository = repository_on(&registry, "acme/api");

    let (first, _, _) = pusher
        .image("acme/api", "main", "build-1", OCI_MANIFEST)
        .await;
    let seen = client.digest(&repository, "main", None).await.unwrap();
    assert_eq!(seen, first);
    assert!(
        !choose::changed(Some(first.as_str()), &seen),
        "same digest again"
    );

    // CI pushes `main` again: the HEAD shows the new digest, once.
    let (second, _, _) = pusher
        .image("acme/api", "main", "build-2", OCI_MANIFEST)
        .await;
    assert_ne!(first, second);
    let seen = client.digest(&repository, "main", None).await.unwrap();
    assert_eq!(seen, second);
    assert!(choose::changed(Some(first.as_str()), &seen));
    assert!(!choose::changed([first.as_str(), second.as_str()], &seen));

    // A Docker v2 manifest and an OCI index are read as they were pushed,
    // not converted (their digests are those of the pushed bytes).
    let (docker, _, _) = pusher
        .image("acme/api", "docker", "d", DOCKER_MANIFEST)
        .await;
    assert_eq!(
        client.digest(&repository, "docker", None).await.unwrap(),
        docker
    );
    let (amd64, size, _) = pusher.image("acme/api", "amd64", "m", OCI_MANIFEST).await;
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{amd64}","size":{size},"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#
    );
    let index_digest = pusher
        .manifest("acme/api", "multi", OCI_INDEX, &index)
        .await;
    assert_eq!(
        client.digest(&repository, "multi", None).await.unwrap(),
        index_digest
    );

    let missing = client
        .digest(&repository, "v9.9.9", None)
        .await
        .unwrap_err();
    assert!(
        matches!(missing, RegistryError::NotFound { .. }),
        "{missing:?}"
    );
    assert!(missing.to_string().contains("acme/api:v9.9.9"), "{missing}");
    let invalid = client
        .digest(&repository, "no tag", None)
        .await
        .unwrap_err();
    assert!(
        matches!(invalid, RegistryError::Reference(_)),
        "{invalid:?}"
    );
}

fn credentials(user: &str, password: &str) -> Credentials {
    Credentials {
        username: Some(user.into()),
        password: Some(password.into()),
        identity_token: None,
        server: "127.0.0.1".into(),
    }
}

#[tokio::test]
async fn a_private_registry_with_basic_auth() {
    if !registry_or_skip("a_private_registry_with_basic_auth") {
        return;
    }
    let registry = Registry::start_private("ci", "s3cret");
    let pusher = Pusher::new(&registry, Some(("ci", "s3cret")));
    let (digest, _, _) = pusher
        .image("acme/private", "v1.0.0", "p", OCI_MANIFEST)
        .await;
    let repository = repository_on(&registry, "acme/private");
    let client = client(Some(1));
    let good = credentials("ci", "s3cret");

    assert_eq!(
        client.tags(&repository, Some(&good)).await.unwrap(),
        ["v1.0.0"]
    );
    assert_eq!(
        client
            .digest(&repository, "v1.0.0", Some(&good))
            .await
            .unwrap(),
        digest
    );

    let anonymous = client.tags(&repository, None).await.unwrap_err();
    assert!(
        matches!(anonymous, RegistryError::Unauthorized { .. }),
        "{anonymous:?}"
    );
    assert!(
        anonymous.to_string().contains("no credentials"),
        "{anonymous}"
    );

    let wrong = credentials("ci", "guess");
    let refused = client
        .digest(&repository, "v1.0.0", Some(&wrong))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, RegistryError::Unauthorized { .. }),
        "{refused:?}"
    );
    assert!(
        !refused.to_string().contains("guess"),
        "password in {refused}"
    );

    // The good login still works after the refused one (no cache mix-up).
    assert_eq!(
        client.tags(&repository, Some(&good)).await.unwrap(),
        ["v1.0.0"]
    );
}

#[tokio::test]
async fn a_registry_that_is_down_is_a_typed_error_and_recovers() {
    if !registry_or_skip("a_registry_that_is_down_is_a_typed_error_and_recovers") {
        return;
    }
    let registry = Registry::start(None);
    let pusher = Pusher::new(&registry, None);
    pusher.image("acme/web", "v1.0.0", "x", OCI_MANIFEST).await;
    let repository = repository_on(&registry, "acme/web");
    let client = client(None);
    assert_eq!(client.tags(&repository, None).await.unwrap(), ["v1.0.0"]);

    // Stopped: nothing listens on its port any more.
    let mut registry = registry;
    registry.stop();
    let down = client.tags(&repository, None).await.unwrap_err();
    assert!(
        matches!(down, RegistryError::Unreachable { .. }),
        "{down:?}"
    );
    let port = registry.port;
    assert!(
        down.to_string().contains(&format!("127.0.0.1:{port}")),
        "{down}"
    );
    let down = client
        .digest(&repository, "v1.0.0", None)
        .await
        .unwrap_err();
    assert!(
        matches!(down, RegistryError::Unreachable { .. }),
        "{down:?}"
    );

    // Back: the same client reads it again.
    registry.resume();
    assert_eq!(client.tags(&repository, None).await.unwrap(), ["v1.0.0"]);
}
