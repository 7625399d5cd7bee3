//! The dashboard's HTML, rendered on the server from plain data.
//!
//! Every value that comes from a project file, a push or a plugin's output
//! goes through [`esc`]. No inline script or style (the CSP forbids both):
//! behaviour lives in `app.js`, looks in `app.css`, and the SVG uses
//! presentation attributes only. Statuses are always written out as words;
//! colour only repeats them.

use std::fmt::Write as _;

use crate::config::project::ProjectError;
use crate::deploy::store::{Deployment, LogEntry, Status};

/// HTML-escape text for element content and quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encode a query or path value.
pub fn url_part(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// "42 s ago", "3 min ago", "5 h ago", "2 d ago".
pub fn age(then_ms: i64, now_ms: i64) -> String {
    let s = (now_ms - then_ms).max(0) / 1000;
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

/// How long a deployment ran, if it started and ended.
pub fn duration_ms(d: &Deployment) -> Option<i64> {
    Some((d.finished_ms? - d.started_ms?).max(0))
}

fn seconds(ms: i64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// A status as a word in a coloured badge.
pub fn badge(status: Status) -> String {
    let s = status.as_str();
    format!(
        "<span class=\"status status-{s}\">{}</span>",
        s.replace('_', " ")
    )
}

/// What the layout needs about the signed-in viewer.
pub struct Chrome<'a> {
    pub title: &'a str,
    /// The session's CSRF token, for the sign-out form.
    pub csrf: &'a str,
    /// `data-` attributes of `<main>` (e.g. ` data-running="1"`).
    pub main_attrs: &'a str,
}

/// The page around `body` for a signed-in viewer.
pub fn layout(chrome: &Chrome<'_>, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} · wharf</title><link rel=\"stylesheet\" href=\"/ui/assets/app.css\">\
<script src=\"/ui/assets/app.js\" defer></script></head><body>\
<header><a class=\"brand\" href=\"/\">wharf</a><nav><a href=\"/\">Projects</a> \
<a href=\"/ui/deployments\">Deployments</a></nav>\
<span id=\"live\" class=\"live\" role=\"status\">not live</span>\
<form method=\"post\" action=\"/ui/logout\">{csrf}<button type=\"submit\">Sign out</button></form>\
</header><main id=\"main\"{attrs}>{body}</main></body></html>\n",
        title = esc(chrome.title),
        csrf = csrf_field(chrome.csrf),
        attrs = chrome.main_attrs,
    )
}

/// The hidden CSRF field every state-changing form carries.
pub fn csrf_field(csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(csrf)
    )
}

/// The sign-in page, with an optional message (wrong token, too many tries).
pub fn sign_in(message: Option<&str>) -> String {
    let message = message
        .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(m)))
        .unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>Sign in · wharf</title><link rel=\"stylesheet\" href=\"/ui/assets/app.css\"></head>\
<body><main id=\"main\" class=\"narrow\"><h1>wharf</h1>{message}\
<form method=\"post\" action=\"/ui/login\" class=\"card\">\
<label for=\"token\">Admin token</label>\
<input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"off\" required autofocus>\
<p class=\"hint\">It is <code>admin_token</code> in <code>settings.toml</code> of the state \
directory. It is checked once; the browser keeps only a session cookie.</p>\
<button type=\"submit\">Sign in</button></form></main></body></html>\n"
    )
}

/// A small page saying what went wrong, with a way back.
pub fn problem(message: &str, signed_in: bool) -> String {
    let back = if signed_in {
        "<p><a href=\"/\">Back to the projects</a></p>"
    } else {
        "<p><a href=\"/\">Sign in</a></p>"
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>wharf</title><link rel=\"stylesheet\" href=\"/ui/assets/app.css\"></head>\
<body><main id=\"main\" class=\"narrow\"><h1>wharf</h1>\
<p class=\"error\" role=\"alert\">{}</p>{back}</main></body></html>\n",
        esc(message)
    )
}

/// One stage as the overview shows it.
pub struct StageRow<'a> {
    pub name: &'a str,
    pub tags: &'a [String],
    pub auto_deploy: bool,
    pub deployer: &'a str,
    /// The stable address of the stage's route, when it has one.
    pub route: Option<&'a str>,
    /// Newest first.
    pub recent: Vec<Deployment>,
    /// The `poll` interval (`5m`) and the last poll's error, when the
    /// stage polls its registry.
    pub poll: Option<(String, Option<String>)>,
}

