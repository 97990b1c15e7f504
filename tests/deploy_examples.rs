//! The deployment examples in deploy/: the gateway YAML of the docker-compose
//! setup and the one embedded in the Kubernetes ConfigMap pass `tokengate
//! check-config`, and what surrounds them (compose services, ports, mounts
//! and environment; the Deployment's probes, variables, mounts, Secret keys,
//! user and grace period; the Service) agrees with that YAML. Docker and a
//! cluster are not needed: the files are read with serde_yaml. So are the
//! Traefik and Envoy files of deploy/forward-auth/, against tokengate's own.

mod common;

use common::process::run_bounded;
use serde::Deserialize;
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tokengate::config::{Config, Describe, RedisUrls, StoreConfig};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `value[key]`, panicking with `what` when it is missing.
#[track_caller]
fn at<'a>(value: &'a Value, key: &str, what: &str) -> &'a Value {
    value
        .get(key)
        .unwrap_or_else(|| panic!("{what}: no `{key}` in {value:?}"))
}

#[track_caller]
fn str_at<'a>(value: &'a Value, key: &str, what: &str) -> &'a str {
    at(value, key, what)
        .as_str()
        .unwrap_or_else(|| panic!("{what}: `{key}` is not a string"))
}

#[track_caller]
fn seq_at<'a>(value: &'a Value, key: &str, what: &str) -> &'a [Value] {
    at(value, key, what)
        .as_sequence()
        .unwrap_or_else(|| panic!("{what}: `{key}` is not a list"))
}

fn strings(values: &[Value]) -> Vec<&str> {
    values.iter().filter_map(Value::as_str).collect()
}

/// The variable a Redis store reads its address from.
#[track_caller]
fn url_env(cfg: &Config) -> &str {
    match &cfg.store {
        StoreConfig::Redis {
            urls: RedisUrls::Env(var),
            ..
        } => var,
        other => panic!("the example store should read its URL from the environment: {other:?}"),
    }
}

/// `tokengate check-config` on `yaml` with `env` set; asserts a clean pass
/// (no warning either: every variable the file names is given) and returns
/// the validated configuration.
#[track_caller]
fn checked(what: &str, yaml: &str, env: &[(&str, &str)]) -> Config {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tokengate.yaml");
    std::fs::write(&path, yaml).expect("write config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokengate"));
    cmd.arg("check-config").arg(&path).env_remove("REDIS_URL");
    for (key, value) in env {
        cmd.env(key, value);
    }
    let (code, out) = run_bounded("tokengate check-config", &mut cmd, Duration::from_secs(30));
    assert_eq!(code, 0, "check-config refused {what}:\n{out}");
    assert!(
        out.contains(": ok") && !out.contains("warning"),
        "check-config on {what}:\n{out}"
    );
    tokengate::config::parse(yaml).unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// `KEY=value` lines of an env file (comments and blank lines skipped).
