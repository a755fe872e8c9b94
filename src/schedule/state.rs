//! Each job's progress, kept in the store at `_schedule/jobs/<job>.json`: the last time it
//! completed, so a restarted runner resumes after it and never runs a window twice.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::location::Location;

/// The last completed run of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobState {
    pub job: String,
    /// The cron time of the run; the next run is the job's first time after it.
    pub last_time: DateTime<Utc>,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub seconds: f64,
}

fn relative(job: &str) -> String {
    format!("_schedule/jobs/{job}.json")
}

impl JobState {
    /// The job's state in `store`, or `None` when it never completed a run there.
    pub async fn read(store: &Location, job: &str) -> Result<Option<JobState>> {
        let name = relative(job);
        let Some(bytes) = store.read(&name).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Location {
                location: store.display_at(&name),
                reason: format!(
                    "not a job state: {e}; delete it to start the job afresh at its latest time"
                ),
            })
    }

    /// Records the run: whole or not at all, so a crash leaves the previous state.
    pub async fn write(&self, store: &Location) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).expect("a job state serialises");
        store
            .write(&relative(&self.job), |file| file.write_all(&json))
            .await
    }
}
