//! A throwaway Redis Cluster per test, for gateways on `kind: redis-cluster`: three masters, or three masters with a replica each for failover tests.
//!
//! The same recipe as the store conformance suite's cluster (which the store
//! tests keep for themselves): redis-server processes with cluster mode on,
//! joined by `redis-cli --cluster create`, each on its own port and bus port,
//! persistence off. Helpers sum `INFO commandstats` over the nodes, so a test
//! counts a gateway's commands wherever the slot of its keys landed. The
//! replicated variant adds what a failover test needs: which node serves a
//! key's slot, SIGKILL of one node, and bounded waits for replication and for
//! the cluster to be whole again.

use super::process::{run_bounded, tail, Proc};
use super::redis::{resp_query, Reply};
use super::{eventually, free_port, poll_until};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const NODE_READY: Duration = Duration::from_secs(20);
const CREATE_TIMEOUT: Duration = Duration::from_secs(30);
const CLUSTER_OK: Duration = Duration::from_secs(20);

/// Three masters, every slot assigned, and with
/// [`RedisCluster::start_with_replicas`] one replica per master. Nodes are
/// numbered in start order; killed on drop.
pub struct RedisCluster {
    nodes: Vec<Proc>,
    ports: Vec<u16>,
    logs: Vec<PathBuf>,
    /// Nodes a test killed: never queried again.
    killed: Vec<bool>,
    _dir: tempfile::TempDir,
}

/// One line of `CLUSTER NODES`: one node as the asking node sees it.
#[derive(Debug, Clone)]
pub struct NodeView {
    pub id: String,
    pub port: u16,
    /// `myself`, `master`, `slave`, `fail?`, `fail`, `handshake`, ...
    pub flags: Vec<String>,
    /// The id of its master, for a replica.
    pub master_id: Option<String>,
    /// Whether the asking node's bus link to it is up.
    pub connected: bool,
    /// Slot ranges it serves (inclusive); importing/migrating marks left out.
    pub slots: Vec<(u16, u16)>,
}

impl NodeView {
    pub fn is_master(&self) -> bool {
        self.flags.iter().any(|f| f == "master")
    }

    /// Flagged `fail` or `fail?` (PFAIL) by the asking node.
    pub fn is_failing(&self) -> bool {
        self.flags.iter().any(|f| f == "fail" || f == "fail?")
    }

    pub fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot))
    }
}

impl RedisCluster {
    /// Starts the three nodes and creates the cluster; panics (with the node
    /// logs) unless every node reports `cluster_state:ok` within 20 s.
    pub fn start() -> RedisCluster {
        RedisCluster::launch(3, 0, &[])
    }

    /// Three masters and three replicas (`--cluster-replicas 1`), with
    /// `cluster-node-timeout` `node_timeout_ms` so that a killed master is
    /// declared failed and its replica promoted within a few times that.
    /// Returns once every replica is attached and in sync and every node
    /// sees all six healthy; panics with the node logs otherwise.
    ///
    /// A node timeout much under a second risks false failovers when the
    /// machine is busy (a node that misses pings for that long is voted
    /// out), so failover tests use 1-2 s.
    pub fn start_with_replicas(node_timeout_ms: u64) -> RedisCluster {
        let timeout = node_timeout_ms.to_string();
        // A replica's first full sync would otherwise wait 5 s for more
        // replicas to share the transfer with.
        let cluster = RedisCluster::launch(
            6,
            1,
            &[
                "--cluster-node-timeout",
                &timeout,
                "--repl-diskless-sync-delay",
                "0",
            ],
        );
        let mut last = String::new();
        let whole = poll_until(CLUSTER_OK, || match cluster.whole() {
            Ok(()) => true,
            Err(why) => {
                last = why;
                false
            }
        });
        assert!(
            whole,
            "the replicated cluster did not settle within {CLUSTER_OK:?}: {last}"
        );
        assert!(
            cluster.wait_replicated(CLUSTER_OK),
            "replicas did not catch up within {CLUSTER_OK:?}"
        );
        cluster
    }

