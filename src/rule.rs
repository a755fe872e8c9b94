//! Rules as data: a folder holding a `rule.toml` manifest and the SQL it names. The built-in
//! rules are the folders of `rules/`, embedded; users add theirs with `--rules DIR`.
//!
//! Nothing else in iodrift knows a rule by name: the session runs each rule's SQL in the rule's
//! own schema, baselines write the tables its manifest declares, findings read its
//! `anomalous_buckets` view. The manifest's fields are documented in `rules/README.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use include_dir::{Dir, include_dir};
use serde::Deserialize;

use crate::error::{Error, Result};

/// The built-in rule folders.
static BUILT_IN: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/rules");

/// The manifest's file name in a rule folder.
pub const MANIFEST: &str = "rule.toml";

/// The stages every rule shares, in the order they create their views (in schema `public`).
pub const SHARED_SQL: [(&str, &str); 2] = [
    ("sql/spans.sql", include_str!("../sql/spans.sql")),
    (
        "sql/pod_network_io.sql",
        include_str!("../sql/pod_network_io.sql"),
    ),
];

/// The stage every rule ends with, run in the rule's schema after its own SQL: one finding per
/// pod from the rule's `anomalous_buckets`, with the rule's risk data.
pub const FINDINGS_SQL: (&str, &str) = ("sql/findings.sql", include_str!("../sql/findings.sql"));

/// The view each rule's SQL must create: one row per anomalous bucket of a pod.
pub const ANOMALOUS_BUCKETS: &str = "anomalous_buckets";

/// One rule, as its manifest and SQL say. Cheap to clone.
#[derive(Clone)]
pub struct Rule(Arc<RuleSpec>);

/// What a rule folder holds.
#[derive(Debug)]
pub struct RuleSpec {
    /// The value of `--rule` and of the findings' `rule` field.
    pub name: String,
    /// The detection's title (ESCU's search name for the ported rules).
    pub title: String,
    /// The schema holding the rule's views: its name with `_` for `-`.
    pub namespace: String,
    /// Where the rule was read from: `built-in` or its folder.
    pub origin: String,
    /// The SQL files, in the order they run: (path as a user reads it, text).
    pub sql: Vec<(String, String)>,
    pub risk_score: i64,
    /// The risk message; `$host$` is the finding's node.
    pub risk_message: String,
    /// MITRE ATT&CK ids, comma-separated.
    pub mitre_attack_id: String,
    /// How sure a finding is, from 0 to 100 (ESCU's `confidence`), where the manifest says.
    pub confidence: Option<u8>,
    /// What kind of analytic the rule is (OCSF's `analytic.type_id`).
    pub analytic_type: AnalyticType,
    /// The name a SIEM knows the detection by (`search_name` of its risk events):
    /// `iodrift - <rule> - Rule` unless the manifest names it.
    pub search_name: String,
    /// The analytic stories the detection belongs to (ESCU's `analytic_story`).
    pub analytic_stories: Vec<String>,
    /// How many anomalous buckets a pod needs in a window for a finding.
    pub min_buckets: i64,
    /// A view of the rule listing what it could not score in the window (too little history):
    /// `detect` counts its rows in its summary.
    pub unscored: Option<String>,
    /// Views a detection computes once, on first use, and holds in memory for the rest of its
    /// run, instead of once per reference (a view read by several others).
    pub materialize: Vec<String>,
    /// A view of what each finding's measures did against the baseline (one row per pod and
    /// measure that fired; see rules/README.md): the anomaly analyses of the OCSF output.
    pub evidence: Option<String>,
    /// The baseline tables the rule writes and reads.
    pub tables: Vec<Arc<Table>>,
    /// The default schedule of its jobs.
    pub schedule: Schedule,
    /// A digest of the manifest and every SQL file: what computed a stored rollup.
    pub digest: String,
}

impl Deref for Rule {
    type Target = RuleSpec;
    fn deref(&self) -> &RuleSpec {
        &self.0
    }
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Rule({})", self.name)
    }
}

impl PartialEq for Rule {
    fn eq(&self, other: &Rule) -> bool {
        self.name == other.name
    }
}

impl Eq for Rule {}

