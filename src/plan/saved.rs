//! A saved plan: what `roster plan --out FILE` writes and `roster apply FILE` applies exactly.
//!
//! The file is the JSON plan (the same `targets[].changes` contract) plus what makes applying it
//! later safe: roster's version, a hash of the config's target settings (secrets are never in
//! it), and per target a [`Fingerprint`] of the state the plan was made from. The whole document
//! carries its own SHA-256 (`checksum`, over the document without it, keys sorted), so an edited
//! or damaged file is refused before anything is read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::fingerprint::Fingerprint;
use super::{Change, Plan};
use crate::model::hex;

/// The value of the `format` field that marks a saved plan.
pub const FORMAT: &str = "roster-saved-plan/1";

/// One target of a saved plan.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct SavedTarget {
    /// The target's name in the config.
    pub target: String,
    /// What the target held when the plan was made.
    pub fingerprint: Fingerprint,
    /// The changes to apply, in order.
    pub changes: Vec<Change>,
}

/// A saved plan, read and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedPlan {
    /// The roster version that wrote it.
    pub roster_version: String,
    /// The hash of the config's target settings it was made with.
    pub config_hash: String,
    /// Its targets, in order.
    pub targets: Vec<SavedTarget>,
}

/// Why a file is not a saved plan roster can apply.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SavedPlanError {
    /// Not JSON, or not a saved plan at all.
    #[error("not a roster saved plan ({0}); write one with `roster plan --out FILE`")]
    NotAPlan(String),
    /// The checksum does not match the content.
    #[error(
        "the plan file was edited or is damaged (its checksum does not match its content); make \
         a new plan"
    )]
    Checksum,
    /// Made with another config.
    #[error(
        "the plan was made with another config (the targets' settings differ{version}); make a \
         new plan with this config"
    )]
    OtherConfig {
        /// A note when the roster version differs too.
        version: String,
    },
    /// A target of the plan is not in the config.
    #[error("the plan names target \"{0}\", which the config does not have")]
    UnknownTarget(String),
}

/// The saved-plan document for `plans` (with each target's fingerprint) as JSON text.
pub fn write(roster_version: &str, config_hash: &str, plans: &[(&Plan, &Fingerprint)]) -> String {
    /// A target's JSON plan (its `target`, `changes`, `summary`, …) with its fingerprint.
    #[derive(Serialize)]
    struct Target<'a> {
        fingerprint: &'a Fingerprint,
        #[serde(flatten)]
        plan: &'a Plan,
    }
    let targets: Vec<Target> = plans
        .iter()
        .map(|(plan, fingerprint)| Target { fingerprint, plan })
        .collect();
    let mut doc = serde_json::json!({
        "format": FORMAT,
        "roster_version": roster_version,
        "config_hash": config_hash,
        "targets": targets,
    });
    let sum = checksum(&doc);
    if let serde_json::Value::Object(map) = &mut doc {
        map.insert("checksum".to_owned(), serde_json::Value::String(sum));
    }
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    text
}

/// Reads a saved plan from its text and checks it against the config's hash; every target it
/// names must be one of `known`.
pub fn read(
    text: &str,
    config_hash: &str,
    roster_version: &str,
    known: &[&str],
) -> Result<SavedPlan, SavedPlanError> {
    let mut doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| SavedPlanError::NotAPlan(e.to_string()))?;
    let map = doc
        .as_object_mut()
        .ok_or_else(|| SavedPlanError::NotAPlan("not a JSON object".to_owned()))?;
    if map.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        return Err(SavedPlanError::NotAPlan(format!(
            "no \"format\": \"{FORMAT}\""
        )));
    }
    let Some(serde_json::Value::String(sum)) = map.remove("checksum") else {
        return Err(SavedPlanError::Checksum);
    };
    if checksum(&doc) != sum {
        return Err(SavedPlanError::Checksum);
    }
    #[derive(Deserialize)]
    struct Doc {
        roster_version: String,
        config_hash: String,
        targets: Vec<SavedTarget>,
    }
    let doc: Doc =
        serde_json::from_value(doc).map_err(|e| SavedPlanError::NotAPlan(e.to_string()))?;
    if doc.config_hash != config_hash {
        let version = if doc.roster_version == roster_version {
            String::new()
        } else {
            format!(
                ", and it was made by roster {} where this is {roster_version}",
                doc.roster_version
            )
        };
        return Err(SavedPlanError::OtherConfig { version });
    }
    if let Some(t) = doc
        .targets
        .iter()
        .find(|t| !known.contains(&t.target.as_str()))
    {
        return Err(SavedPlanError::UnknownTarget(t.target.clone()));
    }
    Ok(SavedPlan {
        roster_version: doc.roster_version,
        config_hash: doc.config_hash,
        targets: doc.targets,
    })
}

