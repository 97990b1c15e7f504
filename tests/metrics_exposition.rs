//! The admin listener's /metrics as a Prometheus server and the Grafana dashboard see it: after a mixed workload on a Redis-backed gateway (near cache on), `promtool check metrics` finds nothing to report, every metric docs/grafana/tokengate.json queries is exported, and the workload's outcomes are counted under the right labels.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

const DASHBOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/grafana/tokengate.json");

/// Words of PromQL that are never metric names, even where no `(` follows:
/// operators, modifiers, literals, and the aggregations (`sum by (x) (...)`
/// puts the label list between the word and its parenthesis).
const KEYWORDS: [&str; 22] = [
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Words followed by a list of label names in parentheses.
const LABEL_LIST_KEYWORDS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b':'
}

/// Index just past the string literal opening at `start` (any of PromQL's
/// three quotes; backquoted strings have no escapes).
fn skip_string(b: &[u8], start: usize) -> usize {
    let quote = b[start];
    let mut i = start + 1;
    while i < b.len() && b[i] != quote {
        if b[i] == b'\\' && quote != b'`' {
            i += 1;
        }
        i += 1;
    }
    i + 1
}

/// Index just past the `close` that ends the group opening at `start`,
/// stepping over string literals (a label value may hold any bracket).
fn skip_group(b: &[u8], start: usize, close: u8) -> usize {
    let open = b[start];
    let mut depth = 0usize;
    let mut i = start;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' | b'`' => {
                i = skip_string(b, i);
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    b.len()
}

fn next_non_space(b: &[u8], mut i: usize) -> Option<(usize, u8)> {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    b.get(i).map(|&c| (i, c))
}

/// The metric names a PromQL expression reads, with `_bucket`, `_sum` and
/// `_count` taken off where `is_histogram` says the rest is a histogram
/// (a counter may end in `_count` too, and then the name is kept whole).
///
/// A lexer, not a parser: it drops what can never be a metric name (string
/// literals, label matchers, range and offset durations, numbers, Grafana
/// variables, the label lists of `by`, `on` and the like, function names)
/// and keeps every other bare identifier. A selector written only as
/// `{__name__="..."}` is not seen; the dashboard has none.
fn queried_metrics(expr: &str, is_histogram: impl Fn(&str) -> bool) -> BTreeSet<String> {
    let b = expr.as_bytes();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if matches!(c, b'"' | b'\'' | b'`') {
            i = skip_string(b, i);
        } else if c == b'{' {
            i = skip_group(b, i, b'}');
        } else if c == b'[' {
            i = skip_group(b, i, b']');
        } else if c == b'#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'$' {
            // `$var`, `${var}` or `$__rate_interval`: Grafana fills these in.
            i += 1;
            if b.get(i) == Some(&b'{') {
                i = skip_group(b, i, b'}');
            }
            while i < b.len() && is_name_char(b[i]) {
                i += 1;
            }
        } else if c.is_ascii_digit() || c == b'.' {
            // Numbers and durations: 0.99, 1e3, 0x1f, 5m, 1h30m.
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
        } else if is_name_start(c) {
            let start = i;
            while i < b.len() && is_name_char(b[i]) {
                i += 1;
            }
            let word = &expr[start..i];
            let next = next_non_space(b, i);
            if LABEL_LIST_KEYWORDS.contains(&word) {
                if let Some((at, b'(')) = next {
                    i = skip_group(b, at, b')');
                }
            } else if KEYWORDS.contains(&word) || matches!(next, Some((_, b'('))) {
                // A keyword, or a function or aggregation being called.
            } else {
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| word.strip_suffix(s).filter(|base| is_histogram(base)));
                names.insert(base.unwrap_or(word).to_string());
            }
        } else {
            i += 1;
        }
    }
    names
}

