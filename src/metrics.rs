//! Counters for `GET /metrics`, rendered in the Prometheus text format.
//!
//! A handful of counters and one histogram do not justify a metrics
//! framework: plain atomics and one small lock, rendered by hand.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::deploy::status::Status;

/// How a webhook request ended, for `wharf_webhooks_total{result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookResult {
    Accepted,
    Ignored,
    Duplicate,
    NotFound,
    Unauthorized,
    BadRequest,
    TooLarge,
    Unavailable,
    Error,
}

impl WebhookResult {
    const ALL: [WebhookResult; 9] = [
        WebhookResult::Accepted,
        WebhookResult::Ignored,
        WebhookResult::Duplicate,
        WebhookResult::NotFound,
        WebhookResult::Unauthorized,
        WebhookResult::BadRequest,
        WebhookResult::TooLarge,
        WebhookResult::Unavailable,
        WebhookResult::Error,
    ];

    fn as_str(self) -> &'static str {
        match self {
            WebhookResult::Accepted => "accepted",
            WebhookResult::Ignored => "ignored",
            WebhookResult::Duplicate => "duplicate",
            WebhookResult::NotFound => "not_found",
            WebhookResult::Unauthorized => "unauthorized",
            WebhookResult::BadRequest => "bad_request",
            WebhookResult::TooLarge => "too_large",
            WebhookResult::Unavailable => "unavailable",
            WebhookResult::Error => "error",
        }
    }
}

/// Upper bounds of the deployment duration histogram, seconds.
const DURATION_BUCKETS: [f64; 10] = [1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0];

