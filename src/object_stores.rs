//! The object stores DataFusion reads through: local files, every location a session names, and
//! any other `s3://bucket` a distributed plan names, configured on first use like a location.

use std::sync::Arc;

use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use object_store::ObjectStore;
use url::Url;

use crate::location::{Location, S3Options};

/// An [`ObjectStoreRegistry`] that creates the store of an unknown S3 bucket from the AWS
/// environment and profile, as [`Location::parse`] does for `s3://` locations.
#[derive(Debug)]
pub struct ObjectStores {
    known: DefaultObjectStoreRegistry,
    s3: S3Options,
}

impl ObjectStores {
    pub fn new(s3: S3Options) -> ObjectStores {
        ObjectStores {
            known: DefaultObjectStoreRegistry::new(),
            s3,
        }
    }
}

impl ObjectStoreRegistry for ObjectStores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.known.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        self.known.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        if let Ok(store) = self.known.get_store(url) {
            return Ok(store);
        }
        match (url.scheme(), url.host_str()) {
            ("s3", Some(bucket)) => {
                let location = Location::parse(&format!("s3://{bucket}"), &self.s3)
                    .map_err(|e| DataFusionError::External(Box::new(e)))?;
                let store = location.objects().clone();
                self.known.register_store(url, store.clone());
                Ok(store)
            }
            _ => self.known.get_store(url),
        }
    }
}