    /// `n` nodes with `extra` server arguments, joined with `replicas`
    /// replicas per master; waits until every node reports `cluster_state:ok`.
    fn launch(n: usize, replicas: usize, extra: &[&str]) -> RedisCluster {
        let dir = tempfile::Builder::new()
            .prefix("tg-cluster-")
            .tempdir()
            .expect("tempdir for the cluster");
        let mut nodes = Vec::new();
        let mut ports = Vec::new();
        let mut logs = Vec::new();
        for i in 0..n {
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
                    .args(extra)
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
            killed: vec![false; nodes.len()],
            nodes,
            ports,
            logs,
            _dir: dir,
        };
        let mut create = Command::new("redis-cli");
        create.args(["--cluster", "create"]);
        create.args(cluster.addrs());
        let replicas = replicas.to_string();
        create.args(["--cluster-replicas", &replicas, "--cluster-yes"]);
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

    /// Calls of `name` on all nodes together (see [`super::Redis::command_calls`]);
    /// killed nodes count nothing.
    pub fn command_calls(&self, name: &str) -> u64 {
        self.live()
            .map(|i| super::redis::command_calls_at(&addr(self.ports[i]), name))
            .sum()
    }

    /// CONFIG RESETSTAT on every node still running.
    pub fn reset_stats(&self) {
        for i in self.live() {
            let reply = self.query(i, &["CONFIG", "RESETSTAT"]);
            assert_eq!(reply, Reply::Simple("OK".into()), "CONFIG RESETSTAT");
        }
    }

    /// Process id of node `i`.
    pub fn pid(&self, i: usize) -> u32 {
        self.nodes[i].pid()
    }

    /// Whether node `i` was killed by [`RedisCluster::kill9`].
    pub fn is_killed(&self, i: usize) -> bool {
        self.killed[i]
    }

    /// SIGKILL node `i` and reap it: a crash with no chance to reply, flush
    /// its replication stream or hand its slots over.
    pub fn kill9(&mut self, i: usize) {
        self.nodes[i].kill9();
        self.killed[i] = true;
    }

    /// The node listening on `port`, if it is one of ours.
    pub fn node_on_port(&self, port: u16) -> Option<usize> {
        self.ports.iter().position(|p| *p == port)
    }

    /// Indices of the nodes not killed.
    fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.ports.len()).filter(|i| !self.killed[*i])
    }

    /// One command to node `i`, or why it could not be asked.
    pub fn try_query(&self, i: usize, args: &[&str]) -> Result<Reply, String> {
        let a = addr(self.ports[i]);
        match resp_query(&a, args) {
            Ok(Reply::Error(e)) => Err(format!("redis {a} {args:?}: {e}")),
            Ok(reply) => Ok(reply),
            Err(e) => Err(format!("redis {a} {args:?}: {e}")),
        }
    }

    /// `CLUSTER NODES` as node `from` sees the cluster.
    pub fn nodes_view(&self, from: usize) -> Result<Vec<NodeView>, String> {
        let text = self.try_query(from, &["CLUSTER", "NODES"])?.text();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| parse_node_line(l).ok_or_else(|| format!("bad CLUSTER NODES line {l:?}")))
            .collect()
    }

    /// The hash slot of `key` (`CLUSTER KEYSLOT`, asked of a running node).
    #[track_caller]
    pub fn keyslot(&self, key: &str) -> u16 {
        let i = self.live().next().expect("a running node");
        match self.query(i, &["CLUSTER", "KEYSLOT", key]) {
            Reply::Int(n) => u16::try_from(n).expect("a slot fits in u16"),
            other => panic!("CLUSTER KEYSLOT {key}: {other:?}"),
        }
    }

    /// The node serving `slot` as master, as the first running node that
    /// answers sees it; panics when none knows one of ours.
    #[track_caller]
    pub fn master_of_slot(&self, slot: u16) -> usize {
        let mut why = String::new();
        for i in self.live() {
            match self.nodes_view(i) {
                Ok(view) => {
                    let port = view
                        .iter()
                        .find(|n| n.is_master() && n.serves(slot))
                        .map(|n| n.port);
                    if let Some(node) = port.and_then(|p| self.node_on_port(p)) {
                        return node;
                    }
                    why = format!("node {i} names no master of ours for slot {slot}");
                }
                Err(e) => why = e,
            }
        }
        panic!("no master for slot {slot}: {why}")
    }

    /// The node serving the slot of `key` as master.
    #[track_caller]
    pub fn master_of_key(&self, key: &str) -> usize {
        self.master_of_slot(self.keyslot(key))
    }

    /// The replicas of node `master`, as node `master` itself sees them.
    #[track_caller]
    pub fn replicas_of(&self, master: usize) -> Vec<usize> {
        let view = self
            .nodes_view(master)
            .unwrap_or_else(|e| panic!("replicas_of({master}): {e}"));
        let id = view
            .iter()
            .find(|n| n.flags.iter().any(|f| f == "myself"))
            .map(|n| n.id.clone())
            .expect("CLUSTER NODES has a myself line");
        view.iter()
            .filter(|n| n.master_id.as_deref() == Some(id.as_str()))
            .filter_map(|n| self.node_on_port(n.port))
            .collect()
    }

    /// Why the cluster is not yet serving every slot, if it is not: every
    /// running node must report `cluster_state:ok` and see each of the
    /// 16384 slots served by a running master. `cluster_state` alone is not
    /// enough: it stays ok while a dead master is only suspected (`fail?`).
    pub fn serving(&self) -> Result<(), String> {
        for i in self.live() {
            let info = self.try_query(i, &["CLUSTER", "INFO"])?.text();
            if !info.contains("cluster_state:ok") {
                return Err(format!("node {i}: cluster_state not ok"));
            }
            let view = self.nodes_view(i)?;
            let mut covered = 0u32;
            for n in view.iter().filter(|n| n.is_master() && !n.slots.is_empty()) {
                match self.node_on_port(n.port) {
                    Some(j) if !self.killed[j] => {}
                    _ => {
                        return Err(format!(
                            "node {i} still sees slots {:?} on killed or unknown port {}",
                            n.slots, n.port
                        ))
                    }
                }
                covered += n
                    .slots
                    .iter()
                    .map(|(a, b)| u32::from(*b) - u32::from(*a) + 1)
                    .sum::<u32>();
            }
            if covered != 16384 {
                return Err(format!("node {i} sees {covered} of 16384 slots served"));
            }
        }
        Ok(())
    }

    /// Polls [`RedisCluster::serving`] until it holds; how long that took,
    /// or the last reason it did not within `timeout`.
    pub fn wait_serving(&self, timeout: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        let mut last = String::new();
        if poll_until(timeout, || match self.serving() {
            Ok(()) => true,
            Err(why) => {
                last = why;
                false
            }
        }) {
            Ok(start.elapsed())
        } else {
            Err(last)
        }
    }

    /// Whether every running replica has a link up to a running master and
    /// has processed all of its replication stream (`slave_repl_offset`
    /// equal to the master's `master_repl_offset`), within `timeout`.
    /// Asked of the replica itself: a master learns its replicas' offsets
    /// only from their once-a-second acknowledgements.
    pub fn wait_replicated(&self, timeout: Duration) -> bool {
        poll_until(timeout, || self.replicated().is_ok())
    }

    fn replicated(&self) -> Result<(), String> {
        let field = |info: &str, name: &str| -> Option<String> {
            info.lines()
                .find_map(|l| l.trim().strip_prefix(&format!("{name}:")))
                .map(str::to_string)
        };
        for i in self.live() {
            let info = self.try_query(i, &["INFO", "replication"])?.text();
            if field(&info, "role").as_deref() != Some("slave") {
                continue;
            }
            if field(&info, "master_link_status").as_deref() != Some("up") {
                return Err(format!("replica {i}: link to its master is down"));
            }
            let master = field(&info, "master_port")
                .and_then(|p| p.parse::<u16>().ok())
                .and_then(|p| self.node_on_port(p))
                .ok_or_else(|| format!("replica {i}: master is not one of ours"))?;
            let m_info = self.try_query(master, &["INFO", "replication"])?.text();
            let m_off = field(&m_info, "master_repl_offset");
            let r_off = field(&info, "slave_repl_offset");
            if m_off.is_none() || m_off != r_off {
                return Err(format!(
                    "replica {i} at offset {r_off:?}, master {master} at {m_off:?}"
                ));
            }
        }
        Ok(())
    }

    /// Six healthy nodes in every node's view, each master with slots having
    /// a replica: what [`RedisCluster::start_with_replicas`] waits for.
    fn whole(&self) -> Result<(), String> {
        self.serving()?;
        for i in self.live() {
            let view = self.nodes_view(i)?;
            if view.len() != self.ports.len() {
                return Err(format!("node {i} knows {} nodes", view.len()));
            }
            if let Some(n) = view.iter().find(|n| n.is_failing() || !n.connected) {
                return Err(format!("node {i} sees {n:?} unhealthy"));
            }
            for m in view.iter().filter(|n| n.is_master() && !n.slots.is_empty()) {
                if !view.iter().any(|r| r.master_id.as_deref() == Some(&m.id)) {
                    return Err(format!("node {i} sees master {} without a replica", m.port));
                }
            }
        }
        Ok(())
    }
}

/// Parses one `CLUSTER NODES` line:
/// `id ip:port@bus[,host] flags master ping pong epoch link slot...`.
fn parse_node_line(line: &str) -> Option<NodeView> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 8 {
        return None;
    }
    let port = f[1]
        .split(['@', ','])
        .next()?
        .rsplit_once(':')?
        .1
        .parse()
        .ok()?;
    let slots = f[8..]
        .iter()
        .filter(|s| !s.starts_with('['))
        .map(|s| {
            let (a, b) = s.split_once('-').unwrap_or((s, s));
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(NodeView {
        id: f[0].to_string(),
        port,
        flags: f[2].split(',').map(str::to_string).collect(),
        master_id: (f[3] != "-").then(|| f[3].to_string()),
        connected: f[7] == "connected",
        slots,
    })
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