/// One line of the text exposition.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// What a scrape exported: every `# TYPE` and every sample.
struct Exposition {
    text: String,
    types: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        let mut types = BTreeMap::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                    types.insert(name.to_string(), kind.to_string());
                }
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("sample line without a value: {line:?}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|e| panic!("sample value in {line:?}: {e}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                None => (series, BTreeMap::new()),
            };
            samples.push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
        }
        Exposition {
            text: text.to_string(),
            types,
            samples,
        }
    }

    /// Whether `name` is exported, as a family (`# TYPE`) or as a sample.
    fn has(&self, name: &str) -> bool {
        self.types.contains_key(name) || self.samples.iter().any(|s| s.name == name)
    }

    fn is_histogram(&self, name: &str) -> bool {
        self.types.get(name).map(String::as_str) == Some("histogram")
    }

    /// The value of the one sample of `name` carrying exactly `labels`.
    #[track_caller]
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    /// Like [`Exposition::value`], panicking with the whole text when absent.
    #[track_caller]
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?} on /metrics:\n{}", self.text))
    }

    /// Every value the label `label` takes on samples of `name`.
    fn label_values(&self, name: &str, label: &str) -> BTreeSet<String> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter_map(|s| s.labels.get(label).cloned())
            .collect()
    }
}

/// `a="x",b="y \"q\""` into a map; the exporter escapes `\`, `"` and newlines.
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((name, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((at, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => {}
                },
                '"' => {
                    end = at + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.insert(name.trim_start_matches(',').trim().to_string(), value);
        rest = &after[end..];
    }
    labels
}

/// Runs `promtool check metrics` on `text` (its stdin) and returns its exit
/// status and everything it printed. A missing promtool fails the test:
/// skipping would let a broken exposition pass wherever it is not installed.
fn promtool_check_metrics(text: &str) -> (Option<i32>, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}); it comes with Debian's `prometheus` package \
                 (scripts/test.sh installs it)"
            )
        });
    let mut stdin = child.stdin.take().expect("promtool stdin is piped");
    stdin
        .write_all(text.as_bytes())
        .expect("write /metrics to promtool");
    drop(stdin);
    let out = child.wait_with_output().expect("wait for promtool");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), printed)
}

/// The dashboard, parsed; panics when the file is not JSON.
fn dashboard() -> Value {
    let text =
        std::fs::read_to_string(DASHBOARD).unwrap_or_else(|e| panic!("read {DASHBOARD}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"))
}

/// Every panel, rows' nested panels included.
fn panels(dash: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().into_iter().flatten() {
        out.push(p.clone());
        out.extend(p["panels"].as_array().into_iter().flatten().cloned());
    }
    out
}

/// Every (panel title, PromQL) pair of the dashboard's panel targets.
fn panel_queries(dash: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(dash) {
        let title = p["title"].as_str().unwrap_or_default().to_string();
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = t["expr"].as_str() {
                out.push((title.clone(), expr.to_string()));
            }
        }
    }
    out
}

/// The metric of each `label_values(metric, label)` template variable.
fn variable_metrics(dash: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for v in dash["templating"]["list"].as_array().into_iter().flatten() {
        let query = v["query"]["query"].as_str().or(v["query"].as_str());
        if let Some(args) = query
            .filter(|_| v["type"] == "query")
            .and_then(|q| q.trim().strip_prefix("label_values("))
        {
            let metric = args.split([',', ')', '{']).next().unwrap_or_default();
            out.push(metric.trim().to_string());
        }
    }
    out
}