/// A baseline table: what a rule's baseline writes and its detection reads.
#[derive(Debug)]
pub struct Table {
    /// The table's name: in every session, and the file name of its lookup (`<name>.csv`).
    pub name: String,
    /// The rule that writes it.
    pub rule: String,
    /// The schema of the rule's views.
    pub namespace: String,
    pub title: String,
    /// The view (in the rule's schema) that computes the table from a window's rows.
    pub view: String,
    /// The columns that identify a row.
    pub key: Vec<String>,
    pub columns: Vec<Column>,
    /// How hourly rollups of the table are computed and merged; `None`: always in full.
    pub rollup: Option<Rollup>,
}

/// A column of a baseline table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub kind: ColumnKind,
}

/// OCSF's analytic types (`analytic.type_id`), as a manifest names them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnalyticType {
    Rule,
    Behavioral,
    #[default]
    Statistical,
    Learning,
}

/// The types a baseline column may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnKind {
    String,
    Double,
    Bigint,
}

impl ColumnKind {
    pub fn data_type(self) -> DataType {
        match self {
            ColumnKind::String => DataType::Utf8,
            ColumnKind::Double => DataType::Float64,
            ColumnKind::Bigint => DataType::Int64,
        }
    }
}

/// Incremental baselines: a view of one row per hour and key of mergeable state, and the query
/// that merges the stored hours (table `rollups`) into the baseline table.
#[derive(Debug)]
pub struct Rollup {
    /// The view in the rule's schema; its first column is `hour` (epoch seconds).
    pub view: String,
    /// The merge query's file, as a user reads its path.
    pub merge_path: String,
    pub merge_sql: String,
}

/// A job's default cron expression and window.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobDefaults {
    pub cron: String,
    pub earliest: String,
    pub latest: String,
}

/// The default schedules of a rule's baseline and detection, and optionally of storing its
/// tables' hourly rollups as hours close (so that the baseline merges them and computes none).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub baseline: JobDefaults,
    pub detect: JobDefaults,
    #[serde(default)]
    pub rollup: Option<JobDefaults>,
}

/// Which job of a rule's schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Rollup,
    Baseline,
    Detect,
}

impl Schedule {
    /// The defaults of `job`; `None` for a rollup job the rule does not schedule.
    pub fn job(&self, job: Job) -> Option<&JobDefaults> {
        match job {
            Job::Rollup => self.rollup.as_ref(),
            Job::Baseline => Some(&self.baseline),
            Job::Detect => Some(&self.detect),
        }
    }
}

