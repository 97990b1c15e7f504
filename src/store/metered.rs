//! `MeteredStore`: any `Store` with the time and failures of each call
//! counted by operation (`tokengate_store_duration_seconds{operation}`,
//! `tokengate_store_operation_errors_total{operation}`). The operation label
//! is the trait method's name, a fixed set: never an id.

use super::{
    AuthOutcome, AuthRequest, Deletion, MembershipWrite, OwnerChange, Page, PutMode, Store,
    StoreError,
};
use crate::model::{Identity, Membership, Millis, TokenAuthConfig, TokenRecord};
use crate::token::Id;
use async_trait::async_trait;
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

/// The per-operation store metrics, registered once.
#[derive(Clone)]
pub struct StoreMetrics {
    duration: HistogramVec,
    errors: IntCounterVec,
    /// `authenticate`'s histogram, resolved once: it is on every request.
    authenticate: Histogram,
}

impl StoreMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<StoreMetrics> {
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "tokengate_store_duration_seconds",
                "Time of store calls, by operation",
            )
            // From 10 µs: a near-cache hit takes tens of microseconds.
            .buckets(vec![
                0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                0.05, 0.25, 1.0,
            ]),
            &["operation"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "tokengate_store_operation_errors_total",
                "Store calls that failed, by operation",
            ),
            &["operation"],
        )?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        let authenticate = duration.get_metric_with_label_values(&["authenticate"])?;
        // Present at 0 from the start, so an alert on its rate has a series.
        errors.get_metric_with_label_values(&["authenticate"])?;
        Ok(StoreMetrics {
            duration,
            errors,
            authenticate,
        })
    }
}

pub struct MeteredStore {
    inner: Arc<dyn Store>,
    metrics: StoreMetrics,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn Store>, metrics: StoreMetrics) -> MeteredStore {
        MeteredStore { inner, metrics }
    }

    async fn timed<T>(
        &self,
        operation: &str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = call.await;
        self.metrics
            .duration
            .with_label_values(&[operation])
            .observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            self.metrics.errors.with_label_values(&[operation]).inc();
        }
        result
    }
}

#[async_trait]
impl Store for MeteredStore {
    async fn authenticate(&self, req: &AuthRequest<'_>) -> Result<AuthOutcome, StoreError> {
        let started = Instant::now();
        let result = self.inner.authenticate(req).await;
        self.metrics
            .authenticate
            .observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            self.metrics
                .errors
                .with_label_values(&["authenticate"])
                .inc();
        }
        result
    }

    async fn create_identity(&self, identity: &Identity) -> Result<(), StoreError> {
        self.timed("create_identity", self.inner.create_identity(identity))
            .await
    }

    async fn get_identity(&self, id: Id) -> Result<Option<Identity>, StoreError> {
        self.timed("get_identity", self.inner.get_identity(id))
            .await
    }

    async fn update_identity(&self, identity: &Identity) -> Result<bool, StoreError> {
        self.timed("update_identity", self.inner.update_identity(identity))
            .await
    }

    async fn delete_identity(&self, id: Id) -> Result<Deletion, StoreError> {
        self.timed("delete_identity", self.inner.delete_identity(id))
            .await
    }

    async fn list_identities(
        &self,
        org: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> Result<Page<Identity>, StoreError> {
        self.timed(
            "list_identities",
            self.inner.list_identities(org, offset, limit),
        )
        .await
    }

    async fn put_token_auth(
        &self,
        cfg: &TokenAuthConfig,
        mode: PutMode,
    ) -> Result<bool, StoreError> {
        self.timed("put_token_auth", self.inner.put_token_auth(cfg, mode))
            .await
    }

    async fn get_token_auth(&self, identity: Id) -> Result<Option<TokenAuthConfig>, StoreError> {
        self.timed("get_token_auth", self.inner.get_token_auth(identity))
            .await
    }

    async fn remove_token_auth(&self, identity: Id) -> Result<Option<TokenAuthConfig>, StoreError> {
        self.timed("remove_token_auth", self.inner.remove_token_auth(identity))
            .await
    }

    async fn create_token(&self, token: &TokenRecord) -> Result<bool, StoreError> {
        self.timed("create_token", self.inner.create_token(token))
            .await
    }

    async fn get_token(&self, token_id: Id) -> Result<Option<TokenRecord>, StoreError> {
        self.timed("get_token", self.inner.get_token(token_id))
            .await
    }

    async fn list_tokens(
        &self,
        identity: Id,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        self.timed(
            "list_tokens",
            self.inner.list_tokens(identity, offset, limit),
        )
        .await
    }

    async fn rename_token(
        &self,
        token_id: Id,
        name: &str,
    ) -> Result<Option<TokenRecord>, StoreError> {
        self.timed("rename_token", self.inner.rename_token(token_id, name))
            .await
    }

    async fn revoke_token(&self, token_id: Id) -> Result<bool, StoreError> {
        self.timed("revoke_token", self.inner.revoke_token(token_id))
            .await
    }

    async fn set_renewed(&self, token_id: Id, at: Millis) -> Result<bool, StoreError> {
        self.timed("set_renewed", self.inner.set_renewed(token_id, at))
            .await
    }

    async fn put_membership(&self, m: &Membership) -> Result<MembershipWrite, StoreError> {
        self.timed("put_membership", self.inner.put_membership(m))
            .await
    }

    async fn get_membership(
        &self,
        project: &str,
        identity: Id,
    ) -> Result<Option<Membership>, StoreError> {
        self.timed(
            "get_membership",
            self.inner.get_membership(project, identity),
        )
        .await
    }

    async fn delete_membership(
        &self,
        project: &str,
        identity: Id,
    ) -> Result<Option<Membership>, StoreError> {
        self.timed(
            "delete_membership",
            self.inner.delete_membership(project, identity),
        )
        .await
    }

    async fn list_memberships(
        &self,
        project: &str,
        org: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> Result<Page<Membership>, StoreError> {
        self.timed(
            "list_memberships",
            self.inner.list_memberships(project, org, offset, limit),
        )
        .await
    }

    async fn project_owner(&self, project: &str) -> Result<Option<String>, StoreError> {
        self.timed("project_owner", self.inner.project_owner(project))
            .await
    }

    async fn set_project_owner(&self, project: &str, org: &str) -> Result<OwnerChange, StoreError> {
        self.timed(
            "set_project_owner",
            self.inner.set_project_owner(project, org),
        )
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.timed("ping", self.inner.ping()).await
    }

    fn now(&self) -> Millis {
        self.inner.now()
    }

    fn flush(&self) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self.inner.flush();
        self.metrics
            .duration
            .with_label_values(&["flush"])
            .observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            self.metrics.errors.with_label_values(&["flush"]).inc();
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;

    #[tokio::test]
    async fn counts_calls_and_failures_by_operation() {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("s.redb")).unwrap());
        let registry = Registry::new();
        let store = MeteredStore::new(inner, StoreMetrics::register(&registry).unwrap());
        assert_eq!(store.get_identity(Id::random()).await.unwrap(), None);
        store.ping().await.unwrap();
        store.ping().await.unwrap();
        let text = crate::metrics::render(&registry);
        assert!(
            text.contains("tokengate_store_duration_seconds_count{operation=\"get_identity\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("tokengate_store_duration_seconds_count{operation=\"ping\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("tokengate_store_operation_errors_total{operation=\"authenticate\"} 0"),
            "{text}"
        );
    }
}