#[test]
fn dashboard_is_well_formed_and_uses_a_datasource_variable() {
    let dash = dashboard();
    assert!(
        dash["title"].as_str().is_some_and(|t| !t.is_empty()),
        "dashboard title"
    );
    let panels = panels(&dash);
    assert!(!panels.is_empty(), "the dashboard has no panels");
    let mut ids = BTreeSet::new();
    for p in &panels {
        let title = p["title"].as_str().unwrap_or_default();
        assert!(!title.trim().is_empty(), "panel without a title: {p}");
        let targets = p["targets"].as_array().map_or(0, Vec::len);
        assert!(targets > 0, "panel {title:?} has no target");
        for t in p["targets"].as_array().into_iter().flatten() {
            assert!(
                t["expr"].as_str().is_some_and(|e| !e.trim().is_empty()),
                "panel {title:?} has a target without PromQL: {t}"
            );
        }
        assert!(
            ids.insert(p["id"].as_u64().expect("numeric panel id")),
            "panel id repeated: {title:?}"
        );
        for pos in ["x", "y", "w", "h"] {
            assert!(p["gridPos"][pos].is_u64(), "panel {title:?} gridPos.{pos}");
        }
    }

    // Imported anywhere, the panels must follow the chosen data source: the
    // only uid any `datasource` names is the variable.
    let variable = dash["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["type"] == "datasource" && v["query"] == "prometheus")
        .expect("a Prometheus data source template variable");
    let reference = format!("${{{}}}", variable["name"].as_str().expect("its name"));
    let mut uids = Vec::new();
    collect_datasource_uids(&dash, &mut uids);
    assert!(!uids.is_empty(), "no panel names a data source");
    for uid in &uids {
        assert_eq!(uid, &reference, "hard-coded data source uid");
    }
}

/// Every `datasource.uid` anywhere in `v`.
fn collect_datasource_uids(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if k == "datasource" {
                    if let Some(uid) = child["uid"].as_str() {
                        out.push(uid.to_string());
                    }
                }
                collect_datasource_uids(child, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_datasource_uids(i, out)),
        _ => {}
    }
}

