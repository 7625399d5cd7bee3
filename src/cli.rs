//! The command line: `wharf serve` (default), `proxy`, `routes`, `check`, `url`, `rotate`, and
//! commands over the admin API (`status`, `deployments`, `logs`, `approve`,
//! `reject`, `deploy`, `rollback`) that read the daemon's address and the
//! admin token from the same config and settings files the daemon uses.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use serde_json::Value;
use wharf_plugin_api::{EngineReport, Registry};

use crate::config::catalog::Catalog;
use crate::config::settings::Secrets;
use crate::config::DaemonConfig;
use crate::plugins;

#[derive(Debug, Parser)]
#[command(
    name = "wharf",
    version,
    about = "Push-to-deploy daemon: a pushed image tag becomes a running deployment"
)]
pub struct Cli {
    /// wharf.toml; without it, embedded defaults (listen 127.0.0.1:8080,
    /// ./projects, ./state).
    #[arg(long, global = true, env = "WHARF_CONFIG")]
    pub config: Option<PathBuf>,
    /// For admin commands: the daemon's base URL, when not the configured
    /// listen address.
    #[arg(long, global = true)]
    pub server: Option<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (the default).
    Serve,
    /// Validate the config and every project file; exit 1 on any error.
    Check,
    /// Print the webhook URL.
    Url,
    /// Replace the webhook secret (the daemon picks it up live); print the new URL.
    Rotate,
    /// Projects, their stages and last deployments, and config errors.
    Status,
    /// Recent deployments, newest first.
    Deployments {
        #[arg(long)]
        project: Option<String>,
        #[arg(long)]
        stage: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// A deployment with its log.
    Logs { id: String },
    /// Queue a deployment that awaits approval.
    Approve { id: String },
    /// Reject a deployment that awaits approval.
    Reject { id: String },
    /// Deploy a tag to a stage now.
    Deploy {
        project: String,
        stage: String,
        tag: String,
    },
    /// Redeploy the previous succeeded tag of a stage.
    Rollback { project: String, stage: String },
    /// The routes the proxy serves: listen address, project/stage, the
    /// container and image it points to, requests in flight. Read from the
    /// proxy's socket, so it works with the daemon stopped.
    Routes,
    /// Run the route proxy (systemd: wharf-proxy.service; `wharf serve`
    /// starts one itself unless `[proxy] manage = false`).
    Proxy {
        /// The state dir whose routes it serves (default: the config's).
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
}

/// `wharf check`: print what is wrong, file:line first. Returns whether
/// everything is valid.
///
/// # Errors
/// The daemon config itself cannot be loaded.
pub fn check(config: &DaemonConfig) -> anyhow::Result<bool> {
    let mut ok = true;
    let settings = Secrets::path(&config.state_dir);
    if settings.exists() {
        if let Err(e) = Secrets::load(&config.state_dir) {
            println!("error: {e}");
            ok = false;
        }
    }
    let registry = plugins::registry(&config.hosts);
    if !config.projects_dir.is_dir() {
        println!(
            "warning: projects_dir {} does not exist yet (wharf creates it on start)",
            config.projects_dir.display()
        );
    }
    let catalog = Catalog::load_dir(&config.projects_dir, &registry);
    for error in catalog.errors() {
        println!("error: {error}");
        ok = false;
    }
    check_engines(config, &catalog, &registry);
    if config.auto_create.enabled {
        match registry.get(&config.auto_create.deployer) {
            None => println!(
                "warning: auto_create.deployer '{}' is not available in this build (available: {}); unknown images will not create projects",
                config.auto_create.deployer,
                registry.names().join(", ")
            ),
            Some(plugin) if plugin.as_drafter().is_none() => println!(
                "warning: auto_create.deployer '{}' cannot draft a project from an image; unknown images will not create projects",
                config.auto_create.deployer
            ),
            Some(_) => {}
        }
    }
    println!(
        "{}: {} project(s) loaded, {} with errors",
        if ok { "ok" } else { "failed" },
        catalog.len(),
        catalog.errors().count()
    );
    Ok(ok)
}

/// An engine some plugins deploy to, as `wharf check` asks it.
struct EngineToCheck {
    id: String,
    /// Asked even when no stage uses it (see [`wharf_plugin_api::EngineRef`]).
    always: bool,
    /// The plugins that named it, in registry order.
    plugins: Vec<&'static str>,
}

/// Ask every engine the plugins name whether it answers: each once (plugins
/// sharing an engine name it alike), and one a plugin needs only for its
/// stages only when some stage or auto-create uses that plugin.
/// Unreachable is a warning, not an error: the engine may start after
/// wharf, and deployments to it fail (and are logged) until it does.
fn check_engines(config: &DaemonConfig, catalog: &Catalog, registry: &Registry) {
    let mut engines: Vec<EngineToCheck> = Vec::new();
    for name in registry.names() {
        let Some(plugin) = registry.get(name) else {
            continue;
        };
        for engine in plugin.engines() {
            match engines.iter_mut().find(|e| e.id == engine.id) {
                Some(known) => {
                    known.always |= engine.always;
                    known.plugins.push(name);
                }
                None => engines.push(EngineToCheck {
                    id: engine.id,
                    always: engine.always,
                    plugins: vec![name],
                }),
            }
        }
    }
    if engines.is_empty() {
        return;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            println!("warning: cannot check the engines: {e}");
            return;
        }
    };
    for engine in engines {
        let users: Vec<String> = catalog
            .projects()
            .flat_map(|p| p.stages.values().map(move |s| (p, s)))
            .filter(|(_, s)| engine.plugins.contains(&s.deployer.as_str()))
            .map(|(p, s)| format!("{}/{}", p.name, s.name))
            .collect();
        let auto_create = config.auto_create.enabled
            && engine
                .plugins
                .contains(&config.auto_create.deployer.as_str());
        if !engine.always && users.is_empty() && !auto_create {
            continue;
        }
        let report = engine.plugins.iter().find_map(|name| {
            let plugin = registry.get(name)?;
            runtime.block_on(plugin.check_engine(&engine.id))
        });
        match report {
            None => {}
            Some(EngineReport::Answers(what)) => println!("ok: {what}"),
            Some(EngineReport::Silent(why)) => {
                let needs = if engine.always {
                    "deployments to it".to_string()
                } else {
                    let mut needs = Vec::new();
                    if !users.is_empty() {
                        needs.push(format!("stage(s) {}", users.join(", ")));
                    }
                    if auto_create {
                        needs.push("auto_create (image inspection)".to_string());
                    }
                    needs.join(" and ")
                };
                println!("warning: {why}; {needs} will fail until it answers");
            }
        }
    }
}

/// `wharf url`.
///
/// # Errors
/// The settings file cannot be read or created.
pub fn url(config: &DaemonConfig) -> anyhow::Result<()> {
    let secrets = Secrets::load_or_create(&config.state_dir)?;
    println!(
        "{}",
        config.webhook_url(config.listen, &secrets.webhook_secret)
    );
    Ok(())
}

/// `wharf rotate`: rewrite settings.toml with a new webhook secret. A
/// running daemon follows the file.
///
/// # Errors
/// The settings file cannot be read or written.
pub fn rotate(config: &DaemonConfig) -> anyhow::Result<()> {
    let secrets = Secrets::load_or_create(&config.state_dir)?;
    let rotated = secrets.rotated();
    rotated.save(&config.state_dir)?;
    println!(
        "{}",
        config.webhook_url(config.listen, &rotated.webhook_secret)
    );
    Ok(())
}

/// `wharf routes`: one line per route, from the proxy itself.
///
/// # Errors
/// No proxy answers for the state dir.
pub async fn routes(config: &DaemonConfig) -> anyhow::Result<()> {
    let client = crate::proxy::client::ProxyClient::new(&config.state_dir);
    let routes = client.list().await.map_err(|e| anyhow::anyhow!(e))?;
    if routes.is_empty() {
        println!("no routes");
    }
    for route in routes {
        let draining: Vec<String> = route
            .draining
            .iter()
            .map(|d| format!("{} ({} in flight)", d.address, d.in_flight))
            .collect();
        println!(
            "{}  {}/{}  {}  {}  -> {}  in flight {}{}",
            route.spec.listen,
            route.spec.project,
            route.spec.stage,
            route.spec.upstream.container,
            route.spec.upstream.image,
            route.spec.upstream.address,
            route.in_flight,
            if draining.is_empty() {
                String::new()
            } else {
                format!("  draining {}", draining.join(", "))
            }
        );
    }
    Ok(())
}

/// A small client for the admin API.
struct AdminClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl AdminClient {
    fn new(config: &DaemonConfig, server: Option<&str>) -> anyhow::Result<AdminClient> {
        let secrets = Secrets::load(&config.state_dir).context(
            "cannot read the admin token (run this as a user who can read wharf's state_dir)",
        )?;
        Ok(AdminClient {
            base: server
                .map(|s| s.trim_end_matches('/').to_string())
                .unwrap_or_else(|| config.base_url_for_local(config.listen)),
            token: secrets.admin_token,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()?,
        })
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach wharf at {}", self.base))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let why = body
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no details");
            bail!("wharf answered {status}: {why}");
        }
        Ok(body)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(&body))
            .await
    }
}