#[derive(Default)]
struct Histogram {
    buckets: [u64; DURATION_BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Upper bounds of the registry request latency histogram, seconds.
const LATENCY_BUCKETS: [f64; 9] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0];

#[derive(Default)]
struct Latency {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
pub struct Metrics {
    webhooks: [AtomicU64; WebhookResult::ALL.len()],
    /// Poll result (`deployed`, `unchanged`, `error`, `rate_limited`) → polls.
    polls: Mutex<BTreeMap<&'static str, u64>>,
    /// Registry call (`tags`, `digest`) → its latency.
    registry: Mutex<BTreeMap<&'static str, Latency>>,
    /// (status, deployer) → deployments that ended so.
    finished: Mutex<BTreeMap<(&'static str, String), u64>>,
    durations: Mutex<BTreeMap<String, Histogram>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn webhook(&self, result: WebhookResult) {
        let index = WebhookResult::ALL
            .iter()
            .position(|r| *r == result)
            .unwrap_or(0);
        if let Some(counter) = self.webhooks.get(index) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn deployment_finished(&self, status: Status, deployer: &str, took: Duration) {
        *self
            .finished
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((status.as_str(), deployer.to_string()))
            .or_default() += 1;
        let seconds = took.as_secs_f64();
        let mut durations = self.durations.lock().unwrap_or_else(|p| p.into_inner());
        let histogram = durations.entry(deployer.to_string()).or_default();
        for (bucket, bound) in histogram.buckets.iter_mut().zip(DURATION_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        histogram.count += 1;
        histogram.sum += seconds;
    }

    /// One poll of one stage ended with `result`.
    pub fn poll(&self, result: &'static str) {
        *self
            .polls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(result)
            .or_default() += 1;
    }

    /// One registry call (`tags`: every page of a listing; `digest`: a
    /// manifest `HEAD`, with its login when the registry asked for one).
    pub fn registry_request(&self, call: &'static str, took: Duration) {
        let seconds = took.as_secs_f64();
        let mut registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        let latency = registry.entry(call).or_default();
        for (bucket, bound) in latency.buckets.iter_mut().zip(LATENCY_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        latency.count += 1;
        latency.sum += seconds;
    }

    fn render_polls(&self, out: &mut String) {
        out.push_str("# HELP wharf_polls_total Registry polls of a stage, by result.\n");
        out.push_str("# TYPE wharf_polls_total counter\n");
        for (result, count) in self.polls.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "wharf_polls_total{{result=\"{result}\"}} {count}");
        }
        out.push_str("# HELP wharf_registry_request_duration_seconds Registry calls made by polling, by call.\n");
        out.push_str("# TYPE wharf_registry_request_duration_seconds histogram\n");
        for (call, latency) in self
            .registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            for (bound, count) in LATENCY_BUCKETS.iter().zip(latency.buckets) {
                let _ = writeln!(
                    out,
                    "wharf_registry_request_duration_seconds_bucket{{call=\"{call}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "wharf_registry_request_duration_seconds_bucket{{call=\"{call}\",le=\"+Inf\"}} {}",
                latency.count
            );
            let _ = writeln!(
                out,
                "wharf_registry_request_duration_seconds_sum{{call=\"{call}\"}} {}",
                latency.sum
            );
            let _ = writeln!(
                out,
                "wharf_registry_request_duration_seconds_count{{call=\"{call}\"}} {}",
                latency.count
            );
        }
    }

    /// The text exposition; `current` is the number of deployments now in
    /// each status, read from the store at scrape time.
    pub fn render(&self, current: &[(Status, i64)]) -> String {
        let mut out = String::with_capacity(2048);
        out.push_str("# HELP wharf_webhooks_total Webhook requests by result.\n");
        out.push_str("# TYPE wharf_webhooks_total counter\n");
        for (result, count) in WebhookResult::ALL.iter().zip(&self.webhooks) {
            let _ = writeln!(
                out,
                "wharf_webhooks_total{{result=\"{}\"}} {}",
                result.as_str(),
                count.load(Ordering::Relaxed)
            );
        }
        out.push_str(
            "# HELP wharf_deployments_finished_total Deployments that ended, by status and deployer.\n",
        );
        out.push_str("# TYPE wharf_deployments_finished_total counter\n");
        for ((status, deployer), count) in self
            .finished
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "wharf_deployments_finished_total{{status=\"{status}\",deployer=\"{}\"}} {count}",
                escape(deployer)
            );
        }
        out.push_str("# HELP wharf_deployments Deployments now in each status (queue depth: status=\"queued\").\n");
        out.push_str("# TYPE wharf_deployments gauge\n");
        for status in Status::ALL {
            let count = current
                .iter()
                .find(|(s, _)| *s == status)
                .map(|(_, c)| *c)
                .unwrap_or(0);
            let _ = writeln!(
                out,
                "wharf_deployments{{status=\"{}\"}} {count}",
                status.as_str()
            );
        }
        out.push_str("# HELP wharf_deployment_duration_seconds Time from start to end of a deployment run.\n");
        out.push_str("# TYPE wharf_deployment_duration_seconds histogram\n");
        for (deployer, histogram) in self
            .durations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let deployer = escape(deployer);
            for (bound, count) in DURATION_BUCKETS.iter().zip(histogram.buckets) {
                let _ = writeln!(
                    out,
                    "wharf_deployment_duration_seconds_bucket{{deployer=\"{deployer}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "wharf_deployment_duration_seconds_bucket{{deployer=\"{deployer}\",le=\"+Inf\"}} {}",
                histogram.count
            );
            let _ = writeln!(
                out,
                "wharf_deployment_duration_seconds_sum{{deployer=\"{deployer}\"}} {}",
                histogram.sum
            );
            let _ = writeln!(
                out,
                "wharf_deployment_duration_seconds_count{{deployer=\"{deployer}\"}} {}",
                histogram.count
            );
        }
        self.render_polls(&mut out);
        out
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The proxy's counters, appended to `/metrics`: routed requests by route
/// and status, switches, and requests in flight by route.
pub fn render_routes(out: &mut String, routes: &[wharf_plugin_api::routes::RouteState]) {
    out.push_str("# HELP wharf_routed_requests_total Requests (or TCP connections) through a route, by status, since the proxy started.\n");
    out.push_str("# TYPE wharf_routed_requests_total counter\n");
    for route in routes {
        for (status, count) in &route.requests {
            let _ = writeln!(
                out,
                "wharf_routed_requests_total{{route=\"{}\",status=\"{}\"}} {count}",
                route.spec.listen,
                escape(status)
            );
        }
    }
    out.push_str(
        "# HELP wharf_route_switches_total Upstream changes of a route since the proxy started.\n",
    );
    out.push_str("# TYPE wharf_route_switches_total counter\n");
    for route in routes {
        let _ = writeln!(
            out,
            "wharf_route_switches_total{{route=\"{}\"}} {}",
            route.spec.listen, route.switches
        );
    }
    out.push_str("# HELP wharf_route_in_flight Requests in flight through a route, old upstreams included.\n");
    out.push_str("# TYPE wharf_route_in_flight gauge\n");
    for route in routes {
        let draining: u64 = route.draining.iter().map(|d| d.in_flight).sum();
        let _ = writeln!(
            out,
            "wharf_route_in_flight{{route=\"{}\"}} {}",
            route.spec.listen,
            route.in_flight + draining
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let metrics = Metrics::default();
        metrics.webhook(WebhookResult::Accepted);
        metrics.webhook(WebhookResult::Accepted);
        metrics.webhook(WebhookResult::NotFound);
        metrics.deployment_finished(Status::Succeeded, "script", Duration::from_millis(1500));
        let text = metrics.render(&[(Status::Queued, 3)]);
        assert!(text.contains("wharf_webhooks_total{result=\"accepted\"} 2\n"));
        assert!(text.contains("wharf_webhooks_total{result=\"not_found\"} 1\n"));
        assert!(text.contains(
            "wharf_deployments_finished_total{status=\"succeeded\",deployer=\"script\"} 1\n"
        ));
        assert!(text.contains("wharf_deployments{status=\"queued\"} 3\n"));
        assert!(text.contains(
            "wharf_deployment_duration_seconds_bucket{deployer=\"script\",le=\"1\"} 0\n"
        ));
        assert!(text.contains(
            "wharf_deployment_duration_seconds_bucket{deployer=\"script\",le=\"2\"} 1\n"
        ));
        assert!(text.contains("wharf_deployment_duration_seconds_count{deployer=\"script\"} 1\n"));
    }
}
