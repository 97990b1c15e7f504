//! Prometheus metrics: one `Metrics` struct registered on an explicit registry.
//! Labels are bounded enums (outcome, deny reason); never a token or identity id.

use crate::store::metered::StoreMetrics;
use crate::store::redis::CacheMetrics;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// How a request ended, as counted in `tokengate_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Outcome {
    /// Ended before any filter said what it was (a malformed request Pingora refused).
    #[default]
    Other,
    Denied,
    BadRequest,
    Management,
    Public,
    Forwarded,
    /// Allowed in forward-auth mode: answered, not forwarded.
    Allowed,
    StoreError,
    UpstreamError,
}

impl Outcome {
    const ALL: [Outcome; 9] = [
        Outcome::Other,
        Outcome::Denied,
        Outcome::BadRequest,
        Outcome::Management,
        Outcome::Public,
        Outcome::Forwarded,
        Outcome::Allowed,
        Outcome::StoreError,
        Outcome::UpstreamError,
    ];

    /// The `outcome` label.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Other => "other",
            Outcome::Denied => "denied",
            Outcome::BadRequest => "bad_request",
            Outcome::Management => "management",
            Outcome::Public => "public",
            Outcome::Forwarded => "forwarded",
            Outcome::Allowed => "allowed",
            Outcome::StoreError => "store_error",
            Outcome::UpstreamError => "upstream_error",
        }
    }
}

pub struct Metrics {
    /// Requests by outcome (`Outcome::label`).
    pub requests: IntCounterVec,
    /// One handle per `Outcome`, in `Outcome::ALL` order, resolved at start:
    /// `with_label_values` hashes the label and takes a lock on every call,
    /// and every request is counted.
    by_outcome: Vec<IntCounter>,
    /// Refusals by `Deny::code()`.
    pub denied: IntCounterVec,
    pub store_errors: IntCounter,
    pub upstream_errors: IntCounter,
    /// Upstream answers by status class (1xx to 5xx).
    pub upstream_responses: IntCounterVec,
    /// One handle per class, `1xx` first, resolved at start.
    by_class: Vec<IntCounter>,
    /// From sending the request upstream to its answer's header.
    pub upstream_seconds: Histogram,
    /// Management API calls by route, method and status class.
    pub management: IntCounterVec,
    /// Time spent in the store's check-and-consume.
    pub auth_seconds: Histogram,
    /// Client connections open on the proxy listeners.
    pub open_connections: IntGauge,
    /// Client connections refused past `server.max_connections`.
    pub connections_refused: IntCounter,
    /// The Redis store's near cache.
    pub cache: CacheMetrics,
    /// Every store call, by operation (`store/metered.rs`).
    pub store: StoreMetrics,
    /// The access log's and the audit log's losses.
    pub access_log: RecordLogMetrics,
    pub audit_log: RecordLogMetrics,
    /// Client addresses locked out of the management API (`lockout.rs`).
    pub lockouts: IntCounter,
    /// Configuration reloads that took effect, and those refused.
    pub reloads_ok: IntCounter,
    pub reloads_failed: IntCounter,
}

/// One record log's counters, under its `log` label.
#[derive(Clone)]
pub struct RecordLogMetrics {
    /// Records dropped because the writer fell behind.
    pub dropped: IntCounter,
    /// Records that could not be written.
    pub write_errors: IntCounter,
}

