//! Pod names as Kubernetes makes them: pod-template hashes, random 5-character suffixes, the
//! 58-character truncation of generated names, StatefulSet ordinals and CronJob job names.

use rand::RngExt;

/// Kubernetes' `rand.SafeEncodeString` alphabet: no vowels, no confusable characters.
const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `SimpleNameGenerator`: a generated name keeps at most 58 characters of its base.
const MAX_GENERATED_BASE: usize = 58;

/// `rand.SafeEncodeString`: every byte mapped to `ALPHANUMS[byte % 27]`.
pub fn safe_encode(text: &str) -> String {
    text.bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// The `pod-template-hash` label: the decimal digits of a uint32 (FNV-32a of the template in
/// Kubernetes), safe-encoded. Digits map into `4-9bcdf`, so the hash is hex, 1 to 10 long.
pub fn pod_template_hash(template: u32) -> String {
    safe_encode(&template.to_string())
}

/// `utilrand.String(5)`: the random suffix of a generated name.
pub fn random_suffix(rng: &mut impl rand::Rng) -> String {
    (0..5)
        .map(|_| ALPHANUMS[rng.random_range(0..ALPHANUMS.len())] as char)
        .collect()
}

/// `metadata.generateName` resolved: the base cut to 58 characters, then 5 random ones.
pub fn generate_name(base: &str, rng: &mut impl rand::Rng) -> String {
    let cut = base.len().min(MAX_GENERATED_BASE);
    format!("{}{}", &base[..cut], random_suffix(rng))
}

/// A Deployment's pod: `<deployment>-<hash>-<suffix>`, cut as Kubernetes cuts it.
pub fn deployment_pod(deployment: &str, hash: &str, rng: &mut impl rand::Rng) -> String {
    generate_name(&format!("{deployment}-{hash}-"), rng)
}

/// A CronJob's Job: `<cronjob>-<scheduled time in minutes since the epoch>`.
pub fn cron_job(cronjob: &str, scheduled_ms: i64) -> String {
    format!("{cronjob}-{}", scheduled_ms / 60_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn hashes_are_safe_encoded_decimal_digits() {
        // '0'..'9' are bytes 48..57: 48 % 27 = 21 → '4', ..., 57 % 27 = 3 → 'f'.
        assert_eq!(pod_template_hash(1234567890), "56789bcdf4");
        assert_eq!(pod_template_hash(0), "4");
        assert_eq!(pod_template_hash(u32::MAX).len(), 10);
        assert!(pod_template_hash(9_999_999).len() == 7);
    }

    #[test]
    fn generated_names_are_cut_to_63_characters() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let name = deployment_pod(
            "customer-notification-preferences-reconciler-service",
            "7d9f5b8c4d",
            &mut rng,
        );
        assert_eq!(name.len(), 63);
        assert!(name.starts_with("customer-notification-preferences-reconciler-service-7d9f5"));
        let short = deployment_pod("web", "7d9f5b8c4d", &mut rng);
        assert_eq!(short.len(), "web-7d9f5b8c4d-".len() + 5);
        assert!(short[15..].bytes().all(|b| ALPHANUMS.contains(&b)));
    }

    #[test]
    fn cron_jobs_are_named_by_scheduled_minute() {
        assert_eq!(
            cron_job("db-backup", 1_772_323_200_000),
            "db-backup-29538720"
        );
    }
}