fn env_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("not KEY=value: {l}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// Host and port of a URL.
#[track_caller]
fn host_port(url: &str) -> (String, u16) {
    let u = url::Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    (
        u.host_str().expect("host").to_string(),
        u.port_or_known_default().expect("port"),
    )
}

/// The numeric user of the runtime image (`USER uid:gid` in the Dockerfile).
fn dockerfile_uid() -> i64 {
    let text = read(&repo().join("Dockerfile"));
    let user = text
        .lines()
        .filter_map(|l| l.strip_prefix("USER "))
        .next_back()
        .expect("the Dockerfile sets USER");
    let uid = user.split(':').next().unwrap_or(user).trim();
    uid.parse()
        .unwrap_or_else(|_| panic!("USER {user} is not numeric: runAsNonRoot cannot check a name"))
}

/// Seconds of a compose duration such as `20s` or `1m30s`.
fn compose_seconds(d: &str) -> u64 {
    let mut total = 0;
    let mut n = String::new();
    for c in d.chars() {
        match c {
            '0'..='9' => n.push(c),
            'h' | 'm' | 's' => {
                let v: u64 = n.parse().unwrap_or_else(|_| panic!("duration {d}"));
                total += v * match c {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
                n.clear();
            }
            _ => panic!("duration {d}"),
        }
    }
    total
}

#[test]
fn compose_setup_lines_up_with_its_gateway_config() {
    let deploy = repo().join("deploy");
    let compose: Value =
        serde_yaml::from_str(&read(&deploy.join("docker-compose.yml"))).expect("compose YAML");
    let services = at(&compose, "services", "docker-compose.yml");
    let gw = at(services, "tokengate", "services");
    for name in ["redis", "upstream"] {
        at(services, name, "services");
    }

    // Built from the repository's Dockerfile.
    let build = at(gw, "build", "tokengate");
    let context = deploy.join(str_at(build, "context", "build"));
    assert!(
        context.join(str_at(build, "dockerfile", "build")).is_file(),
        "no Dockerfile at {}",
        context.display()
    );

    // The mounted file is the one the gateway is told to serve.
    let command = strings(seq_at(gw, "command", "tokengate"));
    let config_at = command
        .iter()
        .position(|a| *a == "--config")
        .map(|i| command[i + 1])
        .expect("tokengate command has --config");
    let mount = strings(seq_at(gw, "volumes", "tokengate"))
        .into_iter()
        .find(|v| v.split(':').nth(1) == Some(config_at))
        .unwrap_or_else(|| panic!("nothing is mounted at {config_at}"));
    let config_file = deploy.join(mount.split(':').next().unwrap());
    assert_eq!(
        config_file,
        deploy.join("./compose/tokengate.yaml"),
        "the mounted config"
    );

    // Its environment names what the config reads; the Redis URL points at
    // the redis service.
    let env = env_file(&read(&deploy.join(str_at(gw, "env_file", "tokengate"))));
    let yaml = read(&config_file);
    let probe = tokengate::config::parse(&yaml).expect("compose config parses");
    let var = url_env(&probe);
    let redis_url = env
        .get(var)
        .unwrap_or_else(|| panic!("the env file does not set {var}"));
    assert_eq!(host_port(redis_url), ("redis".to_string(), 6379));
    let key_var = probe.admin_key_env.as_deref().expect("admin.api_key_env");
    let admin_key = env
        .get(key_var)
        .unwrap_or_else(|| panic!("the env file does not set {key_var}"));
    assert!(admin_key.len() >= 16, "admin key too short: {admin_key}");
    let env_pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let cfg = checked("deploy/compose/tokengate.yaml", &yaml, &env_pairs);

    // Published ports and the health check reach the configured listeners.
    let listen = cfg.listen[0].port();
    let admin = cfg.admin_listen.expect("admin listener").port();
    let published: Vec<u16> = strings(seq_at(gw, "ports", "tokengate"))
        .iter()
        .map(|p| {
            p.rsplit(':')
                .next()
                .unwrap()
                .parse()
                .expect("container port")
        })
        .collect();
    assert!(
        published.contains(&listen) && published.contains(&admin),
        "{published:?}"
    );
    let health = strings(seq_at(
        at(gw, "healthcheck", "tokengate"),
        "test",
        "healthcheck",
    ))
    .join(" ");
    assert!(
        health.contains(&format!("/dev/tcp/127.0.0.1/{admin}")) && health.contains("GET /readyz "),
        "{health}"
    );

    // The upstream is the upstream service, on the port it listens on.
    let (host, port) = (cfg.upstream.host.as_str(), cfg.upstream.port);
    assert_eq!(host, "upstream");
    let upstream_cmd = strings(seq_at(at(services, host, "services"), "command", host));
    assert!(
        upstream_cmd.contains(&port.to_string().as_str()),
        "{upstream_cmd:?}"
    );

    // Docker waits out the gateway's drain before killing it.
    let stop = compose_seconds(str_at(gw, "stop_grace_period", "tokengate"));
    assert!(
        stop > 2 * cfg.grace_period_seconds,
        "stop_grace_period {stop}s"
    );
}

/// The documents of the Kubernetes manifest, by kind.
fn manifests() -> BTreeMap<String, Value> {
    let text = read(&repo().join("deploy/kubernetes/tokengate.yaml"));
    let mut by_kind = BTreeMap::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value = Value::deserialize(doc).expect("manifest YAML");
        let kind = str_at(&value, "kind", "manifest").to_string();
        let meta = at(&value, "metadata", &kind);
        assert!(
            meta.get("namespace").is_none(),
            "{kind} sets a namespace; the manifest is namespace-free"
        );
        assert!(
            by_kind.insert(kind.clone(), value).is_none(),
            "two {kind} documents"
        );
    }
    by_kind
}

/// The container port named `name`.
#[track_caller]
fn named_port(container: &Value, name: &str) -> u64 {
    seq_at(container, "ports", "container")
        .iter()
        .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
        .and_then(|p| p.get("containerPort"))
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no container port named {name}"))
}

#[test]
fn kubernetes_manifest_lines_up_with_its_gateway_config() {
    let m = manifests();
    let kinds: Vec<&str> = m.keys().map(String::as_str).collect();
    assert_eq!(kinds, ["ConfigMap", "Deployment", "Secret", "Service"]);
    let config_map = &m["ConfigMap"];
    let secret = &m["Secret"];
    let deployment = &m["Deployment"];
    let cm_name = str_at(at(config_map, "metadata", "ConfigMap"), "name", "ConfigMap");
    let secret_name = str_at(at(secret, "metadata", "Secret"), "name", "Secret");
    let secret_data = at(secret, "stringData", "Secret");
    let cm_data = at(config_map, "data", "ConfigMap");

    let spec = at(deployment, "spec", "Deployment");
    assert_eq!(at(spec, "replicas", "Deployment").as_u64(), Some(2));
    let pod = at(at(spec, "template", "Deployment"), "spec", "template");
    let containers = seq_at(pod, "containers", "pod");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];

    // The environment: every variable from the Secret or the ConfigMap,
    // with keys that exist there.
    let mut env = BTreeMap::new();
    for e in seq_at(c, "env", "container") {
        let name = str_at(e, "name", "env");
        let from = at(e, "valueFrom", name);
        let value = if let Some(r) = from.get("secretKeyRef") {
            assert_eq!(str_at(r, "name", name), secret_name);
            str_at(secret_data, str_at(r, "key", name), "Secret")
        } else {
            let r = at(from, "configMapKeyRef", name);
            assert_eq!(str_at(r, "name", name), cm_name);
            str_at(cm_data, str_at(r, "key", name), "ConfigMap")
        };
        env.insert(name, value);
    }
    assert_eq!(env.get("MIMALLOC_PURGE_DELAY").copied(), Some("0"));

    // The embedded gateway YAML passes check-config with that environment.
    let yaml = str_at(cm_data, "tokengate.yaml", "ConfigMap");
    let env_pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, *v)).collect();
    let cfg = checked("the ConfigMap's tokengate.yaml", yaml, &env_pairs);
    let redis_var = url_env(&cfg);
    assert!(env.contains_key(redis_var), "{redis_var} is not set");
    let key_var = cfg.admin_key_env.as_deref().expect("admin.api_key_env");
    assert!(
        env.get(key_var).is_some_and(|k| k.len() >= 16),
        "{key_var} is not set from the Secret, or too short"
    );

    // The file the gateway is told to serve is the ConfigMap's key, mounted.
    let args = strings(seq_at(c, "args", "container"));
    let config_at = args
        .iter()
        .position(|a| *a == "--config")
        .map(|i| args[i + 1])
        .expect("args has --config");
    let mount = seq_at(c, "volumeMounts", "container")
        .iter()
        .find(|v| config_at.starts_with(&format!("{}/", str_at(v, "mountPath", "mount"))))
        .expect("the config path is mounted");
    assert!(
        mount.get("subPath").is_none(),
        "a subPath mount is never updated"
    );
    let volume = seq_at(pod, "volumes", "pod")
        .iter()
        .find(|v| v.get("name") == mount.get("name"))
        .expect("the mounted volume");
    let volume_cm = at(volume, "configMap", "volume");
    assert_eq!(str_at(volume_cm, "name", "volume"), cm_name);
    let item = seq_at(volume_cm, "items", "volume")
        .iter()
        .find(|i| str_at(i, "key", "item") == "tokengate.yaml")
        .expect("tokengate.yaml is projected");
    assert_eq!(
        format!(
            "{}/{}",
            str_at(mount, "mountPath", "mount"),
            str_at(item, "path", "item")
        ),
        config_at
    );

    // Probes on the admin listener; the Service on the proxy listener.
    let admin = u64::from(cfg.admin_listen.expect("admin listener").port());
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = at(at(c, probe, "container"), "httpGet", probe);
        assert_eq!(str_at(get, "path", probe), path);
        let port = at(get, "port", probe);
        let port = port
            .as_u64()
            .unwrap_or_else(|| named_port(c, port.as_str().expect("port name")));
        assert_eq!(port, admin, "{probe} is not on the admin listener");
    }
    let service_ports = seq_at(at(&m["Service"], "spec", "Service"), "ports", "Service");
    let target = str_at(&service_ports[0], "targetPort", "Service");
    assert_eq!(named_port(c, target), u64::from(cfg.listen[0].port()));

    // Kubernetes waits out the drain; the process runs as the image's
    // non-root user on a read-only root.
    let grace = at(pod, "terminationGracePeriodSeconds", "pod")
        .as_u64()
        .unwrap();
    assert!(grace > 2 * cfg.grace_period_seconds, "{grace}");
    let pod_sec = at(pod, "securityContext", "pod");
    assert_eq!(at(pod_sec, "runAsNonRoot", "pod").as_bool(), Some(true));
    assert_eq!(
        at(pod_sec, "runAsUser", "pod").as_i64(),
        Some(dockerfile_uid())
    );
    let sec = at(c, "securityContext", "container");
    assert_eq!(
        at(sec, "readOnlyRootFilesystem", "container").as_bool(),
        Some(true)
    );
    at(at(c, "resources", "container"), "limits", "resources");
}