impl RecordLogMetrics {
    /// Counters on no registry, for embedding and tests.
    pub fn unregistered() -> RecordLogMetrics {
        let counter = || IntCounter::new("unregistered", "unregistered").expect("static name");
        RecordLogMetrics {
            dropped: counter(),
            write_errors: counter(),
        }
    }
}

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Metrics> {
        let requests = IntCounterVec::new(
            Opts::new("tokengate_requests_total", "Requests handled, by outcome"),
            &["outcome"],
        )?;
        let by_outcome = Outcome::ALL
            .iter()
            .map(|o| requests.get_metric_with_label_values(&[o.label()]))
            .collect::<prometheus::Result<Vec<_>>>()?;
        let upstream_responses = IntCounterVec::new(
            Opts::new(
                "tokengate_upstream_responses_total",
                "Answers from the upstream, by status class",
            ),
            &["class"],
        )?;
        let by_class = ["1xx", "2xx", "3xx", "4xx", "5xx"]
            .iter()
            .map(|c| upstream_responses.get_metric_with_label_values(&[c]))
            .collect::<prometheus::Result<Vec<_>>>()?;
        let dropped = IntCounterVec::new(
            Opts::new(
                "tokengate_log_records_dropped_total",
                "Records dropped because the log writer fell behind, by log",
            ),
            &["log"],
        )?;
        let write_errors = IntCounterVec::new(
            Opts::new(
                "tokengate_log_write_errors_total",
                "Records that could not be written, by log",
            ),
            &["log"],
        )?;
        let access_log = RecordLogMetrics {
            dropped: dropped.get_metric_with_label_values(&["access"])?,
            write_errors: write_errors.get_metric_with_label_values(&["access"])?,
        };
        let audit_log = RecordLogMetrics {
            dropped: dropped.get_metric_with_label_values(&["audit"])?,
            write_errors: write_errors.get_metric_with_label_values(&["audit"])?,
        };
        let reloads = IntCounterVec::new(
            Opts::new(
                "tokengate_config_reloads_total",
                "Configuration reloads, by result (ok, or failed: the old configuration kept serving)",
            ),
            &["result"],
        )?;
        let reloads_ok = reloads.get_metric_with_label_values(&["ok"])?;
        let reloads_failed = reloads.get_metric_with_label_values(&["failed"])?;
        registry.register(Box::new(reloads))?;
        let m = Metrics {
            management: IntCounterVec::new(
                Opts::new(
                    "tokengate_management_requests_total",
                    "Management API calls, by route, method and status class",
                ),
                &["route", "method", "status"],
            )?,
            requests,
            by_outcome,
            upstream_responses,
            by_class,
            upstream_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "tokengate_upstream_duration_seconds",
                    "From sending a request upstream to its answer's header",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ]),
            )?,
            denied: IntCounterVec::new(
                Opts::new("tokengate_auth_denied_total", "Requests refused, by reason"),
                &["reason"],
            )?,
            store_errors: IntCounter::new(
                "tokengate_store_errors_total",
                "Requests refused with 503 because the store check failed",
            )?,
            upstream_errors: IntCounter::new(
                "tokengate_upstream_errors_total",
                "Requests answered 502 or 504: the upstream could not be reached, failed or timed out",
            )?,
            auth_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "tokengate_auth_duration_seconds",
                    "Time of the store check-and-consume",
                )
                .buckets(vec![
                    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                    0.01, 0.05, 0.25, 1.0,
                ]),
            )?,
            open_connections: IntGauge::new(
                "tokengate_open_connections",
                "Client connections open on the proxy listeners",
            )?,
            connections_refused: IntCounter::new(
                "tokengate_connections_refused_total",
                "Client connections refused with 503 past server.max_connections",
            )?,
            cache: CacheMetrics {
                hits: IntCounter::new(
                    "tokengate_store_cache_hits_total",
                    "Requests decided from the near cache",
                )?,
                misses: IntCounter::new(
                    "tokengate_store_cache_misses_total",
                    "Requests the near cache sent to Redis",
                )?,
                invalidations: IntCounter::new(
                    "tokengate_store_cache_invalidations_total",
                    "Identities the near cache dropped because they changed",
                )?,
                coherent: IntGauge::new(
                    "tokengate_store_cache_coherent",
                    "1 while the near cache's invalidation channel is up",
                )?,
            },
            store: StoreMetrics::register(registry)?,
            access_log,
            audit_log,
            reloads_ok,
            reloads_failed,
            lockouts: IntCounter::new(
                "tokengate_management_lockouts_total",
                "Client addresses locked out of the management API after repeated failed authentication",
            )?,
        };
        registry.register(Box::new(m.lockouts.clone()))?;
        registry.register(Box::new(dropped))?;
        registry.register(Box::new(write_errors))?;
        registry.register(Box::new(m.cache.hits.clone()))?;
        registry.register(Box::new(m.cache.misses.clone()))?;
        registry.register(Box::new(m.cache.invalidations.clone()))?;
        let build = IntGaugeVec::new(
            Opts::new("tokengate_build_info", "The running build, always 1"),
            &["version"],
        )?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        registry.register(Box::new(build))?;
        registry.register(Box::new(m.cache.coherent.clone()))?;
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.open_connections.clone()))?;
        registry.register(Box::new(m.connections_refused.clone()))?;
        registry.register(Box::new(m.denied.clone()))?;
        registry.register(Box::new(m.store_errors.clone()))?;
        registry.register(Box::new(m.upstream_errors.clone()))?;
        registry.register(Box::new(m.auth_seconds.clone()))?;
        registry.register(Box::new(m.upstream_responses.clone()))?;
        registry.register(Box::new(m.upstream_seconds.clone()))?;
        registry.register(Box::new(m.management.clone()))?;
        Ok(m)
    }

    /// Counts one upstream answer: its status class and how long it took.
    pub fn count_upstream(&self, status: u16, took: std::time::Duration) {
        if let Some(counter) = (status / 100)
            .checked_sub(1)
            .and_then(|i| self.by_class.get(usize::from(i)))
        {
            counter.inc();
        }
        self.upstream_seconds.observe(took.as_secs_f64());
    }

    /// Counts one management call (rare enough to look its labels up).
    pub fn count_management(&self, route: &str, method: &str, status: u16) {
        let class = match status / 100 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        };
        self.management
            .with_label_values(&[route, method, class])
            .inc();
    }

    /// Counts one request under its outcome.
    pub fn count_request(&self, outcome: Outcome) {
        // `ALL` lists every variant in declaration order, so the index exists.
        if let Some(counter) = self.by_outcome.get(outcome as usize) {
            counter.inc();
        }
    }
}

/// The text exposition of everything in `registry`.
pub fn render(registry: &Registry) -> String {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    let _ = prometheus::TextEncoder::new().encode(&registry.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_and_renders() {
        let r = Registry::new();
        let m = Metrics::register(&r).unwrap();
        m.count_request(Outcome::Forwarded);
        m.denied.with_label_values(&["expired"]).inc();
        let text = render(&r);
        assert!(
            text.contains("tokengate_requests_total{outcome=\"forwarded\"} 1"),
            "{text}"
        );
        assert!(text.contains("tokengate_auth_denied_total{reason=\"expired\"} 1"));
        assert!(
            text.contains(&format!(
                "tokengate_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
        for o in Outcome::ALL {
            assert_eq!(Outcome::ALL[o as usize], o, "ALL is in declaration order");
        }
        m.count_upstream(503, std::time::Duration::from_millis(3));
        m.count_upstream(204, std::time::Duration::from_millis(1));
        m.count_upstream(99, std::time::Duration::from_millis(1));
        let text = render(&r);
        assert!(
            text.contains("tokengate_upstream_responses_total{class=\"5xx\"} 1")
                && text.contains("tokengate_upstream_responses_total{class=\"2xx\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("tokengate_upstream_duration_seconds_count 3"),
            "{text}"
        );
        assert!(
            Metrics::register(&r).is_err(),
            "double registration must fail"
        );
    }
}