/// One project as the overview shows it.
pub struct ProjectCard<'a> {
    pub name: &'a str,
    pub image: &'a str,
    pub source: String,
    pub stages: Vec<StageRow<'a>>,
}

/// The overview: config errors, pending approvals, projects and stages.
pub fn overview(
    projects: &[ProjectCard<'_>],
    errors: &[ProjectError],
    pending: &[Deployment],
    csrf: &str,
    now: i64,
) -> String {
    let mut out = String::from("<h1>Projects</h1>");
    if !errors.is_empty() {
        out.push_str("<section class=\"card errors\"><h2>Config errors</h2><ul>");
        for e in errors {
            let _ = write!(
                out,
                "<li><code>{}:{}</code> {}</li>",
                esc(&e.file.display().to_string()),
                e.line,
                esc(&e.message)
            );
        }
        out.push_str("</ul></section>");
    }
    if !pending.is_empty() {
        out.push_str("<section class=\"card\" id=\"pending\"><h2>Awaiting approval</h2>");
        out.push_str(&deployment_table(pending, csrf, now));
        out.push_str("</section>");
    }
    if projects.is_empty() {
        out.push_str("<p>No projects are loaded. Add a file to <code>projects_dir</code>.</p>");
    }
    for p in projects {
        let _ = write!(
            out,
            "<section class=\"card project\" id=\"project-{id}\"><h2>{name}</h2>\
<p class=\"meta\"><code>{image}</code> · {source}</p>",
            id = esc(p.name),
            name = esc(p.name),
            image = esc(p.image),
            source = esc(&p.source),
        );
        for s in &p.stages {
            out.push_str(&stage_block(p.name, s, csrf, now));
        }
        out.push_str("</section>");
    }
    let _ = write!(
        out,
        "<section class=\"card\"><h2>Webhook URL</h2><p>The secret URL CI jobs call. \
Rotating it makes the old one answer 404 at once.</p>\
<p><a class=\"button\" href=\"/ui/rotate\">Rotate webhook URL…</a></p></section>"
    );
    out
}

fn stage_block(project: &str, s: &StageRow<'_>, csrf: &str, now: i64) -> String {
    let last = match s.recent.first() {
        Some(d) => format!(
            "{} <a href=\"/ui/deployments/{}\">{}</a> · {}",
            badge(d.status),
            url_part(&d.id),
            esc(&d.tag),
            age(d.finished_ms.or(d.started_ms).unwrap_or(d.created_ms), now)
        ),
        None => "no deployment yet".to_string(),
    };
    let tags = s
        .tags
        .iter()
        .map(|t| format!("<code>{}</code>", esc(t)))
        .collect::<Vec<_>>()
        .join(" ");
    let (p, st) = (esc(project), esc(s.name));
    format!(
        "<div class=\"stage\" id=\"stage-{p}-{st}\"><h3>{st}</h3><dl>\
<dt>Tags</dt><dd>{tags}</dd><dt>Deployer</dt><dd>{deployer}</dd>{route}\
<dt>Deploys</dt><dd>{auto}</dd>{poll}<dt>Last</dt><dd class=\"last\">{last}</dd></dl>\
{svg}<div class=\"actions\">\
<form method=\"post\" action=\"/ui/deploy\" class=\"inline\">{csrf}\
<input type=\"hidden\" name=\"project\" value=\"{p}\"><input type=\"hidden\" name=\"stage\" value=\"{st}\">\
<label for=\"tag-{p}-{st}\">Tag</label>\
<input id=\"tag-{p}-{st}\" name=\"tag\" required maxlength=\"128\" size=\"14\">\
<button type=\"submit\">Deploy</button></form>\
<form method=\"post\" action=\"/ui/rollback\" class=\"inline\">{csrf}\
<input type=\"hidden\" name=\"project\" value=\"{p}\"><input type=\"hidden\" name=\"stage\" value=\"{st}\">\
<button type=\"submit\">Rollback</button></form></div></div>",
        deployer = esc(s.deployer),
        route = s
            .route
            .map(|listen| format!("<dt>Route</dt><dd><code>{}</code></dd>", esc(listen)))
            .unwrap_or_default(),
        auto = if s.auto_deploy {
            "on every matching push"
        } else {
            "after approval"
        },
        poll = match &s.poll {
            Some((every, None)) => format!("<dt>Polls</dt><dd>every {}</dd>", esc(every)),
            Some((every, Some(error))) => format!(
                "<dt>Polls</dt><dd>every {} · <span class=\"poll-error\">{}</span></dd>",
                esc(every),
                esc(error)
            ),
            None => String::new(),
        },
        svg = history_svg(&s.recent),
        csrf = csrf_field(csrf),
    )
}

/// A bar per recent deployment, oldest on the left: height is the duration
/// (relative to the longest), colour and a `<title>` the outcome. The
/// `aria-label` sums it up in words.
pub fn history_svg(recent: &[Deployment]) -> String {
    if recent.is_empty() {
        return String::new();
    }
    let longest = recent
        .iter()
        .filter_map(duration_ms)
        .max()
        .unwrap_or(0)
        .max(1);
    let (width, height, bar) = (20 * recent.len() as i64, 40i64, 16i64);
    let mut counts: Vec<(Status, usize)> = Vec::new();
    let mut bars = String::new();
    for (i, d) in recent.iter().rev().enumerate() {
        match counts.iter_mut().find(|(s, _)| *s == d.status) {
            Some((_, n)) => *n += 1,
            None => counts.push((d.status, 1)),
        }
        let h = duration_ms(d).map_or(4, |ms| (ms * (height - 4) / longest).max(4));
        let took = duration_ms(d).map(seconds).unwrap_or_else(|| "-".into());
        let _ = write!(
            bars,
            "<rect class=\"bar bar-{s}\" x=\"{x}\" y=\"{y}\" width=\"{bar}\" height=\"{h}\" fill=\"{fill}\">\
<title>{tag}: {s}, {took}</title></rect>",
            s = d.status.as_str(),
            x = i as i64 * 20 + 2,
            y = height - h,
            fill = colour(d.status),
            tag = esc(&d.tag),
        );
    }
    let summary = counts
        .iter()
        .map(|(s, n)| format!("{n} {}", s.as_str().replace('_', " ")))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "<figure class=\"history\"><svg role=\"img\" aria-label=\"last {n} deployments: {summary}\" \
width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\">{bars}</svg>\
<figcaption>last {n}: {summary} (height: duration)</figcaption></figure>",
        n = recent.len(),
    )
}