// ---- forward-auth: deploy/forward-auth/ ----
//
// nginx and Caddy run from their files in tests/forward_auth.rs. Traefik and
// Envoy are not in the package registries this project installs from, so
// their files are read here and checked against tokengate's own example:
// the endpoint they ask, the headers they copy upstream (every injected
// name, no other), and that neither hands the API the token.

/// tokengate's example for this mode, loaded as the gateway would.
fn forward_auth_tokengate() -> Config {
    let path = repo().join("deploy/forward-auth/tokengate.yaml");
    tokengate::config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml_file(rel: &str) -> Value {
    serde_yaml::from_str(&read(&repo().join(rel))).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn text_list(v: &Value, what: &str) -> Vec<String> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("{what} is not a list"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("{what}: not text"))
                .to_string()
        })
        .collect()
}

fn lowercase(names: &[String]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
    v.sort();
    v
}

fn injected(cfg: &Config) -> Vec<String> {
    let mut v: Vec<String> = cfg.headers.all().iter().map(|n| n.to_string()).collect();
    v.sort();
    v
}

#[test]
fn traefik_asks_tokengates_endpoint_and_copies_exactly_the_injected_headers() {
    let tg = forward_auth_tokengate();
    let endpoint = tg
        .forward_auth
        .clone()
        .expect("forward_auth in tokengate.yaml")
        .path;
    let addr = tg.listen[0];
    let t = yaml_file("deploy/forward-auth/traefik.yml");
    let mw = at(at(&t, "http", "traefik"), "middlewares", "traefik");
    let auth = at(
        at(mw, "tokengate-auth", "traefik"),
        "forwardAuth",
        "traefik",
    );
    assert_eq!(
        at(auth, "address", "traefik").as_str(),
        Some(format!("http://{addr}{endpoint}").as_str())
    );
    assert_eq!(
        at(auth, "trustForwardHeader", "traefik").as_bool(),
        Some(false)
    );
    let copied = text_list(
        at(auth, "authResponseHeaders", "traefik"),
        "authResponseHeaders",
    );
    assert_eq!(lowercase(&copied), injected(&tg));

    // The strip middleware runs first and removes every injected name in
    // both spellings; the token goes after the check.
    let router = at(
        at(at(&t, "http", "traefik"), "routers", "traefik"),
        "api",
        "traefik",
    );
    assert_eq!(
        text_list(at(router, "middlewares", "traefik"), "middlewares"),
        ["tokengate-strip", "tokengate-auth", "tokengate-drop-token"]
    );
    let strip = at(
        at(at(mw, "tokengate-strip", "traefik"), "headers", "traefik"),
        "customRequestHeaders",
        "traefik",
    );
    for name in injected(&tg) {
        for spelling in [name.clone(), name.replace('-', "_")] {
            let found = strip.as_mapping().unwrap().iter().any(|(k, v)| {
                k.as_str()
                    .is_some_and(|k| k.eq_ignore_ascii_case(&spelling))
                    && v.as_str() == Some("")
            });
            assert!(found, "tokengate-strip does not remove {spelling}");
        }
    }
    let drop = at(
        at(
            at(mw, "tokengate-drop-token", "traefik"),
            "headers",
            "traefik",
        ),
        "customRequestHeaders",
        "traefik",
    );
    assert_eq!(at(drop, "Authorization", "traefik").as_str(), Some(""));
}

