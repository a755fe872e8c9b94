//! Where iodrift reads and writes: a local directory or an `s3://bucket/prefix`, as an object
//! store and a root in it. Every path flag takes either; a write lands whole or not at all.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::object_store::aws::AmazonS3Builder;
use datafusion::object_store::local::LocalFileSystem;
use datafusion::object_store::path::Path;
use datafusion::object_store::{
    BackoffConfig, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig,
};
use futures::TryStreamExt;

use crate::aws_profile::Profile;
use crate::error::{Error, Result};
use crate::output::write_atomically;

/// How `s3://` locations reach their server, beyond what the standard AWS environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
/// `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, web identity, container and instance credentials) and the
/// profile of `AWS_PROFILE` in `~/.aws/` say.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// An S3-compatible server (MinIO, moto, Ceph ...) instead of AWS; `http://` allows
    /// plain HTTP.
    pub endpoint: Option<String>,
}

/// A local directory or an S3 prefix.
#[derive(Debug, Clone)]
pub struct Location {
    text: String,
    url: ObjectStoreUrl,
    root: Path,
    objects: Arc<dyn ObjectStore>,
    /// The directory, when the location is local.
    local: Option<PathBuf>,
    /// How it was told to reach S3: every other bucket a session resolves on demand is reached
    /// the same way.
    s3: S3Options,
}

/// Requests that fail for a transient reason (connection refused or reset, timeouts, 5xx, 429)
/// are retried this way; a server that stays away is an error within about half a minute.
fn retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: 5,
        retry_timeout: Duration::from_secs(30),
    }
}