/// SHA-256 (hex) of a JSON value written with every object's keys sorted, so that the sum does
/// not depend on how a JSON library orders them.
fn checksum(v: &serde_json::Value) -> String {
    let mut h = Sha256::new();
    canonical(v, &mut h);
    hex(&h.finalize())
}

fn canonical(v: &serde_json::Value, h: &mut Sha256) {
    match v {
        serde_json::Value::Object(map) => {
            let sorted: BTreeMap<&String, &serde_json::Value> = map.iter().collect();
            h.update(b"{");
            for (k, v) in sorted {
                h.update(serde_json::Value::String(k.clone()).to_string().as_bytes());
                h.update(b":");
                canonical(v, h);
                h.update(b",");
            }
            h.update(b"}");
        }
        serde_json::Value::Array(items) => {
            h.update(b"[");
            for v in items {
                canonical(v, h);
                h.update(b",");
            }
            h.update(b"]");
        }
        other => h.update(other.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Summary;

    fn plan() -> (Plan, Fingerprint) {
        let changes = vec![
            Change::CreateGroup {
                group: "Team".into(),
                description: None,
                attributes: BTreeMap::new(),
            },
            Change::AddMember {
                group: "Team".into(),
                member: "ann".into(),
            },
        ];
        (
            Plan {
                target: "cms".to_owned(),
                summary: Summary::of(&changes),
                changes,
                ..Plan::default()
            },
            Fingerprint::default(),
        )
    }

    #[test]
    fn a_written_plan_reads_back_with_its_changes() {
        let (p, f) = plan();
        let text = write("1.0", "abc", &[(&p, &f)]);
        let saved = read(&text, "abc", "1.0", &["cms"]).expect("reads");
        assert_eq!(saved.targets.len(), 1);
        assert_eq!(saved.targets[0].changes, p.changes);
        assert_eq!(saved.targets[0].target, "cms");
        // It is the JSON plan too.
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v["targets"][0]["changes"][1]["op"], "add_member");
        assert_eq!(v["targets"][0]["summary"]["add"], 2);
    }

    #[test]
    fn an_edited_damaged_foreign_or_other_config_plan_is_refused() {
        let (p, f) = plan();
        let text = write("1.0", "abc", &[(&p, &f)]);
        let edited = text.replace("\"ann\"", "\"eve\"");
        assert_eq!(
            read(&edited, "abc", "1.0", &["cms"]),
            Err(SavedPlanError::Checksum)
        );
        let cut = &text[..text.len() / 2];
        assert!(matches!(
            read(cut, "abc", "1.0", &["cms"]),
            Err(SavedPlanError::NotAPlan(_))
        ));
        assert!(matches!(
            read("{\"targets\": []}", "abc", "1.0", &["cms"]),
            Err(SavedPlanError::NotAPlan(_))
        ));
        assert_eq!(
            read(&text, "other", "1.0", &["cms"]),
            Err(SavedPlanError::OtherConfig {
                version: String::new()
            })
        );
        let err = read(&text, "other", "2.0", &["cms"]).expect_err("refused");
        assert!(
            err.to_string().contains("roster 1.0 where this is 2.0"),
            "{err}"
        );
        assert_eq!(
            read(&text, "abc", "1.0", &["dns"]),
            Err(SavedPlanError::UnknownTarget("cms".to_owned()))
        );
        // Reformatting alone (keys reordered, spacing) is no edit.
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        let compact = serde_json::to_string(&v).expect("json");
        assert!(read(&compact, "abc", "1.0", &["cms"]).is_ok());
    }
}