#[test]
fn envoy_asks_tokengates_endpoint_and_copies_exactly_the_injected_headers() {
    let tg = forward_auth_tokengate();
    let endpoint = tg
        .forward_auth
        .clone()
        .expect("forward_auth in tokengate.yaml")
        .path;
    let e = yaml_file("deploy/forward-auth/envoy.yaml");
    let listener = &at(at(&e, "static_resources", "envoy"), "listeners", "envoy")[0];
    let hcm = at(
        &at(&listener["filter_chains"][0], "filters", "envoy")[0],
        "typed_config",
        "envoy",
    );
    assert_eq!(
        hcm["common_http_protocol_options"]["headers_with_underscores_action"].as_str(),
        Some("DROP_HEADER"),
        "client headers spelled with _ must not reach the API"
    );
    let authz = &at(hcm, "http_filters", "envoy")[0]["typed_config"];
    assert_eq!(
        authz["failure_mode_allow"].as_bool(),
        Some(false),
        "fail closed"
    );
    let svc = &authz["http_service"];
    assert_eq!(svc["path_prefix"].as_str(), Some(endpoint.as_str()));
    let patterns = |v: &Value| -> Vec<String> {
        v["patterns"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|p| p["exact"].as_str().unwrap().to_string())
            .collect()
    };
    let upstream = patterns(&svc["authorization_response"]["allowed_upstream_headers"]);
    assert_eq!(lowercase(&upstream), injected(&tg));
    // Every header goes to the check: the token, the client's address, and
    // whatever could name a project or override the URL at the API.
    let asked = &svc["authorization_request"]["allowed_headers"]["patterns"];
    assert_eq!(
        asked[0]["safe_regex"]["regex"].as_str(),
        Some(".*"),
        "{asked:?}"
    );
    assert_eq!(tg.forward_auth.as_ref().unwrap().describe, Describe::Path);
    // tokengate's address is the cluster the check goes to.
    let clusters = at(at(&e, "static_resources", "envoy"), "clusters", "envoy");
    let cluster = svc["server_uri"]["cluster"].as_str().unwrap();
    let tg_cluster = clusters
        .as_sequence()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str() == Some(cluster))
        .expect("the check's cluster");
    let sock = &tg_cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        ["address"]["socket_address"];
    let addr = tg.listen[0];
    assert_eq!(
        sock["address"].as_str(),
        Some(addr.ip().to_string().as_str())
    );
    assert_eq!(sock["port_value"].as_u64(), Some(u64::from(addr.port())));
    // The token goes after the check, before the API.
    let route = &hcm["route_config"]["virtual_hosts"][0]["routes"][0];
    assert_eq!(
        text_list(
            &route["request_headers_to_remove"],
            "request_headers_to_remove"
        ),
        ["authorization"]
    );
}