/// The default window (earliest, latest) of `job` that every rule of `rules` shares.
pub fn shared_window(rules: &[Rule], job: Job) -> std::result::Result<(String, String), String> {
    let mut windows = rules.iter().filter_map(|r| {
        let defaults = r.schedule.job(job)?;
        Some((defaults.earliest.clone(), defaults.latest.clone()))
    });
    let first = windows.next().ok_or("no rule chosen")?;
    if windows.any(|w| w != first) {
        return Err(format!(
            "the rules {} have different default windows",
            rules
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(first)
}

/// `rule.toml` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    name: String,
    title: String,
    sql: Vec<String>,
    risk: RiskFile,
    detection: DetectionFile,
    #[serde(default)]
    baselines: Vec<TableFile>,
    schedule: Schedule,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RiskFile {
    score: i64,
    message: String,
    mitre_attack_ids: Vec<String>,
    #[serde(default)]
    confidence: Option<u8>,
    #[serde(default)]
    analytic_type: AnalyticType,
    #[serde(default)]
    search_name: Option<String>,
    #[serde(default)]
    analytic_stories: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DetectionFile {
    min_buckets: i64,
    #[serde(default)]
    unscored: Option<String>,
    #[serde(default)]
    materialize: Vec<String>,
    #[serde(default)]
    evidence: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    name: String,
    #[serde(default)]
    title: Option<String>,
    view: String,
    key: Vec<String>,
    columns: Vec<ColumnFile>,
    #[serde(default)]
    rollup: Option<String>,
    #[serde(default)]
    merge: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnFile {
    name: String,
    #[serde(rename = "type")]
    kind: ColumnKind,
}

/// Every rule a command can run: the built-in ones and the user's.
#[derive(Debug, Clone)]
pub struct Rules {
    rules: Vec<Rule>,
}

impl Rules {
    /// The built-in rules alone.
    pub fn built_in() -> Result<Rules> {
        let mut rules = Vec::new();
        let mut folders: Vec<&Dir> = BUILT_IN.dirs().collect();
        folders.sort_by_key(|d| d.path());
        for folder in folders {
            let read = |name: &str| -> Option<String> {
                folder
                    .get_file(folder.path().join(name))
                    .and_then(|f| f.contents_utf8())
                    .map(str::to_string)
            };
            let shown = format!("rules/{}", folder.path().display());
            rules.push(Rule::parse(&shown, "built-in", &read)?);
        }
        Rules::checked(rules)
    }

    /// The built-in rules and those of `dir`: a rule folder, or a folder of rule folders.
    pub fn load(dir: Option<&Path>) -> Result<Rules> {
        let mut rules = Rules::built_in()?.rules;
        if let Some(dir) = dir {
            rules.extend(read_user_rules(dir)?);
        }
        Rules::checked(rules)
    }

    fn checked(rules: Vec<Rule>) -> Result<Rules> {
        let mut names = BTreeMap::new();
        let mut tables = BTreeMap::new();
        for rule in &rules {
            if let Some(first) = names.insert(rule.namespace.clone(), rule.origin.clone()) {
                return Err(Error::Rule {
                    path: rule.origin.clone(),
                    reason: format!(
                        "rule {:?} has the name of a rule of {first}; rename one",
                        rule.name
                    ),
                });
            }
            for table in &rule.tables {
                if let Some(other) = tables.insert(table.name.clone(), rule.name.clone()) {
                    return Err(Error::Rule {
                        path: rule.origin.clone(),
                        reason: format!(
                            "baseline table {:?} is also written by rule {other:?}",
                            table.name
                        ),
                    });
                }
            }
        }
        Ok(Rules { rules })
    }

    /// A set of rules already loaded (a command's chosen ones).
    pub fn of(rules: &[Rule]) -> Rules {
        Rules {
            rules: rules.to_vec(),
        }
    }

    pub fn all(&self) -> &[Rule] {
        &self.rules
    }

    pub fn get(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name == name)
    }

    /// The rules `names` choose (`all` for every rule), each once, in the order of `self`.
    pub fn select(&self, names: &[String]) -> std::result::Result<Vec<Rule>, String> {
        let mut chosen = BTreeSet::new();
        for name in names {
            if name == "all" {
                chosen.extend(self.rules.iter().map(|r| r.name.clone()));
            } else if self.get(name).is_some() {
                chosen.insert(name.clone());
            } else {
                return Err(format!(
                    "unknown rule {name:?}: {} or all",
                    self.names().join(", ")
                ));
            }
        }
        if chosen.is_empty() {
            return Err("names no rule".into());
        }
        Ok(self
            .rules
            .iter()
            .filter(|r| chosen.contains(&r.name))
            .cloned()
            .collect())
    }

    pub fn names(&self) -> Vec<String> {
        self.rules.iter().map(|r| r.name.clone()).collect()
    }

    /// Every baseline table of every rule.
    pub fn tables(&self) -> impl Iterator<Item = &Arc<Table>> {
        self.rules.iter().flat_map(|r| r.tables.iter())
    }
}

/// The rules of `dir`: itself when it holds a manifest, else each subfolder that does.
fn read_user_rules(dir: &Path) -> Result<Vec<Rule>> {
    let folder_rule = |folder: &Path| -> Result<Rule> {
        let read = |name: &str| std::fs::read_to_string(folder.join(name)).ok();
        let shown = folder.display().to_string();
        Rule::parse(&shown, &shown, &read)
    };
    if dir.join(MANIFEST).is_file() {
        return Ok(vec![folder_rule(dir)?]);
    }
    let entries = std::fs::read_dir(dir).map_err(Error::io(dir))?;
    let mut folders: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let path = entry.map_err(Error::io(dir))?.path();
        if path.join(MANIFEST).is_file() {
            folders.push(path);
        }
    }
    if folders.is_empty() {
        return Err(Error::Rule {
            path: dir.display().to_string(),
            reason: format!("holds no {MANIFEST}, nor folders that do"),
        });
    }
    folders.sort();
    folders.iter().map(|f| folder_rule(f)).collect()
}

/// Whether `name` is a rule name: lowercase words of letters and digits joined by `-`.
fn is_rule_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('-').all(|word| {
            !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
        && name.starts_with(|c: char| c.is_ascii_lowercase())
}

/// Whether `name` is a plain SQL identifier (lowercase, so it needs no quotes).
fn is_identifier(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl Rule {
    /// The rule whose folder is shown as `folder`, its files read with `read` (by name).
    fn parse(folder: &str, origin: &str, read: &dyn Fn(&str) -> Option<String>) -> Result<Rule> {
        let manifest_path = format!("{folder}/{MANIFEST}");
        let fail = |path: &str, reason: String| Error::Rule {
            path: path.to_string(),
            reason,
        };
        let text = read(MANIFEST).ok_or_else(|| fail(&manifest_path, "cannot be read".into()))?;
        let file: ManifestFile = toml::from_str(&text).map_err(|e| {
            let at = e.span().map(|span| {
                let before = &text[..span.start];
                let line = before.matches('\n').count() + 1;
                format!("line {line}: ")
            });
            fail(
                &manifest_path,
                format!("{}{}", at.unwrap_or_default(), e.message().trim()),
            )
        })?;
        let bad = |reason: String| fail(&manifest_path, reason);
        if !is_rule_name(&file.name) {
            return Err(bad(format!(
                "name {:?}: lowercase letters and digits, words joined by '-'",
                file.name
            )));
        }
        let namespace = file.name.replace('-', "_");
        if ["public", "information_schema"].contains(&namespace.as_str()) {
            return Err(bad(format!("name {:?} is reserved", file.name)));
        }
        if file.sql.is_empty() {
            return Err(bad("sql: names no file".into()));
        }
        if file.detection.min_buckets < 1 {
            return Err(bad("detection.min_buckets: must be at least 1".into()));
        }
        if file.risk.confidence.is_some_and(|c| c > 100) {
            return Err(bad("risk.confidence: from 0 to 100".into()));
        }
        if file.risk.mitre_attack_ids.is_empty() {
            return Err(bad("risk.mitre_attack_ids: names no technique".into()));
        }
        let read_sql = |name: &str| -> Result<(String, String)> {
            let path = format!("{folder}/{name}");
            if name.contains("..") || name.starts_with('/') {
                return Err(bad(format!("{name:?}: a file of the rule's folder")));
            }
            let text = read(name).ok_or_else(|| fail(&path, "cannot be read".into()))?;
            Ok((path, text))
        };
        let sql = file
            .sql
            .iter()
            .map(|name| read_sql(name))
            .collect::<Result<Vec<_>>>()?;
        let mut tables = Vec::new();
        for (i, table) in file.baselines.iter().enumerate() {
            let key = |k: &str| format!("baselines[{i}].{k}");
            if !is_identifier(&table.name) {
                return Err(bad(format!(
                    "{}: {:?} is not a lowercase SQL name",
                    key("name"),
                    table.name
                )));
            }
            if !is_identifier(&table.view) {
                return Err(bad(format!(
                    "{}: {:?} is not a lowercase SQL name",
                    key("view"),
                    table.view
                )));
            }
            let columns: Vec<Column> = table
                .columns
                .iter()
                .map(|c| Column {
                    name: c.name.clone(),
                    kind: c.kind,
                })
                .collect();
            let mut seen = BTreeSet::new();
            for column in &columns {
                if column.name.is_empty() || !seen.insert(column.name.as_str()) {
                    return Err(bad(format!(
                        "{}: {:?} is empty or repeated",
                        key("columns"),
                        column.name
                    )));
                }
            }
            if table.key.is_empty() {
                return Err(bad(format!("{}: names no column", key("key"))));
            }
            for k in &table.key {
                if !seen.contains(k.as_str()) {
                    return Err(bad(format!("{}: {k:?} is not a column", key("key"))));
                }
            }
            let rollup = match (&table.rollup, &table.merge) {
                (None, None) => None,
                (Some(view), Some(merge)) => {
                    if !is_identifier(view) {
                        return Err(bad(format!(
                            "{}: {view:?} is not a lowercase SQL name",
                            key("rollup")
                        )));
                    }
                    let (merge_path, merge_sql) = read_sql(merge)?;
                    Some(Rollup {
                        view: view.clone(),
                        merge_path,
                        merge_sql,
                    })
                }
                _ => {
                    return Err(bad(format!(
                        "{} and {} come together (or neither: recomputed in full)",
                        key("rollup"),
                        key("merge")
                    )));
                }
            };
            tables.push(Arc::new(Table {
                name: table.name.clone(),
                rule: file.name.clone(),
                namespace: namespace.clone(),
                title: table.title.clone().unwrap_or_else(|| table.name.clone()),
                view: table.view.clone(),
                key: table.key.clone(),
                columns,
                rollup,
            }));
        }
        let digest = {
            use sha2::{Digest, Sha256};
            let mut digest = Sha256::new();
            let merges = tables
                .iter()
                .filter_map(|t| t.rollup.as_ref())
                .map(|r| (r.merge_path.clone(), r.merge_sql.clone()));
            for (name, text) in std::iter::once((MANIFEST.to_string(), text.clone()))
                .chain(sql.iter().cloned())
                .chain(merges)
            {
                digest.update(name.rsplit('/').next().unwrap_or("").as_bytes());
                digest.update([0]);
                digest.update(text.as_bytes());
                digest.update([0]);
            }
            digest.finalize()[..16]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        };
        let search_name = (file.risk.search_name.clone())
            .unwrap_or_else(|| format!("iodrift - {} - Rule", file.name));
        Ok(Rule(Arc::new(RuleSpec {
            name: file.name,
            title: file.title,
            namespace,
            origin: origin.to_string(),
            sql,
            risk_score: file.risk.score,
            risk_message: file.risk.message,
            mitre_attack_id: file.risk.mitre_attack_ids.join(","),
            confidence: file.risk.confidence,
            analytic_type: file.risk.analytic_type,
            search_name,
            analytic_stories: file.risk.analytic_stories,
            min_buckets: file.detection.min_buckets,
            unscored: file.detection.unscored,
            materialize: file.detection.materialize,
            evidence: file.detection.evidence,
            tables,
            schedule: file.schedule,
            digest,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_rules_load_and_name_their_tables() {
        let rules = Rules::built_in().unwrap();
        assert!(rules.names().len() >= 2);
        for rule in rules.all() {
            assert!(!rule.tables.is_empty(), "{}", rule.name);
            assert!(!rule.sql.is_empty(), "{}", rule.name);
        }
        assert_eq!(
            rules.select(&["all".into()]).unwrap().len(),
            rules.all().len()
        );
        assert!(rules.select(&["nope".into()]).unwrap_err().contains("nope"));
    }

    #[test]
    fn rule_names_are_words_joined_by_dashes() {
        for good in ["drift", "network-io", "dns2-exfil"] {
            assert!(is_rule_name(good), "{good}");
        }
        for bad in ["", "-a", "a-", "a--b", "A", "a_b", "1a", "a b"] {
            assert!(!is_rule_name(bad), "{bad}");
        }
    }

    #[test]
    fn manifest_mistakes_name_the_file_and_the_key() {
        let manifest = |extra: &str| {
            format!(
                "name = \"x\"\ntitle = \"X\"\nsql = [\"a.sql\"]\n{extra}\
                 [risk]\nscore = 1\nmessage = \"m\"\nmitre_attack_ids = [\"T1\"]\n\
                 [detection]\nmin_buckets = 1\n\
                 [schedule]\nbaseline = {{ cron = \"0 * * * *\", earliest = \"-1d\", latest = \"now\" }}\n\
                 detect = {{ cron = \"0 * * * *\", earliest = \"-1h\", latest = \"now\" }}\n"
            )
        };
        let parse = |text: String| {
            let read = move |name: &str| match name {
                MANIFEST => Some(text.clone()),
                "a.sql" => Some("SELECT 1".into()),
                _ => None,
            };
            Rule::parse("/r/x", "/r/x", &read)
        };
        assert!(parse(manifest("")).is_ok());
        for (extra, expected) in [
            ("colour = 1\n", "unknown field `colour`"),
            (
                "[[baselines]]\nname = \"t\"\nview = \"v\"\nkey = [\"k\"]\ncolumns = [{ name = \"j\", type = \"string\" }]\n",
                "\"k\" is not a column",
            ),
            (
                "[[baselines]]\nname = \"T-1\"\nview = \"v\"\nkey = [\"k\"]\ncolumns = []\n",
                "baselines[0].name",
            ),
            (
                "[[baselines]]\nname = \"t\"\nview = \"v\"\nkey = [\"k\"]\nrollup = \"r\"\ncolumns = [{ name = \"k\", type = \"string\" }]\n",
                "come together",
            ),
            (
                "[[baselines]]\nname = \"t\"\nview = \"v\"\nkey = [\"k\"]\nrollup = \"r\"\nmerge = \"m.sql\"\ncolumns = [{ name = \"k\", type = \"string\" }]\n",
                "/r/x/m.sql",
            ),
        ] {
            let error = parse(manifest(extra)).unwrap_err().to_string();
            assert!(error.contains(expected), "{extra:?}: {error}");
            assert!(error.contains("/r/x"), "{error}");
        }
    }
}
