//! Where the management API's admin key comes from: an environment variable
//! or a file named in the config, never the YAML itself; without one, only
//! admin identities' tokens can manage.

mod common;

use common::*;
use serde_json::json;

#[test]
fn admin_key_from_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("admin.key");
    std::fs::write(&key_file, format!("{ADMIN_KEY}\n")).expect("write key file");
    let cfg = GatewayConfig::embedded_temp().no_admin_key();
    let admin_section = format!(
        "listen: \"127.0.0.1:{}\"\napi_key_file: {}",
        cfg.admin_port(),
        key_file.display()
    );
    let gw = Gateway::start(cfg.section("admin", &admin_section));
    let id = gw.admin().create_identity("from-file", "member");
    assert_eq!(gw.admin().get_identity(&id)["name"], "from-file");
    let wrong = Admin::with_token(&gw.url(), "not-the-admin-key-at-all");
    let r = wrong.call("GET", "/api/v1/identities", None);
    assert_eq!(r.status, 401, "{}", r.body);
}

#[test]
fn a_short_key_file_is_refused_at_start_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("admin.key");
    std::fs::write(&key_file, "short").expect("write key file");
    let cfg = GatewayConfig::embedded_temp().no_admin_key();
    let admin_section = format!(
        "listen: \"127.0.0.1:{}\"\napi_key_file: {}",
        cfg.admin_port(),
        key_file.display()
    );
    let err = Gateway::try_start(cfg.section("admin", &admin_section))
        .err()
        .expect("a 5-character admin key must be refused");
    assert!(err.contains("admin.api_key_file"), "{err}");
}

#[test]
fn without_an_admin_key_the_management_api_refuses_every_key() {
    let gw = Gateway::start(GatewayConfig::embedded_temp().no_admin_key());
    for key in [ADMIN_KEY, ""] {
        let r = Admin::with_token(&gw.url(), key).call(
            "POST",
            "/api/v1/identities",
            Some(json!({"name": "x", "organizationId": ORG_ID})),
        );
        assert_eq!(r.status, 401, "{}", r.body);
    }
}
