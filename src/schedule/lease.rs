//! The lease: one runner at a time per store. Claims are numbered objects under
//! `<store>/_schedule/lease/`, each created only if absent, so two runners never both win.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::location::Location;

/// What a claim object says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub owner: String,
    pub expires_at: DateTime<Utc>,
    /// Given up before its expiry: anyone may claim next.
    pub released: bool,
}

/// A held lease, renewed in the background every third of its duration until released.
#[derive(Debug)]
pub struct Lease {
    held: Arc<Mutex<Held>>,
    lost: Arc<AtomicBool>,
    renewal: JoinHandle<()>,
}

#[derive(Debug)]
struct Held {
    dir: Location,
    owner: String,
    generation: u64,
    duration: Duration,
}

/// A runner's name in claims: host, process and a random tag.
pub fn owner() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!(
        "{host}/{}/{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

fn claim_name(generation: u64) -> String {
    format!("{generation:020}.json")
}

/// The newest claim under `dir`, with its generation.
async fn newest(dir: &Location) -> Result<Option<(u64, Claim)>> {
    let objects = dir.list().await?;
    let Some((generation, path)) = objects
        .iter()
        .filter_map(|meta| {
            let name = meta.location.filename()?;
            let generation = name.strip_suffix(".json")?.parse::<u64>().ok()?;
            Some((generation, meta.location.clone()))
        })
        .max_by_key(|(generation, _)| *generation)
    else {
        return Ok(None);
    };
    let Some(bytes) = dir.get(&path).await? else {
        // Cleaned up between the listing and the read: a newer claim exists.
        return Box::pin(newest(dir)).await;
    };
    let claim = serde_json::from_slice(&bytes).map_err(|e| Error::Location {
        location: dir.display(&path),
        reason: format!("not a lease claim: {e}"),
    })?;
    Ok(Some((generation, claim)))
}

/// Creates claim `generation`; `false` when another runner created it first.
async fn create(dir: &Location, generation: u64, claim: &Claim) -> Result<bool> {
    let bytes = serde_json::to_vec_pretty(claim).expect("a claim serialises");
    dir.create(&claim_name(generation), bytes).await
}

impl Lease {
    /// Claims the store for `owner` for `duration`, or says who holds it.
    pub async fn acquire(store: &Location, owner: &str, duration: Duration) -> Result<Lease> {
        let dir = store.join("_schedule/lease");
        let current = newest(&dir).await?;
        let now = Utc::now();
        let generation = match &current {
            Some((_, claim))
                if !claim.released && claim.expires_at > now && claim.owner != owner =>
            {
                return Err(Error::LeaseHeld {
                    store: store.as_str().to_string(),
                    owner: claim.owner.clone(),
                    until: claim.expires_at,
                });
            }
            Some((generation, _)) => generation + 1,
            None => 1,
        };
        let claim = Claim {
            owner: owner.to_string(),
            expires_at: now + duration,
            released: false,
        };
        if !create(&dir, generation, &claim).await? {
            let Some((_, winner)) = newest(&dir).await? else {
                return Err(Error::Location {
                    location: dir.as_str().to_string(),
                    reason: format!(
                        "claim {} exists, yet no claim could be read back: is something \
                         deleting the lease's objects?",
                        claim_name(generation)
                    ),
                });
            };
            return Err(Error::LeaseHeld {
                store: store.as_str().to_string(),
                owner: winner.owner,
                until: winner.expires_at,
            });
        }
        for meta in dir.list().await? {
            let older = meta
                .location
                .filename()
                .and_then(|n| n.strip_suffix(".json")?.parse::<u64>().ok())
                .is_some_and(|g| g < generation);
            if older {
                dir.delete(&meta.location).await?;
            }
        }
        let held = Arc::new(Mutex::new(Held {
            dir,
            owner: owner.to_string(),
            generation,
            duration,
        }));
        let lost = Arc::new(AtomicBool::new(false));
        let renewal = tokio::spawn(renew_forever(held.clone(), lost.clone()));
        Ok(Lease {
            held,
            lost,
            renewal,
        })
    }

    /// An error unless the lease is still held: call before committing what ran under it.
    pub async fn check(&self) -> Result<()> {
        let held = self.held.lock().await;
        if self.lost.load(Ordering::SeqCst) {
            return Err(Error::LeaseLost {
                owner: held.owner.clone(),
            });
        }
        match newest(&held.dir).await? {
            Some((generation, claim))
                if generation == held.generation && claim.owner == held.owner =>
            {
                Ok(())
            }
            _ => {
                self.lost.store(true, Ordering::SeqCst);
                Err(Error::LeaseLost {
                    owner: held.owner.clone(),
                })
            }
        }
    }

    /// Gives the lease up now, so the next runner need not wait for it to expire.
    pub async fn release(self) -> Result<()> {
        // Under the lock no renewal is between its new claim and its bookkeeping: stopped
        // there, it would leave a claim that this release does not see.
        let mut held = self.held.lock().await;
        self.renewal.abort();
        if self.lost.load(Ordering::SeqCst) {
            return Ok(());
        }
        held.advance(Utc::now(), true).await?;
        Ok(())
    }
}

impl Held {
    /// Puts a new claim of this owner after the current one and drops the current one;
    /// `false` when another runner's claim took that place first.
    async fn advance(&mut self, expires_at: DateTime<Utc>, released: bool) -> Result<bool> {
        let claim = Claim {
            owner: self.owner.clone(),
            expires_at,
            released,
        };
        let next = self.generation + 1;
        if !create(&self.dir, next, &claim).await? {
            return Ok(false);
        }
        self.generation = next;
        let previous = self.dir.path(&claim_name(next - 1));
        if let Err(e) = self.dir.delete(&previous).await {
            // Harmless: the next claim of the store cleans it up.
            tracing::warn!("lease: cannot delete an old claim: {e}");
        }
        Ok(true)
    }
}

/// Extends the claim by a new generation every third of its duration; stops once another
/// runner's claim got in first.
async fn renew_forever(held: Arc<Mutex<Held>>, lost: Arc<AtomicBool>) {
    loop {
        let period = held.lock().await.duration / 3;
        tokio::time::sleep(period).await;
        let mut held = held.lock().await;
        let expires_at = Utc::now() + held.duration;
        match crate::failpoint::unnumbered(held.advance(expires_at, false)).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!(
                    owner = %held.owner,
                    "lease lost: another runner claimed the store; stopping before the next commit"
                );
                lost.store(true, Ordering::SeqCst);
                return;
            }
            // A store that is away now may answer the next time; the claim still runs.
            Err(e) => tracing::warn!("lease: cannot renew: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::S3Options;

    fn store(dir: &tempfile::TempDir) -> Location {
        Location::parse(dir.path().to_str().unwrap(), &S3Options::default()).unwrap()
    }

    #[tokio::test]
    async fn one_runner_at_a_time_until_release() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let first = Lease::acquire(&store, "a", Duration::from_secs(60))
            .await
            .unwrap();
        let error = Lease::acquire(&store, "b", Duration::from_secs(60))
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("held by a until"), "{error}");
        first.check().await.unwrap();
        first.release().await.unwrap();
        let second = Lease::acquire(&store, "b", Duration::from_secs(60))
            .await
            .unwrap();
        second.check().await.unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path().join("_schedule/lease"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec![claim_name(3)], "older claims are cleaned up");
    }

    #[tokio::test]
    async fn an_expired_claim_is_taken_over_and_its_holder_finds_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let stale = Lease::acquire(&store, "a", Duration::from_secs(1))
            .await
            .unwrap();
        stale.renewal.abort();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let fresh = Lease::acquire(&store, "b", Duration::from_secs(60))
            .await
            .unwrap();
        let error = stale.check().await.unwrap_err().to_string();
        assert!(error.contains("lost"), "{error}");
        fresh.check().await.unwrap();
    }

    #[tokio::test]
    async fn renewal_keeps_a_short_lease() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let lease = Lease::acquire(&store, "a", Duration::from_millis(1500))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        lease.check().await.unwrap();
        assert!(
            Lease::acquire(&store, "b", Duration::from_secs(1))
                .await
                .is_err()
        );
    }
}