#[test]
fn nginx_and_caddy_files_name_every_injected_header() {
    let tg = forward_auth_tokengate();
    let nginx = read(&repo().join("deploy/forward-auth/nginx.conf")).to_ascii_lowercase();
    let caddy = read(&repo().join("deploy/forward-auth/Caddyfile")).to_ascii_lowercase();
    let endpoint = tg.forward_auth.clone().unwrap().path;
    assert!(nginx.contains(&format!("{endpoint}$request_uri")));
    assert!(caddy.contains(&format!("uri {endpoint}")));
    // Every name spelled with "_" goes, as tokengate drops them in proxy mode.
    assert!(caddy.contains("request_header -*_*\n"));
    assert!(nginx.contains("underscores_in_headers off;"));
    // nginx asks with the original method, once, and refuses fragments.
    assert!(nginx.contains("proxy_method $request_method;"));
    assert!(nginx.contains("proxy_next_upstream off;"));
    assert!(nginx.contains("if ($request_uri ~ \"#\")"));
    for name in injected(&tg) {
        assert!(
            nginx.contains(&format!("proxy_set_header {name} ")),
            "nginx: {name}"
        );
        assert!(
            caddy.contains(&format!("request_header -{name}\n")),
            "caddy: {name}"
        );
        assert!(caddy.contains(&name), "caddy copy_headers: {name}");
    }
}
