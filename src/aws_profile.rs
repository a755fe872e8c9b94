//! Named AWS profiles for `s3://` locations, as the AWS CLI reads them: `AWS_PROFILE` (else
//! `default`) in `~/.aws/credentials` and `~/.aws/config` gives static keys, region and endpoint.

use std::path::{Path, PathBuf};

use ini::Ini;

use crate::error::{Error, Result};

/// What a profile says; each field only when the profile sets it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    /// The key through which the profile gets its credentials from elsewhere (SSO, a role, a
    /// process), which iodrift does not follow.
    pub indirect: Option<&'static str>,
}

const INDIRECT: [&str; 5] = [
    "sso_session",
    "sso_start_url",
    "role_arn",
    "credential_process",
    "web_identity_token_file",
];

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

fn file(variable: &str, default: &str) -> Option<PathBuf> {
    std::env::var_os(variable)
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(default)))
}

fn load(path: &Path) -> Result<Option<Ini>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ini::load_from_str_noescape(&text)
            .map(Some)
            .map_err(|e| Error::Usage(format!("AWS profile file {}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path)(e)),
    }
}

impl Profile {
    /// The profile's static keys (key id, secret, token), or an error naming what it uses instead.
    pub fn keys(&self) -> Result<Option<(&str, &str, Option<&str>)>> {
        match (&self.access_key_id, &self.secret_access_key, self.indirect) {
            (Some(key), Some(secret), _) => Ok(Some((key, secret, self.session_token.as_deref()))),
            (_, _, Some(indirect)) => Err(Error::Usage(format!(
                "AWS profile {name}: its credentials come from {indirect}, which iodrift does not \
                 follow; export them first: \
                 eval \"$(aws configure export-credentials --profile {name} --format env)\"",
                name = self.name
            ))),
            _ => Ok(None),
        }
    }

    /// The profile named by `AWS_PROFILE` (or `default`) in the shared files
    /// (`AWS_SHARED_CREDENTIALS_FILE`, `AWS_CONFIG_FILE`, else `~/.aws/`); `None` when neither
    /// file has it. A profile named by `AWS_PROFILE` must exist.
    pub fn from_environment() -> Result<Option<Profile>> {
        Profile::read(
            std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty()),
            file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials").as_deref(),
            file("AWS_CONFIG_FILE", ".aws/config").as_deref(),
        )
    }

    /// Profile `named` (else `default`) from the given credentials and config files.
    pub fn read(
        named: Option<String>,
        credentials: Option<&Path>,
        config: Option<&Path>,
    ) -> Result<Option<Profile>> {
        let name = named.clone().unwrap_or_else(|| "default".into());
        let credentials = match credentials {
            Some(path) => load(path)?,
            None => None,
        };
        let config = match config {
            Some(path) => load(path)?,
            None => None,
        };
        let config_section = if name == "default" {
            name.clone()
        } else {
            format!("profile {name}")
        };
        let sections: Vec<_> = [
            credentials
                .as_ref()
                .and_then(|c| c.section(Some(name.as_str()))),
            config
                .as_ref()
                .and_then(|c| c.section(Some(config_section.as_str()))),
        ]
        .into_iter()
        .flatten()
        .collect();
        if sections.is_empty() {
            return match named {
                Some(name) => Err(Error::Usage(format!(
                    "AWS_PROFILE={name}: no such profile in ~/.aws/credentials or ~/.aws/config"
                ))),
                None => Ok(None),
            };
        }
        let get = |key: &str| {
            sections
                .iter()
                .find_map(|s| s.get(key))
                .map(|v| v.trim().to_string())
        };
        let profile = Profile {
            access_key_id: get("aws_access_key_id"),
            secret_access_key: get("aws_secret_access_key"),
            session_token: get("aws_session_token"),
            region: get("region"),
            endpoint_url: get("endpoint_url"),
            indirect: INDIRECT.into_iter().find(|key| get(key).is_some()),
            name,
        };
        Ok(Some(profile))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(credentials: &str, config: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("credentials"), dir.path().join("config"));
        std::fs::write(&a, credentials).unwrap();
        std::fs::write(&b, config).unwrap();
        (dir, a, b)
    }

    #[test]
    fn keys_come_from_credentials_and_region_from_config() {
        let (_dir, credentials, config) = files(
            "[default]\naws_access_key_id = A\naws_secret_access_key = B\n\n[ci]\naws_access_key_id = C\naws_secret_access_key = D/+E\naws_session_token = T\n",
            "[default]\nregion = us-east-1\n\n[profile ci]\nregion = eu-west-1\nendpoint_url = http://127.0.0.1:9000\n",
        );
        let read = |name: Option<&str>| {
            Profile::read(name.map(String::from), Some(&credentials), Some(&config)).unwrap()
        };
        let ci = read(Some("ci")).unwrap();
        assert_eq!(ci.access_key_id.as_deref(), Some("C"));
        assert_eq!(ci.secret_access_key.as_deref(), Some("D/+E"));
        assert_eq!(ci.session_token.as_deref(), Some("T"));
        assert_eq!(ci.region.as_deref(), Some("eu-west-1"));
        assert_eq!(ci.endpoint_url.as_deref(), Some("http://127.0.0.1:9000"));
        let default = read(None).unwrap();
        assert_eq!(default.access_key_id.as_deref(), Some("A"));
        assert_eq!(default.region.as_deref(), Some("us-east-1"));
    }

    #[test]
    fn a_missing_or_indirect_profile_is_named() {
        let (_dir, credentials, config) = files("", "[profile sso]\nsso_session = corp\n");
        let read = |name: Option<&str>| {
            Profile::read(name.map(String::from), Some(&credentials), Some(&config))
        };
        assert_eq!(read(None).unwrap(), None);
        let missing = read(Some("prod")).unwrap_err().to_string();
        assert!(missing.contains("AWS_PROFILE=prod"), "{missing}");
        let sso = read(Some("sso"))
            .unwrap()
            .unwrap()
            .keys()
            .unwrap_err()
            .to_string();
        assert!(
            sso.contains("sso_session") && sso.contains("export-credentials"),
            "{sso}"
        );
        assert_eq!(Profile::read(None, None, None).unwrap(), None);
    }
}