fn colour(status: Status) -> &'static str {
    match status {
        Status::Succeeded => "#2e7d32",
        Status::Failed | Status::Interrupted => "#c62828",
        Status::Running | Status::Queued => "#1565c0",
        Status::AwaitingApproval => "#ef6c00",
        Status::Rejected | Status::Superseded => "#757575",
    }
}

/// A table of deployments, with `Approve`/`Reject` on pending ones.
pub fn deployment_table(deployments: &[Deployment], csrf: &str, now: i64) -> String {
    let mut out = String::from(
        "<div class=\"scroll\"><table><thead><tr><th>Deployment</th><th>Project / stage</th>\
<th>Tag</th><th>Status</th><th>Trigger</th><th>Created</th><th>Took</th></tr></thead><tbody>",
    );
    for d in deployments {
        let actions = if d.status == Status::AwaitingApproval {
            decision_forms(&d.id, csrf)
        } else {
            String::new()
        };
        let _ = write!(
            out,
            "<tr id=\"dep-{id}\"><td><a href=\"/ui/deployments/{url}\">{short}</a></td>\
<td>{project} / {stage}</td><td><code>{tag}</code></td><td>{badge}{actions}</td>\
<td>{trigger}</td><td>{created}</td><td>{took}</td></tr>",
            id = esc(&d.id),
            url = url_part(&d.id),
            short = esc(d.id.get(..8).unwrap_or(&d.id)),
            project = esc(&d.project),
            stage = esc(&d.stage),
            tag = esc(&d.tag),
            badge = badge(d.status),
            trigger = esc(&d.trigger),
            created = age(d.created_ms, now),
            took = duration_ms(d).map(seconds).unwrap_or_default(),
        );
    }
    out.push_str("</tbody></table></div>");
    out
}

fn decision_forms(id: &str, csrf: &str) -> String {
    let (url, csrf) = (url_part(id), csrf_field(csrf));
    format!(
        "<form method=\"post\" action=\"/ui/deployments/{url}/approve\" class=\"inline\">{csrf}\
<button type=\"submit\">Approve</button></form>\
<form method=\"post\" action=\"/ui/deployments/{url}/reject\" class=\"inline\">{csrf}\
<button type=\"submit\" class=\"secondary\">Reject</button></form>"
    )
}

