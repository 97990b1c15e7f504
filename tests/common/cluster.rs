//! A throwaway three-master Redis Cluster per test, for gateways on `kind: redis-cluster`.
//!
//! The same recipe as the store conformance suite's cluster (which the store
//! tests keep for themselves): three redis-server processes with cluster mode
//! on, joined by `redis-cli --cluster create`, each on its own port and bus
//! port, persistence off. Helpers sum `INFO commandstats` over the nodes, so a
//! test counts a gateway's commands wherever the slot of its keys landed.

use super::process::{run_bounded, tail, Proc};
use super::redis::{resp_query, Reply};
use super::{eventually, free_port, poll_until};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const NODE_READY: Duration = Duration::from_secs(20);
const CREATE_TIMEOUT: Duration = Duration::from_secs(30);
const CLUSTER_OK: Duration = Duration::from_secs(20);

/// Three masters, no replicas, every slot assigned. Killed on drop.
pub struct RedisCluster {
    nodes: Vec<Proc>,
    ports: Vec<u16>,
    logs: Vec<PathBuf>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts the three nodes and creates the cluster; panics (with the node
    /// logs) unless every node reports `cluster_state:ok` within 20 s.
    pub fn start() -> RedisCluster {
        let dir = tempfile::Builder::new()
            .prefix("tg-cluster-")
            .tempdir()
            .expect("tempdir for the cluster");
        let mut nodes = Vec::new();
        let mut ports = Vec::new();
        let mut logs = Vec::new();
        for i in 0..3 {
            // A free port can be taken by a parallel test before the node
            // binds it; then the node exits and a new pair of ports is tried.
            let mut attempt = 0;
            let (node, port, log) = loop {
                attempt += 1;
                let (port, bus) = (free_port(), free_port());
                let node_dir = dir.path().join(format!("node{i}-{attempt}"));
                std::fs::create_dir_all(&node_dir).expect("node directory");
                let log = node_dir.join("redis.log");
                let mut cmd = Command::new(
                    std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into()),
                );
                cmd.args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
                    .args(["--port", &port.to_string()])
                    .args(["--cluster-port", &bus.to_string()])
                    .args(["--cluster-enabled", "yes"])
                    .args(["--cluster-config-file", "nodes.conf"])
                    .arg("--dir")
                    .arg(&node_dir)
                    .current_dir(&node_dir);
                let mut node = Proc::spawn("redis-server (cluster)", &mut cmd, &log, &log);
                let up = poll_until(NODE_READY, || {
                    node.is_running() && resp_query(&addr(port), &["PING"]).is_ok()
                });
                if up {
                    break (node, port, log);
                }
                node.kill9();
                assert!(
                    attempt < 3,
                    "cluster node {i} did not start:\n{}",
                    tail(&super::process::read_lossy(&log), 30)
                );
            };
            nodes.push(node);
            ports.push(port);
            logs.push(log);
        }
        let cluster = RedisCluster {
            nodes,
            ports,
            logs,
            _dir: dir,
        };
        let mut create = Command::new("redis-cli");
        create.args(["--cluster", "create"]);
        create.args(cluster.addrs());
        create.args(["--cluster-replicas", "0", "--cluster-yes"]);
        let (code, out) = run_bounded("redis-cli --cluster create", &mut create, CREATE_TIMEOUT);
        assert_eq!(code, 0, "cluster create failed: {out}");
        for a in cluster.addrs() {
            eventually(CLUSTER_OK, || {
                resp_query(&a, &["CLUSTER", "INFO"])
                    .map(|r| r.text().contains("cluster_state:ok"))
                    .unwrap_or(false)
            });
        }
        cluster
    }

    /// "127.0.0.1:N" of every node.
    pub fn addrs(&self) -> Vec<String> {
        self.ports.iter().map(|p| addr(*p)).collect()
    }

    /// "redis://127.0.0.1:N" of every node: the seed list for `store.nodes`.
    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// One command to node `i`; panics if it cannot be reached.
    pub fn query(&self, i: usize, args: &[&str]) -> Reply {
        let a = addr(self.ports[i]);
        resp_query(&a, args).unwrap_or_else(|e| panic!("redis {a} {args:?}: {e}"))
    }

    /// Calls of `name` on all nodes together (see [`super::Redis::command_calls`]).
    pub fn command_calls(&self, name: &str) -> u64 {
        self.addrs()
            .iter()
            .map(|a| super::redis::command_calls_at(a, name))
            .sum()
    }

    /// CONFIG RESETSTAT on every node.
    pub fn reset_stats(&self) {
        for i in 0..self.ports.len() {
            let reply = self.query(i, &["CONFIG", "RESETSTAT"]);
            assert_eq!(reply, Reply::Simple("OK".into()), "CONFIG RESETSTAT");
        }
    }
}

fn addr(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (port, log) in self.ports.iter().zip(&self.logs) {
                eprintln!(
                    "--- redis-server (cluster) 127.0.0.1:{port} log (tail) ---\n{}",
                    tail(&super::process::read_lossy(log), 15)
                );
            }
        }
        for node in &mut self.nodes {
            node.kill9();
        }
    }
}
