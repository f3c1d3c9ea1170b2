//! The etcd connection: options (endpoints, TLS, user/password), and every
//! request counted and timed for the metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, GetOptions, GetResponse, KeyValue, Txn, TxnResponse};

use crate::error::{AgentError, Result};
use crate::metrics::{Metrics, OpLabel};

#[derive(Debug, Clone, Default)]
pub struct EtcdOptions {
    pub endpoints: Vec<String>,
    pub ca: Option<std::path::PathBuf>,
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub connect_timeout: Duration,
}

impl EtcdOptions {
    fn connect_options(&self) -> Result<ConnectOptions> {
        let mut o = ConnectOptions::new()
            .with_connect_timeout(self.connect_timeout)
            .with_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3));
        if let Some(user) = &self.user {
            let pw = self.password.clone().ok_or_else(|| {
                AgentError::invalid("--etcd-password", "is required with --etcd-user")
            })?;
            o = o.with_user(user.clone(), pw);
        }
        if self.ca.is_some() || self.cert.is_some() {
            let read = |p: &std::path::Path, flag: &str| {
                std::fs::read(p).map_err(|e| {
                    AgentError::invalid(flag, format!("cannot read {}: {e}", p.display()))
                })
            };
            let mut tls = etcd_client::TlsOptions::new();
            if let Some(ca) = &self.ca {
                tls =
                    tls.ca_certificate(etcd_client::Certificate::from_pem(read(ca, "--etcd-ca")?));
            }
            match (&self.cert, &self.key) {
                (Some(c), Some(k)) => {
                    tls = tls.identity(etcd_client::Identity::from_pem(
                        read(c, "--etcd-cert")?,
                        read(k, "--etcd-key")?,
                    ))
                }
                (None, None) => {}
                _ => {
                    return Err(AgentError::invalid(
                        "--etcd-cert",
                        "--etcd-cert and --etcd-key go together",
                    ))
                }
            }
            o = o.with_tls(tls);
        }
        Ok(o)
    }
}

/// A cheap-to-clone handle on the etcd client with instrumented requests.
#[derive(Clone)]
pub struct Etcd {
    client: Client,
    metrics: Arc<Metrics>,
}

impl Etcd {
    /// Connects and proves the cluster answers (a status call); a clear error
    /// within the connect timeout otherwise.
    pub async fn connect(opts: &EtcdOptions, metrics: Arc<Metrics>) -> Result<Etcd> {
        if opts.endpoints.is_empty() {
            return Err(AgentError::invalid(
                "--etcd",
                "at least one URL is required (e.g. http://198.18.0.1:2379)",
            ));
        }
        for e in &opts.endpoints {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(AgentError::invalid(
                    "--etcd",
                    format!("{e:?} is not an http:// or https:// URL"),
                ));
            }
        }
        if opts.user.is_some() {
            for e in opts.endpoints.iter().filter(|e| e.starts_with("http://")) {
                tracing::warn!("--etcd {e}: the etcd password goes over plain http:// unencrypted; use https:// (with --etcd-ca)");
            }
        }
        let unreachable = |detail: String| AgentError::Unreachable {
            endpoints: opts.endpoints.join(","),
            seconds: opts.connect_timeout.as_secs().max(1),
            detail,
        };
        let connect = Client::connect(&opts.endpoints, Some(opts.connect_options()?));
        let mut client = tokio::time::timeout(opts.connect_timeout, connect)
            .await
            .map_err(|_| unreachable("connection timed out".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        tokio::time::timeout(opts.connect_timeout, client.status())
            .await
            .map_err(|_| unreachable("no answer to a status request".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(Etcd { client, metrics })
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Runs one request, counting it (and its failure) and timing it.
    pub async fn call<T, F>(&self, op: &'static str, f: impl FnOnce(Client) -> F) -> Result<T>
    where
        F: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let label = OpLabel { op: op.to_string() };
        self.metrics.etcd_requests.get_or_create(&label).inc();
        let start = Instant::now();
        let out = f(self.client.clone()).await;
        self.metrics.etcd_latency.observe(start.elapsed().as_secs_f64());
        out.map_err(|source| {
            self.metrics.etcd_errors.get_or_create(&label).inc();
            AgentError::Etcd { op, source }
        })
    }

    pub async fn get_prefix(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64)> {
        let p = prefix.to_string();
        let resp: GetResponse =
            self.call("get", |mut c| async move {
                c.get(p, Some(GetOptions::new().with_prefix())).await
            })
            .await?;
        let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        Ok((resp.kvs().to_vec(), rev))
    }

    pub async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let k = key.to_string();
        let resp: GetResponse =
            self.call("get", |mut c| async move { c.get(k, None).await }).await?;
        Ok(resp.kvs().first().cloned())
    }

    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        self.call("txn", |mut c| async move { c.txn(txn).await }).await
    }
}