impl Location {
    /// Parses a local path or `s3://bucket[/prefix]`. Nothing is contacted yet.
    pub fn parse(text: &str, s3: &S3Options) -> Result<Location> {
        let fail = |reason: String| Error::Location {
            location: text.to_string(),
            reason,
        };
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(fail("no bucket: expected s3://bucket/prefix".into()));
            }
            let root = Path::parse(prefix.trim_matches('/'))
                .map_err(|e| fail(format!("bad prefix: {e}")))?;
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retry());
            // The environment's own variables win over the profile's, as in the AWS CLI.
            let profile = Profile::from_environment()?.unwrap_or_default();
            let unset = |name: &str| std::env::var_os(name).is_none();
            if unset("AWS_ACCESS_KEY_ID")
                && let Some((key, secret, token)) = profile.keys()?
            {
                builder = builder
                    .with_access_key_id(key)
                    .with_secret_access_key(secret);
                if let Some(token) = token {
                    builder = builder.with_token(token);
                }
            }
            if unset("AWS_REGION")
                && unset("AWS_DEFAULT_REGION")
                && let Some(region) = &profile.region
            {
                builder = builder.with_region(region);
            }
            let endpoint = s3.endpoint.clone().or_else(|| {
                ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
                    .into_iter()
                    .find_map(|name| std::env::var(name).ok())
                    .or(profile.endpoint_url.clone())
            });
            if let Some(endpoint) = endpoint {
                if endpoint.starts_with("http://") {
                    builder = builder.with_allow_http(true);
                }
                builder = builder.with_endpoint(endpoint);
            }
            let objects = builder
                .build()
                .map_err(|e| fail(format!("cannot configure S3: {e}")))?;
            let url = ObjectStoreUrl::parse(format!("s3://{bucket}"))
                .map_err(|e| fail(format!("bad bucket name: {e}")))?;
            return Ok(Location {
                text: text.to_string(),
                url,
                root,
                objects: Arc::new(objects),
                local: None,
                s3: s3.clone(),
            });
        }
        if text.contains("://") {
            return Err(fail(
                "unsupported scheme: give a local path or s3://bucket/prefix".into(),
            ));
        }
        let absolute =
            std::path::absolute(text).map_err(|e| fail(format!("cannot resolve: {e}")))?;
        // Symbolic links resolve where they exist, as object_store's local paths need.
        let absolute = std::fs::canonicalize(&absolute).unwrap_or(absolute);
        let root = Path::from_absolute_path(&absolute).map_err(|e| fail(e.to_string()))?;
        Ok(Location {
            text: text.to_string(),
            url: ObjectStoreUrl::local_filesystem(),
            root,
            objects: Arc::new(LocalFileSystem::new()),
            local: Some(absolute),
            s3: s3.clone(),
        })
    }

    /// The location as the user gave it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The location as another process reads it: the absolute directory, or the S3 URL.
    pub fn absolute(&self) -> String {
        match &self.local {
            Some(dir) => dir.display().to_string(),
            None => self.text.clone(),
        }
    }

    /// The directory, when the location is local.
    /// The S3 settings the location was parsed with.
    pub fn s3_options(&self) -> &S3Options {
        &self.s3
    }

    pub fn local(&self) -> Option<&std::path::Path> {
        self.local.as_deref()
    }

    pub fn objects(&self) -> &Arc<dyn ObjectStore> {
        &self.objects
    }

    /// The URL DataFusion resolves this location's object store by.
    pub fn url(&self) -> &ObjectStoreUrl {
        &self.url
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The object at `relative` (a `/`-separated path below the root).
    pub fn path(&self, relative: &str) -> Path {
        self.root
            .parts()
            .chain(Path::from(relative).parts())
            .collect()
    }

    /// The location `relative` below this one.
    pub fn join(&self, relative: &str) -> Location {
        let text = format!("{}/{relative}", self.text.trim_end_matches('/'));
        Location {
            text,
            url: self.url.clone(),
            root: self.path(relative),
            objects: self.objects.clone(),
            local: self.local.as_ref().map(|dir| dir.join(relative)),
            s3: self.s3.clone(),
        }
    }

    /// The location whose last segment carries `suffix` too: `store` → `store.labels.json`.
    pub fn with_suffix(&self, suffix: &str) -> Location {
        let mut parts: Vec<_> = self.root.parts().collect();
        let last = match parts.pop() {
            Some(part) => format!("{}{suffix}", part.as_ref()),
            None => suffix.trim_start_matches('.').to_string(),
        };
        parts.push(last.as_str().into());
        let text = if self.root.as_ref().is_empty() {
            format!("{}/{last}", self.text.trim_end_matches('/'))
        } else {
            format!("{}{suffix}", self.text.trim_end_matches('/'))
        };
        Location {
            text,
            url: self.url.clone(),
            root: parts.into_iter().collect(),
            objects: self.objects.clone(),
            local: self
                .local
                .as_ref()
                .map(|dir| PathBuf::from(format!("{}{suffix}", dir.display()))),
            s3: self.s3.clone(),
        }
    }

    /// An object's path in the form a user recognises: a local file path or an `s3://` URL.
    pub fn display(&self, path: &Path) -> String {
        match &self.local {
            Some(_) => format!("/{path}"),
            None => format!("{}{path}", self.url.as_str()),
        }
    }

    /// The object at `relative` in the form a user recognises.
    pub fn display_at(&self, relative: &str) -> String {
        self.display(&self.path(relative))
    }

    fn error(&self, path: &Path, action: &str, error: impl std::fmt::Display) -> Error {
        Error::Location {
            location: self.display(path),
            reason: format!("cannot {action}: {error}"),
        }
    }

    /// The object at `relative`, or `None` when there is none.
    pub async fn read(&self, relative: &str) -> Result<Option<Bytes>> {
        self.get(&self.path(relative)).await
    }

    /// The object at `path` (of this location's object store), or `None` when there is none.
    pub async fn get(&self, path: &Path) -> Result<Option<Bytes>> {
        let result = match self.objects.get(path).await {
            Ok(result) => result.bytes().await,
            Err(e) => Err(e),
        };
        match result {
            Ok(bytes) => Ok(Some(bytes)),
            Err(datafusion::object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(path, "read", e)),
        }
    }

    /// Writes the object at `relative` from what `write` produces: a local file goes to a
    /// temporary name and is renamed into place, an S3 object is one PUT of the whole. Either
    /// way readers never see part of it, and nothing is left when `write` fails.
    pub async fn write(
        &self,
        relative: &str,
        write: impl FnOnce(&mut (dyn Write + Send)) -> std::io::Result<()>,
    ) -> Result<()> {
        if let Some(dir) = &self.local {
            let file = if relative.is_empty() {
                dir.clone()
            } else {
                dir.join(relative)
            };
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).map_err(Error::io(parent))?;
            }
            return write_atomically(&file, |f| write(f));
        }
        let mut buffer = Vec::new();
        let path = self.path(relative);
        write(&mut buffer).map_err(|e| self.error(&path, "encode", e))?;
        crate::failpoint::point();
        self.objects
            .put(&path, PutPayload::from(buffer))
            .await
            .map_err(|e| self.error(&path, "write", e))?;
        crate::failpoint::point();
        Ok(())
    }

    /// Creates the object at `relative` from `bytes` unless it exists: `false` when it did.
    /// Of two runners creating the same object, exactly one gets `true`.
    pub async fn create(&self, relative: &str, bytes: Vec<u8>) -> Result<bool> {
        let path = self.path(relative);
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        crate::failpoint::point();
        let created = self
            .objects
            .put_opts(&path, PutPayload::from(bytes), options)
            .await;
        crate::failpoint::point();
        match created {
            Ok(_) => Ok(true),
            Err(datafusion::object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.error(&path, "create", e)),
        }
    }

    /// Deletes the object at `path`; one that is already gone is no error.
    pub async fn delete(&self, path: &Path) -> Result<()> {
        crate::failpoint::point();
        let deleted = self.objects.delete(path).await;
        crate::failpoint::point();
        match deleted {
            Ok(()) | Err(datafusion::object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(path, "delete", e)),
        }
    }

    /// Every object below the location, in key order.
    pub async fn list(&self) -> Result<Vec<ObjectMeta>> {
        let mut objects: Vec<ObjectMeta> = self
            .objects
            .list(Some(&self.root))
            .try_collect()
            .await
            .map_err(|e| self.error(&self.root, "list", e))?;
        objects.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(objects)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_locations_split_into_bucket_and_prefix() {
        let s3 = S3Options {
            endpoint: Some("http://127.0.0.1:9".into()),
        };
        let location = Location::parse("s3://lake/metrics/store/", &s3).unwrap();
        assert_eq!(location.url().as_str(), "s3://lake/");
        assert_eq!(location.root().as_ref(), "metrics/store");
        assert_eq!(
            location.path("dt=2026-03-01/hour=00").as_ref(),
            "metrics/store/dt=2026-03-01/hour=00"
        );
        assert_eq!(
            location.display_at("a.csv"),
            "s3://lake/metrics/store/a.csv"
        );
        let bare = Location::parse("s3://lake", &s3).unwrap();
        assert_eq!(bare.root().as_ref(), "");
        assert_eq!(bare.path("x/y").as_ref(), "x/y");
        for bad in ["s3://", "s3:///prefix", "gs://bucket/x"] {
            let err = Location::parse(bad, &s3).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn local_locations_are_absolute_and_need_not_exist() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("not-yet");
        let location = Location::parse(text.to_str().unwrap(), &S3Options::default()).unwrap();
        assert_eq!(location.local(), Some(text.as_path()));
        assert_eq!(location.url().as_str(), "file:///");
        assert_eq!(
            location.display_at("a.csv"),
            text.join("a.csv").display().to_string()
        );
    }
}