/// The filters of the deployments list, as given.
#[derive(Default)]
pub struct Filters {
    pub project: String,
    pub stage: String,
    pub status: String,
}

/// The deployments list: filters, a page of rows, a link to older ones.
pub fn deployments(
    filters: &Filters,
    page: &[Deployment],
    older: Option<&str>,
    csrf: &str,
    now: i64,
) -> String {
    let mut options = String::from("<option value=\"\">any</option>");
    for s in Status::ALL {
        let _ = write!(
            options,
            "<option value=\"{v}\"{sel}>{label}</option>",
            v = s.as_str(),
            sel = if filters.status == s.as_str() {
                " selected"
            } else {
                ""
            },
            label = s.as_str().replace('_', " "),
        );
    }
    let mut out = format!(
        "<h1>Deployments</h1><form method=\"get\" action=\"/ui/deployments\" class=\"filters card\">\
<label>Project <input name=\"project\" value=\"{p}\"></label>\
<label>Stage <input name=\"stage\" value=\"{s}\"></label>\
<label>Status <select name=\"status\">{options}</select></label>\
<button type=\"submit\">Filter</button></form>",
        p = esc(&filters.project),
        s = esc(&filters.stage),
    );
    if page.is_empty() {
        out.push_str("<p>No deployments match.</p>");
    } else {
        out.push_str(&deployment_table(page, csrf, now));
    }
    if let Some(before) = older {
        let _ = write!(
            out,
            "<p><a href=\"/ui/deployments?project={}&amp;stage={}&amp;status={}&amp;before={}\">Older deployments</a></p>",
            url_part(&filters.project),
            url_part(&filters.stage),
            url_part(&filters.status),
            url_part(before)
        );
    }
    out
}

/// One deployment with its log.
pub fn deployment(d: &Deployment, log: &[LogEntry], csrf: &str, now: i64) -> String {
    let mut out = format!(
        "<h1>Deployment <code>{id}</code></h1><section class=\"card\"><dl>\
<dt>Project / stage</dt><dd>{project} / {stage}</dd><dt>Image</dt><dd><code>{repo}:{tag}</code>{digest}</dd>\
<dt>Status</dt><dd id=\"status\">{badge}</dd><dt>Trigger</dt><dd>{trigger}</dd>\
<dt>Deployer</dt><dd>{deployer}</dd><dt>Created</dt><dd>{created}</dd><dt>Took</dt><dd>{took}</dd>\
<dt>Outcome</dt><dd>{reason}</dd></dl>",
        id = esc(&d.id),
        project = esc(&d.project),
        stage = esc(&d.stage),
        repo = esc(&d.repository),
        tag = esc(&d.tag),
        digest = d
            .digest
            .as_deref()
            .map(|g| format!(" <code>@{}</code>", esc(g)))
            .unwrap_or_default(),
        badge = badge(d.status),
        trigger = esc(&d.trigger),
        deployer = esc(&d.deployer),
        created = age(d.created_ms, now),
        took = duration_ms(d).map(seconds).unwrap_or_else(|| "-".into()),
        reason = esc(d.reason.as_deref().unwrap_or("-")),
    );
    if d.status == Status::AwaitingApproval {
        out.push_str("<div class=\"actions\">");
        out.push_str(&decision_forms(&d.id, csrf));
        out.push_str("</div>");
    }
    out.push_str("</section><section class=\"card\"><h2>Log</h2><pre id=\"log\">");
    if log.is_empty() {
        out.push_str("(no log lines yet)");
    }
    for line in log {
        let secs = (line.at_ms - d.created_ms).max(0) as f64 / 1000.0;
        let _ = writeln!(
            out,
            "<span class=\"t\">+{secs:.1}s</span> <span class=\"s-{s}\">{s}</span> {}",
            esc(&line.text),
            s = esc(&line.stream),
        );
    }
    out.push_str("</pre></section>");
    out
}

/// The confirmation step before a rotation.
pub fn rotate_confirm(csrf: &str) -> String {
    format!(
        "<h1>Rotate the webhook URL</h1><section class=\"card\"><p>A new secret is made and saved; \
<strong>the current URL stops working at once</strong> (it answers 404), so every CI job and \
registry that calls it must get the new one. The new URL is shown once.</p>\
<form method=\"post\" action=\"/ui/rotate\">{}<button type=\"submit\" class=\"danger\">Rotate webhook URL</button> \
<a href=\"/\">Cancel</a></form></section>",
        csrf_field(csrf)
    )
}