/// Run one of the admin-API commands.
///
/// # Errors
/// The daemon cannot be reached or refused the request.
pub async fn admin(
    config: &DaemonConfig,
    server: Option<&str>,
    command: Command,
) -> anyhow::Result<()> {
    let client = AdminClient::new(config, server)?;
    match command {
        Command::Status => print_status(&client.get("/api/admin/projects").await?),
        Command::Deployments {
            project,
            stage,
            status,
            limit,
        } => {
            let mut query = vec![("limit", limit.to_string())];
            query.extend(project.map(|p| ("project", p)));
            query.extend(stage.map(|s| ("stage", s)));
            query.extend(status.map(|s| ("status", s)));
            let url = reqwest::Url::parse_with_params(
                &format!("{}/api/admin/deployments", client.base),
                &query,
            )?;
            let body = client.send(client.http.get(url)).await?;
            for deployment in body
                .get("deployments")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                print_deployment_line(deployment);
            }
        }
        Command::Logs { id } => {
            let body = client
                .get(&format!("/api/admin/deployments/{}", encode(&id)))
                .await?;
            print_deployment_line(&body);
            for line in body
                .get("log")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                println!(
                    "  [{}] {}",
                    line["stream"].as_str().unwrap_or(""),
                    line["text"].as_str().unwrap_or("")
                );
            }
        }
        Command::Approve { id } => print_deployment_line(
            &client
                .post(
                    &format!("/api/admin/deployments/{}/approve", encode(&id)),
                    Value::Null,
                )
                .await?,
        ),
        Command::Reject { id } => print_deployment_line(
            &client
                .post(
                    &format!("/api/admin/deployments/{}/reject", encode(&id)),
                    Value::Null,
                )
                .await?,
        ),
        Command::Deploy {
            project,
            stage,
            tag,
        } => print_deployment_line(
            &client
                .post(
                    "/api/admin/deploy",
                    serde_json::json!({"project": project, "stage": stage, "tag": tag}),
                )
                .await?,
        ),
        Command::Rollback { project, stage } => print_deployment_line(
            &client
                .post(
                    "/api/admin/rollback",
                    serde_json::json!({"project": project, "stage": stage}),
                )
                .await?,
        ),
        Command::Serve
        | Command::Check
        | Command::Url
        | Command::Rotate
        | Command::Routes
        | Command::Proxy { .. } => {
            unreachable!("not an admin command")
        }
    }
    Ok(())
}

fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn print_deployment_line(d: &Value) {
    println!(
        "{}  {}/{}  {}  {}  {}  {}",
        d["id"].as_str().unwrap_or("?"),
        d["project"].as_str().unwrap_or("?"),
        d["stage"].as_str().unwrap_or("?"),
        d["tag"].as_str().unwrap_or("?"),
        d["status"].as_str().unwrap_or("?"),
        d["trigger"].as_str().unwrap_or("?"),
        d["reason"].as_str().unwrap_or("")
    );
}

fn print_status(body: &Value) {
    for project in body["projects"].as_array().into_iter().flatten() {
        println!(
            "{}  {}  ({})",
            project["name"].as_str().unwrap_or("?"),
            project["image"].as_str().unwrap_or("?"),
            project["source"].as_str().unwrap_or("?")
        );
        for stage in project["stages"].as_array().into_iter().flatten() {
            let last = &stage["last_deployment"];
            let last = if last.is_null() {
                "never deployed".to_string()
            } else {
                format!(
                    "{} {} ({})",
                    last["tag"].as_str().unwrap_or("?"),
                    last["status"].as_str().unwrap_or("?"),
                    last["trigger"].as_str().unwrap_or("?")
                )
            };
            let poll = match (stage["poll"].as_str(), stage["poll_error"].as_str()) {
                (Some(every), Some(error)) => format!("  poll every {every}  poll error: {error}"),
                (Some(every), None) => format!("  poll every {every}"),
                _ => String::new(),
            };
            println!(
                "  {}  tags {}  {}  {}  last: {last}{poll}",
                stage["name"].as_str().unwrap_or("?"),
                stage["tags"],
                stage["deployer"].as_str().unwrap_or("?"),
                if stage["auto_deploy"].as_bool().unwrap_or(true) {
                    "auto"
                } else {
                    "approval"
                },
            );
        }
    }
    let errors = body["errors"].as_array().cloned().unwrap_or_default();
    for error in &errors {
        println!(
            "error: {}:{}: {}",
            error["file"].as_str().unwrap_or("?"),
            error["line"],
            error["message"].as_str().unwrap_or("?")
        );
    }
}