#[test]
fn queried_metrics_finds_names_and_nothing_else() {
    let hist = |n: &str| matches!(n, "lat_seconds" | "other_seconds");
    let names = |e: &str| -> Vec<String> { queried_metrics(e, hist).into_iter().collect() };

    assert_eq!(
        names(
            r#"histogram_quantile(0.99, sum by (le, operation) (rate(lat_seconds_bucket{instance=~"$instance"}[$__rate_interval])))"#
        ),
        ["lat_seconds"]
    );
    // Label values, even ones that look like PromQL, are not names.
    assert_eq!(
        names(
            r#"sum(rate(a_total{x="by (y) z_total", q='}'}[5m])) / (sum(rate(b_total[5m])) + sum(rate(c_total[5m]))) > bool 0.5"#
        ),
        ["a_total", "b_total", "c_total"]
    );
    // `_count` of something that is not a histogram is the name itself.
    assert_eq!(names("rate(jobs_count[1m])"), ["jobs_count"]);
    assert_eq!(
        names("other_seconds_sum / other_seconds_count"),
        ["other_seconds"]
    );
    // Label lists of by/without/on/group_left, with or without a space.
    assert_eq!(
        names("a * on(job) group_left(version) b offset 1h"),
        ["a", "b"]
    );
    assert_eq!(
        names("sum without(instance) (rate(m[5m] offset 10m)) and ignoring (le) n unless o"),
        ["m", "n", "o"]
    );
    assert_eq!(names("x * on(job) group_left y"), ["x", "y"]);
    assert_eq!(
        names("count by (version) (tokengate_build_info{instance=~\"$instance\"})"),
        ["tokengate_build_info"]
    );
    assert_eq!(
        names(r#"sum(rate(a[${__range}])) > 1e3 * inf + 0x1f"#),
        ["a"]
    );
    assert_eq!(names("# just a comment\n42"), Vec::<String>::new());
    assert_eq!(names("ns:recorded_rate:5m"), ["ns:recorded_rate:5m"]);
}

#[test]
fn exposition_passes_promtool_and_covers_the_dashboard() {
    let mut redis = Redis::start();
    let upstream = Upstream::echo();
    // Short store timeouts and no retries, so the store failure at the end
    // is answered quickly.
    let gw = Gateway::start(
        GatewayConfig::redis(&redis.url())
            .store_cache(Some("{enabled: true}"))
            .redis_timeouts(300, 300, 0)
            .upstream(&upstream.url()),
    );
    let admin = gw.admin();
    let base = gw.url();
    let request = |path: &str, token: &str| get_with_token(&format!("{base}{path}"), token);

    // Forwarded: an unlimited token, a member of project-a, used a few times
    // so later uses are decided from the near cache.
    let (member, token) = admin.identity_with_token("member", json!({}));
    admin.add_membership("project-a", &member, json!({"role": "viewer"}));
    for _ in 0..5 {
        request("/v1/things?projectId=project-a", &token.access_token).expect_status(200);
    }
    // An upstream 5xx is the upstream's answer, forwarded as it is.
    upstream.set_status(503);
    request("/v1/things", &token.access_token).expect_status(503);
    upstream.set_status(200);

    // Denied, for several reasons.
    let wrong_project = request("/v1/things?projectId=project-b", &token.access_token);
    wrong_project.expect_error(403);
    request("/v1/things", "not-a-token").expect_error(401);
    let (gone, gone_token) = admin.identity_with_token("member", json!({}));
    admin.delete_identity(&gone);
    request("/v1/things", &gone_token.access_token).expect_error(401);
    let (_, revoked) = admin.identity_with_token("member", json!({}));
    admin.revoke_token(&revoked.token_id);
    request("/v1/things", &revoked.access_token).expect_error(401);

    // Malformed: a path that different servers would read differently.
    let (status, body) = raw_http(
        &gw.addr(),
        &raw_request(
            "GET",
            "/v1/%2e%2e/things",
            &[("Authorization", &format!("Bearer {}", token.access_token))],
            None,
        ),
    );
    assert_eq!(status, 400, "{body}");

    // A management call that fails: an identity that does not exist.
    let missing = admin.call(
        "GET",
        "/api/v1/identities/00000000-0000-4000-8000-000000000000",
        None,
    );
    assert_eq!(missing.status, 404, "{}", missing.body);

    // A token created but never used is not in the near cache: its first
    // check must reach Redis, which will be gone.
    let (_, unused) = admin.identity_with_token("member", json!({}));

    let mut before_outage = Exposition::parse("");
    eventually(Duration::from_secs(5), || {
        before_outage = Exposition::parse(&gw.metrics_text());
        before_outage
            .value("tokengate_requests_total", &[("outcome", "bad_request")])
            .is_some_and(|v| v >= 1.0)
    });
    assert_eq!(
        before_outage.get("tokengate_store_cache_coherent", &[]),
        1.0,
        "the near cache is in use while Redis is up"
    );
    assert!(
        before_outage.get("tokengate_store_cache_hits_total", &[]) >= 1.0,
        "repeated uses of an unlimited token were not served from the near cache"
    );

    // An upstream that is gone, then a store that is gone.
    drop(upstream);
    let failed = request("/v1/things", &token.access_token);
    assert!(
        matches!(failed.status, 502 | 504),
        "upstream gone: {} {}",
        failed.status,
        failed.body
    );
    redis.kill();
    request("/v1/things", &unused.access_token).expect_error(503);

    let mut m = Exposition::parse("");
    eventually(Duration::from_secs(10), || {
        m = Exposition::parse(&gw.metrics_text());
        [
            "forwarded",
            "denied",
            "bad_request",
            "management",
            "store_error",
            "upstream_error",
        ]
        .iter()
        .all(|o| {
            m.value("tokengate_requests_total", &[("outcome", o)])
                .is_some_and(|v| v >= 1.0)
        })
    });

    // (a) promtool has nothing to say about the exposition.
    let (code, printed) = promtool_check_metrics(&m.text);
    assert!(
        code == Some(0) && printed.trim().is_empty(),
        "promtool check metrics: exit {code:?}, output:\n{printed}\n--- /metrics ---\n{}",
        m.text
    );

    // (b) Every metric the dashboard queries is on /metrics.
    let dash = dashboard();
    let is_histogram = |name: &str| m.is_histogram(name);
    let mut queried: BTreeMap<String, String> = BTreeMap::new();
    for (title, expr) in panel_queries(&dash) {
        for name in queried_metrics(&expr, is_histogram) {
            queried.entry(name).or_insert_with(|| title.clone());
        }
    }
    for name in variable_metrics(&dash) {
        queried
            .entry(name)
            .or_insert_with(|| "template variable".into());
    }
    assert!(
        queried.len() >= 15,
        "too few metric names found in the dashboard: {queried:?}"
    );
    for (name, panel) in &queried {
        assert!(
            m.has(name),
            "panel {panel:?} queries {name}, which /metrics does not export:\n{}",
            m.text
        );
    }
    // The dashboard shows every tokengate metric there is.
    for name in m.types.keys().filter(|n| n.starts_with("tokengate_")) {
        assert!(
            queried.contains_key(name),
            "{name} is exported but no dashboard panel shows it"
        );
    }

    // The workload, counted under the right labels.
    let requests = |o: &str| m.get("tokengate_requests_total", &[("outcome", o)]);
    assert_eq!(
        requests("forwarded"),
        6.0,
        "5 answered 200 and 1 answered 503"
    );
    assert_eq!(requests("bad_request"), 1.0);
    assert_eq!(requests("store_error"), 1.0);
    assert_eq!(requests("upstream_error"), 1.0);
    assert_eq!(
        requests("denied"),
        4.0,
        "wrong project, garbage, deleted, revoked"
    );
    let denied = |r: &str| m.get("tokengate_auth_denied_total", &[("reason", r)]);
    assert_eq!(denied("no_project_access"), 1.0);
    assert_eq!(denied("revoked"), 1.0);
    assert_eq!(denied("unknown_token"), 1.0, "the deleted identity's token");
    assert_eq!(denied("malformed_token"), 1.0, "the garbage token");
    let reasons: f64 = m
        .label_values("tokengate_auth_denied_total", "reason")
        .iter()
        .map(|r| denied(r))
        .sum();
    assert_eq!(reasons, requests("denied"), "every denial has a reason");
    let class = |c: &str| m.get("tokengate_upstream_responses_total", &[("class", c)]);
    assert_eq!((class("2xx"), class("5xx")), (5.0, 1.0));
    assert_eq!(m.get("tokengate_upstream_errors_total", &[]), 1.0);
    assert_eq!(m.get("tokengate_store_errors_total", &[]), 1.0);
    assert_eq!(
        m.get("tokengate_upstream_duration_seconds_count", &[]),
        6.0,
        "one observation per upstream answer"
    );
    assert!(
        m.get("tokengate_auth_duration_seconds_count", &[]) >= 8.0,
        "every store check is timed"
    );
    assert_eq!(
        m.get(
            "tokengate_management_requests_total",
            &[("route", "identity"), ("method", "GET"), ("status", "4xx")]
        ),
        1.0
    );
    assert!(
        m.get(
            "tokengate_management_requests_total",
            &[
                ("route", "identities"),
                ("method", "POST"),
                ("status", "2xx")
            ]
        ) >= 4.0
    );
    assert_eq!(m.get("tokengate_connections_refused_total", &[]), 0.0);
    assert!(m.get("tokengate_open_connections", &[]) >= 0.0);
    assert_eq!(
        m.get(
            "tokengate_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    for secret_or_id in [&token.access_token, &token.token_id, &member] {
        assert!(
            !m.text.contains(secret_or_id.as_str()),
            "/metrics names {secret_or_id}"
        );
    }

    // Store calls by operation, and both record logs' counters from the start.
    {
        assert!(m.is_histogram("tokengate_store_duration_seconds"));
        let calls = |op: &str| {
            m.value(
                "tokengate_store_duration_seconds_count",
                &[("operation", op)],
            )
            .unwrap_or(0.0)
        };
        assert!(calls("authenticate") >= 1.0, "{}", m.text);
        assert!(calls("create_token") >= 4.0, "{}", m.text);
        assert!(calls("revoke_token") >= 1.0, "{}", m.text);
    }
    {
        assert!(
            m.value(
                "tokengate_store_operation_errors_total",
                &[("operation", "authenticate")]
            )
            .is_some_and(|v| v >= 1.0),
            "the check that met a dead Redis is counted: {}",
            m.text
        );
    }
    for name in [
        "tokengate_log_records_dropped_total",
        "tokengate_log_write_errors_total",
    ] {
        assert_eq!(m.types.get(name).map(String::as_str), Some("counter"));
        assert_eq!(
            m.label_values(name, "log"),
            BTreeSet::from(["access".to_string(), "audit".to_string()]),
            "{name}: both logs from the start"
        );
    }
}