/// The new URL, shown this once (the response is not cached).
pub fn rotated(url: &str) -> String {
    format!(
        "<h1>New webhook URL</h1><section class=\"card\"><p>Copy it now: it is not shown again \
(<code>wharf url</code> on the server prints it).</p><p><code class=\"secret\" id=\"new-url\">{}</code></p>\
<p><a href=\"/\">Back to the projects</a></p></section>",
        esc(url)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(status: Status, started: Option<i64>, finished: Option<i64>) -> Deployment {
        Deployment {
            seq: 1,
            id: "0123456789abcdef".into(),
            project: "web<script>".into(),
            stage: "prod".into(),
            repository: "localhost:5000/acme/web".into(),
            tag: "v1\"><b>".into(),
            digest: None,
            deployer: "script".into(),
            status,
            trigger: "webhook".into(),
            reason: None,
            created_ms: 0,
            started_ms: started,
            finished_ms: finished,
        }
    }

    #[test]
    fn values_from_pushes_are_escaped() {
        let d = deployment(Status::Failed, Some(0), Some(1500));
        let html = deployment_table(std::slice::from_ref(&d), "c", 2000);
        assert!(
            !html.contains("<script>") && !html.contains("\"><b>"),
            "{html}"
        );
        assert!(html.contains("web&lt;script&gt;"));
        assert!(history_svg(&[d]).contains("v1&quot;&gt;&lt;b&gt;: failed, 1.5 s"));
    }

    #[test]
    fn statuses_are_words_and_pending_ones_get_buttons() {
        let pending = deployment(Status::AwaitingApproval, None, None);
        let html = deployment_table(&[pending], "tok", 0);
        assert!(html.contains(">awaiting approval</span>"));
        assert!(html.contains(">Approve</button>") && html.contains(">Reject</button>"));
        assert!(html.contains("name=\"csrf\" value=\"tok\""));
    }

    #[test]
    fn history_summarises_outcomes_in_words() {
        let recent = [
            deployment(Status::Succeeded, Some(0), Some(2000)),
            deployment(Status::Failed, Some(0), Some(1000)),
            deployment(Status::Succeeded, Some(0), Some(4000)),
        ];
        let svg = history_svg(&recent);
        assert!(svg.contains("aria-label=\"last 3 deployments: 2 succeeded, 1 failed\""));
        assert_eq!(svg.matches("<rect").count(), 3);
    }

    #[test]
    fn a_routed_stage_shows_its_stable_address() {
        let tags = ["v*".to_string()];
        let row = |route| StageRow {
            name: "prod",
            tags: &tags,
            auto_deploy: true,
            deployer: "docker",
            route,
            recent: Vec::new(),
            poll: None,
        };
        let routed = stage_block("web", &row(Some("127.0.0.1:8080")), "c", 0);
        assert!(
            routed.contains("<dt>Route</dt><dd><code>127.0.0.1:8080</code></dd>"),
            "{routed}"
        );
        assert!(!stage_block("web", &row(None), "c", 0).contains("Route"));
    }

    #[test]
    fn a_polled_stage_shows_its_interval_and_error_escaped() {
        let tags = ["v*".to_string()];
        let row = |poll| StageRow {
            name: "prod",
            tags: &tags,
            auto_deploy: true,
            deployer: "script",
            route: None,
            recent: Vec::new(),
            poll,
        };
        let quiet = stage_block("web", &row(None), "c", 0);
        assert!(!quiet.contains("Polls"), "{quiet}");
        let fine = stage_block("web", &row(Some(("5m".into(), None))), "c", 0);
        assert!(fine.contains("<dt>Polls</dt><dd>every 5m</dd>"), "{fine}");
        let failing = stage_block(
            "web",
            &row(Some(("5m".into(), Some("registry <x> is down".into())))),
            "c",
            0,
        );
        assert!(failing.contains("registry &lt;x&gt; is down"), "{failing}");
    }

    #[test]
    fn ages_and_url_parts() {
        assert_eq!(age(0, 59_000), "59 s ago");
        assert_eq!(age(0, 7_200_000), "2 h ago");
        assert_eq!(url_part("a b/c"), "a%20b%2Fc");
    }
}
