//! The experiment lock: a `coordination.k8s.io/v1` Lease. One run at a time per cluster; a holder that stops
//! renewing loses it after `leaseDurationSeconds`, and a take-over is a replace at the resourceVersion that was read,
//! so of two runs taking over at once only one wins.
//!
//! Expiry follows client-go's leader election (`tools/leaderelection/leaderelection.go`, `tryAcquireOrRenew`): the
//! record's `renewTime` is the holder's clock and is never compared with ours. A record counts as expired only once
//! this process has seen it unchanged for its `leaseDurationSeconds` by its own clock (`observedTime`), so a first
//! look at another holder's Lease always finds it held, and taking over a dead holder's lock takes one lease
//! duration of watching ([`KubeCluster::acquire_lease_waiting`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::{ClusterError, api_code};
use crate::kube_cluster::KubeCluster;

/// Who holds the experiment lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseInfo {
    /// The holder (run id and host); empty when released.
    pub holder: String,
    /// When the holder took it (RFC 3339).
    pub since: Option<String>,
    /// When it was last renewed (RFC 3339).
    pub renewed: Option<String>,
    /// When it lapses unless renewed, by the holder's clock (RFC 3339): for people to read. Taking it over never
    /// trusts it (see the module documentation).
    pub expires: Option<String>,
    /// Whether that time has passed by this machine's clock: a hint that the holder may be gone, not leave to take
    /// the lock.
    pub expired: bool,
    /// How many times it changed hands.
    pub transitions: i32,
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn micro_time(at: OffsetDateTime) -> MicroTime {
    let micros = (at.unix_timestamp_nanos() / 1000) as i64;
    MicroTime(Timestamp::from_microsecond(micros).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn to_offset(at: &MicroTime) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(at.0.as_nanosecond()).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.replace_nanosecond(0).unwrap_or(at).format(&Rfc3339).unwrap_or_default()
}

fn holder_of(spec: &LeaseSpec) -> &str {
    spec.holder_identity.as_deref().unwrap_or("")
}

/// When the lease expires: last renewal (or acquisition) plus its duration; `None` when it never was renewed.
fn expiry(spec: &LeaseSpec) -> Option<OffsetDateTime> {
    let last = spec.renew_time.as_ref().or(spec.acquire_time.as_ref())?;
    let seconds = i64::from(spec.lease_duration_seconds.unwrap_or(0));
    Some(to_offset(last) + time::Duration::seconds(seconds))
}

fn info_of(spec: &LeaseSpec, at: OffsetDateTime) -> LeaseInfo {
    let expires = expiry(spec);
    LeaseInfo {
        holder: holder_of(spec).to_owned(),
        since: spec.acquire_time.as_ref().map(|t| rfc3339(to_offset(t))),
        renewed: spec.renew_time.as_ref().map(|t| rfc3339(to_offset(t))),
        expires: expires.map(rfc3339),
        expired: expires.is_none_or(|e| e <= at),
        transitions: spec.lease_transitions.unwrap_or(0),
    }
}

impl KubeCluster {
    fn lease_api(&self) -> Api<Lease> {
        Api::namespaced(self.client.clone(), &self.names.namespace)
    }

    fn lease_ref(&self) -> String {
        format!("{}/{}", self.names.namespace, self.names.lease_name)
    }

    fn lease_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }

    fn lock_held(&self, spec: &LeaseSpec) -> ClusterError {
        let info = info_of(spec, now());
        ClusterError::LockHeld {
            lease: self.lease_ref(),
            holder: info.holder,
            since: info.since.unwrap_or_else(|| "an unknown time".into()),
            expires: info.expires.unwrap_or_else(|| "an unknown time".into()),
        }
    }

    pub(crate) async fn get_lease(&self) -> Result<Option<Lease>, ClusterError> {
        self.lease_api().get_opt(&self.names.lease_name).await.map_err(|source| {
            ClusterError::api(format!("read the experiment lock (Lease {})", self.lease_ref()), source)
        })
    }

    /// Who holds the experiment lock, if the Lease exists.
    pub async fn lease_info(&self) -> Result<Option<LeaseInfo>, ClusterError> {
        Ok(self.get_lease().await?.map(|lease| info_of(&lease.spec.unwrap_or_default(), now())))
    }

    /// Whether another holder's Lease record has lapsed by this process' own observation: unchanged (holder,
    /// renewal, resourceVersion) for its `leaseDurationSeconds` since this process first saw it.
    fn observed_expired(&self, lease: &Lease, spec: &LeaseSpec) -> bool {
        let key = format!(
            "{}|{:?}|{}",
            holder_of(spec),
            spec.renew_time.as_ref().map(|t| t.0.as_microsecond()),
            lease.metadata.resource_version.as_deref().unwrap_or("")
        );
        let seconds = u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0);
        let mut observed = self.observed_lease.lock().unwrap_or_else(|e| e.into_inner());
        match observed.as_ref() {
            Some((seen, at)) if *seen == key => at.elapsed() >= Duration::from_secs(seconds),
            _ => {
                *observed = Some((key, Instant::now()));
                false
            }
        }
    }

    /// Like [`KubeCluster::acquire_lease`], but a Lease held by a holder that does not renew it is watched until it
    /// lapses by this machine's clock (at most its `leaseDurationSeconds` and a poll), then taken over; one that is
    /// renewed meanwhile is held. `progress` hears what is waited for.
    pub async fn acquire_lease_waiting(
        &self,
        holder: &str,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<(), ClusterError> {
        let mut first_seen: Option<String> = None;
        loop {
            match self.acquire_lease(holder).await {
                Err(ClusterError::LockHeld { lease, holder: other, since, expires }) => {
                    let current = self.observed_lease.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    let key = current.map(|(key, _)| key).unwrap_or_default();
                    match &first_seen {
                        None => first_seen = Some(key),
                        // Renewed (or changed hands) while watched: its holder lives.
                        Some(seen) if *seen != key => {
                            return Err(ClusterError::LockHeld { lease, holder: other, since, expires });
                        }
                        Some(_) => {}
                    }
                    let seconds = self.get_lease().await?.and_then(|l| l.spec).and_then(|s| s.lease_duration_seconds);
                    progress(&format!(
                        "the experiment lock is held by {other}; taking it over if it is not renewed within {}s \
                         (only time this machine observes counts)",
                        seconds.unwrap_or(0)
                    ));
                    tokio::time::sleep(self.poll_interval).await;
                }
                other => return other,
            }
        }
    }

    /// Takes the experiment lock for `holder`: creates the Lease when there is none; takes it over when it is
    /// released, already `holder`'s, or lapsed by this process' own observation (see the module documentation);
    /// else fails with [`ClusterError::LockHeld`].
    pub async fn acquire_lease(&self, holder: &str) -> Result<(), ClusterError> {
        // Two attempts: a lost race (create or replace conflict) is re-read once and reported as held.
        for attempt in 0..2 {
            let at = now();
            let Some(lease) = self.get_lease().await? else {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.names.lease_name.clone()),
                        labels: Some(BTreeMap::from([(
                            "app.kubernetes.io/managed-by".to_owned(),
                            "greenflow".to_owned(),
                        )])),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(holder.to_owned()),
                        lease_duration_seconds: Some(self.lease_seconds()),
                        acquire_time: Some(micro_time(at)),
                        renew_time: Some(micro_time(at)),
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                };
                match self.lease_api().create(&PostParams::default(), &lease).await {
                    Ok(_) => return Ok(()),
                    Err(err) if api_code(&err) == Some(409) && attempt == 0 => continue,
                    Err(source) => {
                        return Err(ClusterError::api(
                            format!("create the experiment lock (Lease {})", self.lease_ref()),
                            source,
                        ));
                    }
                }
            };
            let mut spec = lease.spec.clone().unwrap_or_default();
            let current = holder_of(&spec).to_owned();
            let free = current.is_empty() || (current != holder && self.observed_expired(&lease, &spec));
            if current != holder && !free {
                return Err(self.lock_held(&spec));
            }
            if current != holder {
                tracing::info!(previous = %current, "taking over the expired experiment lock");
                spec.acquire_time = Some(micro_time(at));
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            spec.holder_identity = Some(holder.to_owned());
            spec.renew_time = Some(micro_time(at));
            spec.lease_duration_seconds = Some(self.lease_seconds());
            // The read resourceVersion stays in the metadata: the replace fails if anyone changed the Lease since.
            let updated = Lease { metadata: lease.metadata, spec: Some(spec) };
            match self.lease_api().replace(&self.names.lease_name, &PostParams::default(), &updated).await {
                Ok(_) => return Ok(()),
                Err(err) if api_code(&err) == Some(409) && attempt == 0 => continue,
                Err(err) if api_code(&err) == Some(409) => {
                    let spec = self.get_lease().await?.and_then(|l| l.spec).unwrap_or_default();
                    return Err(self.lock_held(&spec));
                }
                Err(source) => {
                    return Err(ClusterError::api(
                        format!("take the experiment lock (Lease {})", self.lease_ref()),
                        source,
                    ));
                }
            }
        }
        let spec = self.get_lease().await?.and_then(|l| l.spec).unwrap_or_default();
        Err(self.lock_held(&spec))
    }

    /// Renews `holder`'s lock (sets `renewTime`). [`ClusterError::LockLost`] when someone else took it over; a
    /// vanished Lease is taken again.
    pub async fn renew_lease(&self, holder: &str) -> Result<(), ClusterError> {
        let Some(lease) = self.get_lease().await? else {
            tracing::warn!(lease = %self.lease_ref(), "the experiment lock vanished; taking it again");
            return self.acquire_lease(holder).await;
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        let current = holder_of(&spec).to_owned();
        if current != holder {
            if current.is_empty() {
                return self.acquire_lease(holder).await;
            }
            return Err(ClusterError::LockLost { lease: self.lease_ref(), holder: current });
        }
        spec.renew_time = Some(micro_time(now()));
        let updated = Lease { metadata: lease.metadata, spec: Some(spec) };
        match self.lease_api().replace(&self.names.lease_name, &PostParams::default(), &updated).await {
            Ok(_) => Ok(()),
            // Changed between read and write: read again and decide once more.
            Err(err) if api_code(&err) == Some(409) => Box::pin(self.acquire_lease(holder)).await,
            Err(source) => {
                Err(ClusterError::api(format!("renew the experiment lock (Lease {})", self.lease_ref()), source))
            }
        }
    }

    /// Releases `holder`'s lock by deleting the Lease (at the resourceVersion read, so a Lease someone else took
    /// meanwhile is left alone). Not an error when the Lease is gone or held by someone else.
    pub async fn release_lease(&self, holder: &str) -> Result<(), ClusterError> {
        let Some(lease) = self.get_lease().await? else { return Ok(()) };
        let current = lease.spec.as_ref().map(holder_of).unwrap_or("").to_owned();
        if current != holder {
            if !current.is_empty() {
                tracing::warn!(%current, "the experiment lock is held by someone else; leaving it");
            }
            return Ok(());
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: lease.metadata.resource_version.clone(),
                uid: lease.metadata.uid.clone(),
            }),
            ..Default::default()
        };
        match self.lease_api().delete(&self.names.lease_name, &params).await {
            Ok(_) => Ok(()),
            Err(err) if matches!(api_code(&err), Some(404 | 409)) => Ok(()),
            Err(source) => {
                Err(ClusterError::api(format!("release the experiment lock (Lease {})", self.lease_ref()), source))
            }
        }
    }

    /// Deletes the Lease whoever holds it (for `cluster uninstall`). Not an error when it is gone.
    pub async fn delete_lease(&self) -> Result<bool, ClusterError> {
        match self.lease_api().delete(&self.names.lease_name, &DeleteParams::default()).await {
            Ok(_) => Ok(true),
            Err(err) if api_code(&err) == Some(404) => Ok(false),
            Err(source) => {
                Err(ClusterError::api(format!("delete the experiment lock (Lease {})", self.lease_ref()), source))
            }
        }
    }
}
